package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/faultproxy"
)

// TestDCSLinkFaults drives an etcd client through a node's proxy while
// DelayDCS, CutDCSReplies, ResetDCS and DropDCS degrade the link, and
// checks that HealDCS undoes each of them.
func TestDCSLinkFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd")
	}
	e, err := etcdtest.Start("dcslink")
	require.NoError(t, err)
	defer e.Stop()
	p, err := faultproxy.New(e.Addr)
	require.NoError(t, err)
	defer p.Close()
	n := &Node{Name: "dcslink", proxy: p, log: hclog.NewNullLogger()}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + p.Addr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()

	get := func(d time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		resp, err := cli.Get(ctx, "k")
		if err != nil || len(resp.Kvs) == 0 {
			return "", err
		}
		return string(resp.Kvs[0].Value), nil
	}
	put := func(v string, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := cli.Put(ctx, "k", v)
		return err
	}
	healed := func() {
		t.Helper()
		n.HealDCS()
		require.NoError(t, Eventually(contextFor(t, 30*time.Second), func(ctx context.Context) error {
			_, err := get(2 * time.Second)
			return err
		}), "the link works after HealDCS")
	}
	require.NoError(t, put("v1", 5*time.Second))

	// Delay: each direction of a request/reply exchange is held.
	require.NoError(t, n.DelayDCS(150*time.Millisecond, 0))
	start := time.Now()
	v, err := get(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "v1", v)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Error(t, n.DelayDCS(time.Second, 2*time.Second), "jitter above the base delay")
	healed()

	// One-way cut: the request takes effect, its reply never arrives.
	n.CutDCSReplies()
	require.Error(t, put("v2", time.Second), "no reply while the replies are cut")
	require.NoError(t, Eventually(contextFor(t, 10*time.Second), func(ctx context.Context) error {
		resp, err := e.Admin.Get(ctx, "k")
		if err == nil && (len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != "v2") {
			err = errors.New("the put did not reach etcd yet")
		}
		return err
	}), "the request reached etcd")
	healed()

	// Reset: the open connections die, the client reconnects.
	require.NoError(t, put("v2", 5*time.Second))
	n.ResetDCS()
	require.NoError(t, Eventually(contextFor(t, 30*time.Second), func(ctx context.Context) error {
		_, err := get(2 * time.Second)
		return err
	}), "the client reconnects after ResetDCS")

	// Lossy: every chunk resets its connection.
	require.NoError(t, n.DropDCS(1))
	_, err = get(2 * time.Second)
	require.Error(t, err, "no request gets through a link that drops everything")
	require.Positive(t, n.DCSDrops())
	require.Error(t, n.DropDCS(1.5))
	healed()
	v, err = get(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "v2", v)
}

func contextFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

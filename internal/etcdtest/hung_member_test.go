package etcdtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/etcdtest"
)

// A paused etcd leader (SIGSTOP: its TCP connections stay up, it answers
// nothing) must cost dcs/etcddcs neither renewals nor watch events once the
// other members have elected a leader (RELIABILITY.md C5). clientv3 keeps
// balancing requests and the watch stream onto the paused member's
// connection until gRPC's keepalive drops it (10 s + the request timeout
// after the pause). The store hedges each renewal onto the next connection
// and restarts a watch whose cache lags a revision etcd has answered with:
// every renewal during the pause succeeds within its request timeout, and
// every store's cache shows a write well before that keepalive.
func TestStoreSurvivesPausedEtcdLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster of processes")
	}
	c, err := etcdtest.StartCluster(within(t, time.Minute), etcdtest.ClusterOptions{Binary: memberBinary(t),
		Heartbeat: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	ctx := within(t, 2*time.Minute)
	path := dcs.Path{Scope: "hung-member"}

	// Several stores, so that some watch stream lands on the member paused.
	var stores []*etcddcs.Store
	for i := range 4 {
		s, err := etcddcs.New(ctx, etcddcs.Config{Endpoints: c.Endpoints(), Name: fmt.Sprintf("n%d", i),
			RetryTimeout: 3 * time.Second, Path: path})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		_, err = s.Cluster(ctx)
		require.NoError(t, err)
		stores = append(stores, s)
	}
	leader := stores[0]
	const ttl = 30 * time.Second // the lease AcquireLeader grants
	_, err = leader.AcquireLeader(ctx)
	require.NoError(t, err)
	for _, s := range stores[1:] {
		_, err := s.KeepAlive(ctx, ttl)
		require.NoError(t, err)
	}

	el, err := c.Leader(ctx)
	require.NoError(t, err)
	var healthy []string
	for _, m := range c.Members {
		if m != el {
			healthy = append(healthy, m.ClientAddr)
		}
	}
	w, err := clientv3.New(clientv3.Config{Endpoints: healthy, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	require.NoError(t, el.Pause())
	paused := time.Now()
	t.Cleanup(func() {
		if el.Paused() {
			_ = el.Resume()
		}
	})
	// The fault: etcd needs an election before anything can succeed.
	require.NoError(t, waitFor(ctx, func() error {
		_, err := c.Leader(ctx)
		return err
	}))
	elected := time.Since(paused)

	// Renewals: each must succeed within the request timeout (1 s here);
	// without hedging, those that land on the paused member time out.
	var slowest time.Duration
	for range 4 {
		start := time.Now()
		_, err := leader.RefreshLeader(ctx)
		require.NoError(t, err, "renewal %s after the pause (etcd re-elected in %s)", time.Since(paused).Round(time.Millisecond), elected.Round(time.Millisecond))
		slowest = max(slowest, time.Since(start))
		for _, s := range stores[1:] {
			_, err := s.KeepAlive(ctx, ttl)
			require.NoError(t, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Watches: a /config write (through the other members) must reach
	// every store's cache before gRPC's keepalive could have dropped a
	// paused connection.
	put, err := w.Put(ctx, path.Key(dcs.KeyConfig), `{"ttl":30}`)
	require.NoError(t, err)
	rev := put.Header.Revision
	written := time.Since(paused)
	seen := map[string]time.Duration{}
	// Each store renews its lease meanwhile, as a node's loop does: the
	// answers tell it how far etcd has gone.
	for _, s := range stores {
		for i := 0; ; i++ {
			cl, err := s.Cluster(ctx)
			require.NoError(t, err)
			if cl.Revision >= rev {
				break
			}
			if i%5 == 0 {
				_, err := s.KeepAlive(ctx, ttl)
				require.NoError(t, err)
			}
			require.Less(t, time.Since(paused), 10*time.Second,
				"%s: its cache (revision %d) never showed revision %d before gRPC's keepalive could drop a paused connection", s.Name(), cl.Revision, rev)
			time.Sleep(50 * time.Millisecond)
		}
		seen[s.Name()] = time.Since(paused).Round(time.Millisecond)
	}
	require.Less(t, time.Since(paused), 10*time.Second, "the checks ran before gRPC's keepalive could have helped")
	t.Logf("etcd leader %s paused; re-elected after %s; 4 rounds of renewals through the other members, slowest %s; "+
		"config written %s after the pause, seen by every store's cache: %v",
		el.Name, elected.Round(time.Millisecond), slowest.Round(time.Millisecond), written.Round(time.Millisecond), seen)
}

// waitFor retries f every 50 ms until it succeeds or ctx ends.
func waitFor(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

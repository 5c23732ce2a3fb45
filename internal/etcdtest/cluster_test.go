package etcdtest_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/etcdtest"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	defer func() {
		if buildDir != "" {
			_ = os.RemoveAll(buildDir)
		}
	}()
	return r.m.Run()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(mainRunner{m}) }

// built builds the etcdmember program once per test binary.
func built() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pgha-etcdmember-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildPath, buildErr = etcdtest.BuildMember(ctx, buildDir)
	})
	return buildPath, buildErr
}

func memberBinary(t testing.TB) string {
	t.Helper()
	bin, err := built()
	require.NoError(t, err)
	return bin
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A 3-member cluster of etcd processes: pausing the leader elects another
// one and writes go on; a paused member resumes and catches up; killing two
// members loses quorum (writes fail), restarting them restores it with every
// acknowledged write kept.
func TestClusterKillPauseRestart(t *testing.T) {
	c, err := etcdtest.StartCluster(within(t, time.Minute), etcdtest.ClusterOptions{Binary: memberBinary(t)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	require.Len(t, c.Endpoints(), 3)

	ctx := within(t, 2*time.Minute)
	put := func(k string) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := c.Admin.Put(ctx, k, "v")
		return err
	}
	waitPut := func(k string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := put(k)
			if err == nil {
				return
			}
			require.True(t, time.Now().Before(deadline), "put %s: %v", k, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitPut("a")

	l1, err := c.Leader(ctx)
	require.NoError(t, err)
	require.NoError(t, l1.Pause())
	require.True(t, l1.Paused())
	var l2 *etcdtest.Member
	deadline := time.Now().Add(30 * time.Second)
	for {
		l2, err = c.Leader(ctx)
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "no new leader while %s is paused: %v", l1.Name, err)
		time.Sleep(100 * time.Millisecond)
	}
	require.NotEqual(t, l1.Name, l2.Name, "a paused member never answers as leader")
	waitPut("b")
	require.NoError(t, l1.Resume())
	require.NoError(t, c.WaitHealthy(within(t, 30*time.Second)))

	var killed []*etcdtest.Member
	for _, m := range c.Members {
		if len(killed) < 2 {
			require.NoError(t, m.Kill())
			killed = append(killed, m)
		}
	}
	require.Error(t, put("c"), "no write without quorum")
	for _, m := range killed {
		require.NoError(t, m.Start())
	}
	require.NoError(t, c.WaitHealthy(within(t, 30*time.Second)))
	waitPut("d")
	for _, k := range []string{"a", "b", "d"} {
		resp, err := c.Admin.Get(ctx, k)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, "key %s kept", k)
	}
	t.Logf("paused leader %s (new leader %s), killed %s and %s (quorum lost, then restored)",
		l1.Name, l2.Name, killed[0].Name, killed[1].Name)
}

func ExampleStartCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := built() // etcdtest.BuildMember(ctx, dir), once per test binary
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := etcdtest.StartCluster(ctx, etcdtest.ClusterOptions{Size: 3, Binary: bin})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	leader, err := c.Leader(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = leader.Pause() // SIGSTOP: the two others elect a new leader
	for {
		if l, err := c.Leader(ctx); err == nil {
			fmt.Println(len(c.Members), "members; a new leader:", l != leader)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = leader.Resume()
	// Output: 3 members; a new leader: true
}

package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/pgtest"
)

var etcd *etcdtest.Etcd

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	var err error
	etcd, err = etcdtest.Start("cluster-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests: cannot start embedded etcd:", err)
		return 1
	}
	defer etcd.Stop()
	defer cluster.RemoveNodeProcForTest()
	return r.m.Run()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(mainRunner{m}) }

// shortTTL is the validated shortest profile: ttl=3, loop_wait=1,
// retry_timeout=1.
func shortTTL(extra map[string]any) map[string]any {
	d := map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
	for k, v := range extra {
		d[k] = v
	}
	return d
}

// newCluster starts a cluster on the shared etcd (skipping under -short, or
// failing in CI without PostgreSQL) and tears it down when the test ends.
func newCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	opts.BinDir = pgtest.BinDir(t) // skips before nodeproc is built
	if opts.Mode == cluster.Processes {
		opts.NodeProc = cluster.NodeProcForTest(t)
	}
	opts.Etcd = etcd.Addr
	opts.Namespace = "pgha-cluster-test"
	if os.Getenv("PGHA_CLUSTER_KEEP") != "" {
		// Keep the directories (data, logs) for a post-mortem.
		dir, err := os.MkdirTemp("", "pghac")
		require.NoError(t, err)
		opts.Dir = dir
		t.Logf("cluster directory (kept): %s", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return cluster.NewForTest(ctx, t, opts)
}

// startChecker starts the split-brain checker; the returned function stops
// it and fails the test on any instant with two writable primaries. It runs
// at cleanup too (before the cluster is closed) if the test did not call
// it.
func startChecker(t *testing.T, c *cluster.Cluster) func() {
	t.Helper()
	ch := c.StartChecker()
	var once sync.Once
	finish := func() {
		once.Do(func() {
			r := ch.Stop()
			t.Logf("split-brain checker: %s", r)
			if len(r.Violations) > 0 {
				t.Errorf("two writable primaries at once:\n%s", strings.Join(r.Violations, "\n"))
			}
			require.NotZero(t, len(r.Writes), "the checker never wrote through a primary")
		})
	}
	t.Cleanup(finish)
	return finish
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rows returns the sorted values of table t on node n.
func rows(ctx context.Context, n *cluster.Node) ([]int, error) {
	cn, err := n.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.Close(context.Background())
	r, err := cn.Query(ctx, "SELECT v FROM t ORDER BY v")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []int
	for r.Next() {
		var v int
		if err := r.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, r.Err()
}

// waitRows waits until node n holds exactly want in table t.
func waitRows(t *testing.T, n *cluster.Node, d time.Duration, want ...int) {
	t.Helper()
	err := cluster.Eventually(within(t, d), func(ctx context.Context) error {
		got, err := rows(ctx, n)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%s has rows %v, want %v", n.Name, got, want)
		}
		return nil
	})
	require.NoError(t, err)
}

// others returns the cluster's nodes except not.
func others(c *cluster.Cluster, not ...*cluster.Node) []*cluster.Node {
	var out []*cluster.Node
next:
	for _, n := range c.Nodes() {
		for _, x := range not {
			if n == x {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

// logHas reports whether a process node's log has a line containing every
// one of parts.
func logHas(t *testing.T, n *cluster.Node, parts ...string) bool {
	t.Helper()
	b, err := os.ReadFile(n.LogFile())
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

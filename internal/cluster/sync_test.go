package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/cluster/noderun"
)

// syncWriter inserts increasing values through whichever node is the
// primary and records the ones whose COMMIT was acknowledged. A write whose
// outcome is unknown (an error during or after COMMIT) is recorded as
// maybe: it may or may not survive, both are correct.
type syncWriter struct {
	c      *cluster.Cluster
	mu     sync.Mutex
	acked  []int
	maybe  []int
	next   int
	cancel context.CancelFunc
	done   chan struct{}
}

func startSyncWriter(t *testing.T, c *cluster.Cluster, ctx context.Context) *syncWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &syncWriter{c: c, cancel: cancel, done: make(chan struct{}), next: 1000}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			p, err := c.Primary(ctx)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			w.mu.Lock()
			w.next++
			v := w.next
			w.mu.Unlock()
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			err = p.Exec(wctx, "INSERT INTO t VALUES ($1)", v)
			wcancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, v)
			} else {
				w.maybe = append(w.maybe, v)
			}
			w.mu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *syncWriter) stop() { w.cancel(); <-w.done }

// ackedCount returns how many writes were acknowledged so far.
func (w *syncWriter) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitAcked waits until at least n more writes than now were acknowledged.
func (w *syncWriter) waitAcked(t *testing.T, n int, d time.Duration) {
	t.Helper()
	start := w.ackedCount()
	require.NoError(t, cluster.Eventually(within(t, d), func(context.Context) error {
		if got := w.ackedCount() - start; got < n {
			return fmt.Errorf("%d of %d writes acknowledged", got, n)
		}
		return nil
	}))
}

// checkAcked fails the test if node n lacks an acknowledged write.
func (w *syncWriter) checkAcked(t *testing.T, n *cluster.Node) {
	t.Helper()
	w.mu.Lock()
	acked := slices.Clone(w.acked)
	w.mu.Unlock()
	got, err := rows(within(t, 20*time.Second), n)
	require.NoError(t, err)
	var lost []int
	for _, v := range acked {
		if _, found := slices.BinarySearch(got, v); !found {
			lost = append(lost, v)
		}
	}
	require.Empty(t, lost, "%s lacks %d of %d acknowledged writes", n.Name, len(lost), len(acked))
	t.Logf("%s holds all %d acknowledged writes", n.Name, len(acked))
}

// syncState reads /sync.
func syncState(ctx context.Context, c *cluster.Cluster) (*dcs.SyncState, error) {
	cl, err := c.Store().Cluster(ctx)
	if err != nil {
		return nil, err
	}
	return cl.Sync, nil
}

// waitSync waits until /sync names leader with exactly n standbys (none of
// them in not), and returns them.
func waitSync(t *testing.T, c *cluster.Cluster, leader string, n int, d time.Duration, not ...string) []string {
	t.Helper()
	var standbys []string
	require.NoError(t, cluster.Eventually(within(t, d), func(ctx context.Context) error {
		s, err := syncState(ctx, c)
		if err != nil {
			return err
		}
		if s.IsEmpty() || s.Leader != leader || len(s.Standbys) != n {
			return fmt.Errorf("/sync is %+v, want leader %s with %d standbys", s, leader, n)
		}
		for _, x := range not {
			if s.IsStandby(x) {
				return fmt.Errorf("/sync still lists %s", x)
			}
		}
		standbys = s.Standbys
		return nil
	}))
	return standbys
}

func node(t *testing.T, c *cluster.Cluster, name string) *cluster.Node {
	t.Helper()
	n := c.Node(name)
	require.NotNil(t, n, name)
	return n
}

// Synchronous mode (non-strict), RELIABILITY.md B4 in sync mode: writes
// acknowledged before a SIGKILL of the primary (agent and postmaster) are
// all on the new primary, which is the synchronous standby, over two rounds;
// killing the synchronous standby moves the role to the other replica and
// writes go on.
func TestSyncModeKillPrimaryLosesNothing(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(map[string]any{"synchronous_mode": true})})
	finish := startChecker(t, c)
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 4*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int PRIMARY KEY)"))
	w := startSyncWriter(t, c, ctx)

	for round := 1; round <= 2; round++ {
		sb := waitSync(t, c, p.Name, 1, 30*time.Second)
		w.waitAcked(t, 20, 30*time.Second)
		killed := time.Now()
		require.NoError(t, p.Kill())
		q, err := c.WaitPrimary(within(t, 30*time.Second), p)
		require.NoError(t, err)
		t.Logf("round %d: %s killed; %s is the writable leader after %s", round, p.Name, q.Name, time.Since(killed).Round(time.Millisecond))
		require.Equal(t, sb[0], q.Name, "the synchronous standby is promoted")
		w.checkAcked(t, q)
		require.NoError(t, p.Start(ctx))
		_, err = c.WaitStable(within(t, 60*time.Second))
		require.NoError(t, err)
		p = q
	}

	// Kill the synchronous standby: /sync moves to the other replica.
	sb := waitSync(t, c, p.Name, 1, 30*time.Second)
	s := node(t, c, sb[0])
	require.NoError(t, s.Kill())
	other := waitSync(t, c, p.Name, 1, 30*time.Second, s.Name)
	require.NotEqual(t, s.Name, other[0])
	w.waitAcked(t, 20, 30*time.Second)
	w.stop()
	w.checkAcked(t, p)
	w.checkAcked(t, node(t, c, other[0]))
	t.Logf("killed the synchronous standby %s: /sync moved to %s and writes went on", s.Name, other[0])
	require.NoError(t, s.Start(ctx))
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)

	// G2: a clean stop of the synchronous standby hands its role over
	// before its Postgres stops.
	sb = waitSync(t, c, p.Name, 1, 30*time.Second)
	s = node(t, c, sb[0])
	require.NoError(t, s.Stop(ctx))
	require.True(t, logHas(t, s, "no longer a synchronous standby"), "%s left /sync before stopping (see %s)", s.Name, s.LogFile())
	waitSync(t, c, p.Name, 1, 30*time.Second, s.Name)
	require.NoError(t, s.Start(ctx))
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	finish()
}

// Strict synchronous mode: with every replica down, commits wait instead of
// being acknowledged without a standby; when a replica returns, the waiting
// commit completes and the replica holds it.
func TestSyncModeStrictBlocksWithoutStandby(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(map[string]any{
		"synchronous_mode": true, "synchronous_mode_strict": true})})
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 3*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int PRIMARY KEY)"))
	waitSync(t, c, p.Name, 1, 30*time.Second)
	rs := others(c, p)
	for _, r := range rs {
		require.NoError(t, r.Kill())
	}
	waitSync(t, c, p.Name, 0, 30*time.Second)

	done := make(chan error, 1)
	go func() { done <- p.Exec(ctx, "INSERT INTO t VALUES (1)") }()
	// The commit must still be waiting after a while: there is no standby.
	select {
	case err := <-done:
		t.Fatalf("a commit was acknowledged with no synchronous standby (err=%v)", err)
	case <-time.After(3 * time.Second):
	}
	require.NoError(t, rs[0].Start(ctx))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("the commit never completed after a standby returned")
	}
	waitRows(t, rs[0], 20*time.Second, 1)
	require.NoError(t, rs[1].Start(ctx))
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
}

// The ordering rule of synchronous mode (SPEC.md 8.3), checked where it
// matters: the agent of the primary is frozen between its two writes (the
// /sync key and synchronous_standby_names), then the primary and the
// standby that stays synchronous are SIGKILLed, so the only survivor is the
// standby whose status was changing. It must not be promoted (it is not in
// /sync, or not yet), and once the old primary is back no acknowledged
// write is missing. With the writes in the wrong order the survivor would
// be in /sync without being waited for, would be promoted, and would lack
// writes.
func TestSyncModeOrderingSurvivesAgentStop(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(map[string]any{
		"synchronous_mode": true, "synchronous_node_count": 2})})
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 5*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int PRIMARY KEY)"))
	waitSync(t, c, p.Name, 2, 30*time.Second)
	w := startSyncWriter(t, c, ctx)

	run := func(direction, kind string, count int) {
		w.waitAcked(t, 10, 30*time.Second)
		before, err := syncState(ctx, c)
		require.NoError(t, err)
		require.NoError(t, p.ArmSyncFreeze(kind))
		require.NoError(t, c.SetConfig(ctx, map[string]any{"synchronous_node_count": count}))
		require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(context.Context) error {
			if !p.Frozen() {
				return errors.New(p.Name + " is not frozen yet")
			}
			return nil
		}))
		mid, err := syncState(ctx, c)
		require.NoError(t, err)
		t.Logf("%s: %s frozen after its %q step; /sync was %v, is %v", direction, p.Name, kind, before.Standbys, mid.Standbys)
		// The standby that stays synchronous throughout, and the survivor.
		var keep, survivor *cluster.Node
		for _, n := range others(c, p) {
			if before.IsStandby(n.Name) && mid.IsStandby(n.Name) && keep == nil {
				keep = n
			} else {
				survivor = n
			}
		}
		require.NotNil(t, keep)
		require.NotNil(t, survivor)
		require.False(t, mid.IsStandby(survivor.Name), "%s must not be in /sync between the two writes", survivor.Name)
		require.NoError(t, keep.Kill())
		require.NoError(t, p.Kill())
		t.Logf("%s: killed %s and %s; %s must not be promoted", direction, p.Name, keep.Name, survivor.Name)
		deadline := time.Now().Add(4 * 3 * time.Second) // four TTLs
		for time.Now().Before(deadline) {
			require.Empty(t, c.Writable(ctx), "%s: %s, not a synchronous standby, was promoted", direction, survivor.Name)
			time.Sleep(500 * time.Millisecond)
		}
		require.NoError(t, p.Start(ctx))
		require.NoError(t, keep.Start(ctx))
		q, err := c.WaitStable(within(t, 90*time.Second))
		require.NoError(t, err)
		w.waitAcked(t, 5, 30*time.Second)
		w.checkAcked(t, q)
		p = q
		waitSync(t, c, p.Name, count, 30*time.Second)
	}
	run("removing a standby", noderun.FreezeAfterSyncKey, 1)
	run("adding a standby", noderun.FreezeAfterSyncNames, 2)
	w.stop()
}

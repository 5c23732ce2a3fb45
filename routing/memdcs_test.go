package routing_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/routing"
)

// These tests need no database: the router is fed by memdcs and asked where
// it would go (WaitForNode, Topology), with probing off so that the member
// keys decide.

func newFakeRouter(t *testing.T, f *fakeCluster, cfg routing.Config) *routing.Router {
	t.Helper()
	cfg.Source = routing.FromDCS(f.reader)
	if cfg.ConnString == "" {
		cfg.ConnString = baseConnString
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := routing.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r
}

func TestMemDCSFollowsLeaderAndLag(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1", "n2", "n3", "n4")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 10_000, nil)
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RoleReplica, 9_990, nil)
	f.member(t, "n3", "postgres://127.0.0.1:1003/postgres", dcs.RoleReplica, 5_000, nil)
	f.member(t, "n4", "postgres://127.0.0.1:1004/postgres", dcs.RoleReplica, 10_000, dcs.Tags{"noloadbalance": true})
	hooks, changes := leaderChanges()
	r := newFakeRouter(t, f, routing.Config{MaxLag: 100, Hooks: hooks})
	ctx := context.Background()

	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	_, err := r.WaitForNode(short, routing.Primary)
	cancel()
	require.ErrorIs(t, err, routing.ErrNoPrimary)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "no leader")

	// A waiter is released by the leader key.
	got := make(chan routing.Node, 1)
	go func() {
		n, _ := r.WaitForNode(ctx, routing.Primary)
		got <- n
	}()
	f.lead(t, "n1")
	require.Equal(t, "n1", (<-got).Name)
	e := waitLeader(t, changes, "n1")
	require.Positive(t, e.Revision)

	// Reads: only n2 is within 100 bytes; n4 is never used; n3 lags.
	for range 5 {
		n, err := r.WaitForNode(ctx, routing.Standby)
		require.NoError(t, err)
		require.Equal(t, "n2", n.Name)
	}
	// n3 catches up (published position): now it is eligible too.
	f.member(t, "n3", "postgres://127.0.0.1:1003/postgres", dcs.RoleReplica, 9_950, nil)
	waitTopology(t, r, "n3 within the bound", func(top *routing.Topology) bool { return len(top.Replicas(100)) == 2 })
	seen := map[string]bool{}
	for range 6 {
		n, _ := r.WaitForNode(ctx, routing.Standby)
		seen[n.Name] = true
	}
	require.Equal(t, map[string]bool{"n2": true, "n3": true}, seen)

	// The leader moves: the router follows the watch.
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RoleReplica, 10_000, nil)
	f.lead(t, "n2")
	e2 := waitLeader(t, changes, "n2")
	require.NotEqual(t, e.Revision, e2.Revision)
	n, err := r.WaitForNode(ctx, routing.Primary)
	require.NoError(t, err)
	require.Equal(t, "n2", n.Name)
	require.Equal(t, "127.0.0.1:1002", n.Addr)
	require.GreaterOrEqual(t, r.Stats().LeaderChanges, int64(2), "n1, n2 (and no leader in between, unless coalesced)")

	// The same member taking the key again is a new epoch.
	f.lead(t, "")
	f.lead(t, "n2")
	e3 := waitLeader(t, changes, "n2")
	require.NotEqual(t, e2.Revision, e3.Revision)
}

func TestMemDCSSwitchoverHold(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1", "n2")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RoleReplica, 100, nil)
	f.lead(t, "n1")
	hooks, changes := leaderChanges()
	r := newFakeRouter(t, f, routing.Config{Hooks: hooks, SwitchoverHold: 10 * time.Second})
	ctx := context.Background()
	n, err := r.WaitForNode(ctx, routing.Primary)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name)

	// /failover names a switchover: new write acquisitions are held.
	_, err = f.nodes["n1"].SetFailover(ctx, dcs.Failover{Leader: "n1", Candidate: "n2"}, dcs.Unconditional)
	require.NoError(t, err)
	waitTopology(t, r, "holding", func(top *routing.Topology) bool { return top.Holding })
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	_, err = r.WaitForNode(short, routing.Primary)
	cancel()
	require.ErrorIs(t, err, routing.ErrNoPrimary)
	require.ErrorContains(t, err, "switchover from n1 in progress")
	// Reads are not held.
	n, err = r.WaitForNode(ctx, routing.PreferPrimary)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name)

	// Waiters are released to the new primary.
	got := make(chan routing.Node, 1)
	go func() {
		n, _ := r.WaitForNode(ctx, routing.Primary)
		got <- n
	}()
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RoleReplica, 100, nil)
	f.lead(t, "n2")
	require.Equal(t, "n2", (<-got).Name)
	waitLeader(t, changes, "n2")
	require.False(t, r.Topology().Holding, "the key still names the switchover, but n2 leads")

	// A refused switchover (the request cleared, n2 still leads) releases
	// the hold as well.
	_, err = f.nodes["n2"].SetFailover(ctx, dcs.Failover{Leader: "n2", Candidate: "n1"}, dcs.Unconditional)
	require.NoError(t, err)
	waitTopology(t, r, "holding", func(top *routing.Topology) bool { return top.Holding })
	_, err = f.nodes["n2"].SetFailover(ctx, dcs.Failover{}, dcs.Unconditional)
	require.NoError(t, err)
	waitTopology(t, r, "released", func(top *routing.Topology) bool { return !top.Holding })
}

func TestMemDCSSwitchoverHoldIsBounded(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1", "n2")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	f.lead(t, "n1")
	r := newFakeRouter(t, f, routing.Config{SwitchoverHold: 200 * time.Millisecond})
	ctx := context.Background()
	_, err := f.nodes["n1"].SetFailover(ctx, dcs.Failover{Leader: "n1", Candidate: "n2"}, dcs.Unconditional)
	require.NoError(t, err)
	waitTopology(t, r, "holding", func(top *routing.Topology) bool { return top.Holding })
	// The switchover never happens: after the bound, writes go to n1 again.
	n, err := r.WaitForNode(ctx, routing.Primary)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name)
	require.False(t, r.Topology().Holding)

	// A scheduled switchover holds only once it is due.
	_, err = f.nodes["n1"].SetFailover(ctx, dcs.Failover{Leader: "n1", Candidate: "n2", ScheduledAt: time.Now().Add(time.Hour)}, dcs.Unconditional)
	require.NoError(t, err)
	waitTopology(t, r, "scheduled switchover seen", func(top *routing.Topology) bool {
		return top.Switchover != nil && !top.Switchover.ScheduledAt.IsZero()
	})
	require.False(t, r.Topology().Holding)
}

func TestMemDCSConflictReported(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1", "n2")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RoleReplica, 100, nil)
	f.lead(t, "n1")
	var mu sync.Mutex
	var conflicts []routing.Conflict
	r := newFakeRouter(t, f, routing.Config{Hooks: routing.Hooks{OnConflict: func(c routing.Conflict) {
		mu.Lock()
		defer mu.Unlock()
		conflicts = append(conflicts, c)
	}}})
	// n2 claims to be a running primary while n1 holds the key.
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RolePrimary, 100, nil)
	waitTopology(t, r, "conflict", func(top *routing.Topology) bool { return len(top.Conflicts) == 1 })
	// Reported once per node and tenure, however many updates follow.
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RolePrimary, 200, nil)
	waitTopology(t, r, "update", func(top *routing.Topology) bool { n, _ := top.Node("n2"); return n.LSN == 200 })
	mu.Lock()
	require.Len(t, conflicts, 1)
	require.Equal(t, "n2", conflicts[0].Node)
	require.Equal(t, "n1", conflicts[0].Epoch.Leader)
	mu.Unlock()
	require.Equal(t, int64(1), r.Stats().Conflicts)
	n, err := r.WaitForNode(context.Background(), routing.Primary)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name, "the DCS leader decides")
	require.Empty(t, r.Topology().Replicas(-1), "the claimant serves no reads")
}

func TestMemDCSCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	r := newFakeRouter(t, f, routing.Config{})
	ctx := context.Background()
	waiting := make(chan error, 1)
	go func() {
		_, err := r.Primary(ctx)
		waiting <- err
	}()
	r.Close()
	r.Close()
	require.ErrorIs(t, <-waiting, routing.ErrClosed, "a waiter is released by Close")
	_, err := r.Primary(ctx)
	require.ErrorIs(t, err, routing.ErrClosed)
	_, err = r.WaitForNode(ctx, routing.Standby)
	require.ErrorIs(t, err, routing.ErrClosed)
	_, err = r.Write(ctx, nil)
	require.ErrorIs(t, err, routing.ErrClosed)
	require.False(t, routing.SafeToRetry(err))
}

func TestMemDCSNewWaitsForTheSource(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1")
	f.srv.Partition("") // the read-only client cannot read
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := routing.New(ctx, routing.Config{Source: routing.FromDCS(f.reader), ConnString: baseConnString})
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), err)
	f.srv.Heal("")
}

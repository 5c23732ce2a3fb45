package dcstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
)

// Factory returns a Harness on a fresh, empty cluster.
type Factory func(t *testing.T) Harness

// Run runs every conformance test against the stores the factory makes.
func Run(t *testing.T, f Factory) {
	t.Run("ClusterEmpty", func(t *testing.T) { testClusterEmpty(t, f(t)) })
	t.Run("MemberPublish", func(t *testing.T) { testMemberPublish(t, f(t)) })
	t.Run("AcquireOneWinner", func(t *testing.T) { testAcquireOneWinner(t, f(t)) })
	t.Run("RefreshLeader", func(t *testing.T) { testRefreshLeader(t, f(t)) })
	t.Run("StaleLeaderFenced", func(t *testing.T) { testStaleLeaderFenced(t, f(t)) })
	t.Run("ReleaseLeaderWithStatus", func(t *testing.T) { testReleaseLeader(t, f(t)) })
	t.Run("LeaseExpiryRemovesKeys", func(t *testing.T) { testLeaseExpiry(t, f(t)) })
	t.Run("LeaseTTLPasses", func(t *testing.T) { testLeaseTTLPasses(t, f(t)) })
	t.Run("TTLChangeKeepsLeadership", func(t *testing.T) { testTTLChange(t, f(t)) })
	t.Run("Resign", func(t *testing.T) { testResign(t, f(t)) })
	t.Run("CASConfig", func(t *testing.T) { testCASConfig(t, f(t)) })
	t.Run("CASFailover", func(t *testing.T) { testCASFailover(t, f(t)) })
	t.Run("CASSync", func(t *testing.T) { testCASSync(t, f(t)) })
	t.Run("InitializeRace", func(t *testing.T) { testInitializeRace(t, f(t)) })
	t.Run("LeaderWrites", func(t *testing.T) { testLeaderWrites(t, f(t)) })
	t.Run("DeleteCluster", func(t *testing.T) { testDeleteCluster(t, f(t)) })
	t.Run("ReadOnlyClient", func(t *testing.T) { testReadOnly(t, f(t)) })
	t.Run("WatchOrder", func(t *testing.T) { testWatchOrder(t, f(t)) })
	t.Run("WatchSurvivesInterrupt", func(t *testing.T) { testWatchInterrupt(t, f(t)) })
	t.Run("WatchLeaseExpiry", func(t *testing.T) { testWatchLeaseExpiry(t, f(t)) })
	t.Run("WatchEndsWithContext", func(t *testing.T) { testWatchEnds(t, f(t)) })
	t.Run("MalformedValues", func(t *testing.T) { testMalformed(t, f(t)) })
	t.Run("LegacyValues", func(t *testing.T) { testLegacy(t, f(t)) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceled(t, f(t)) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, f(t)) })
	t.Run("Confirm", func(t *testing.T) { testConfirm(t, f(t)) })
}

const waitFor = 10 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func cluster(t *testing.T, s dcs.Store) *dcs.Cluster {
	t.Helper()
	c, err := s.Cluster(ctxT(t))
	require.NoError(t, err)
	return c
}

// eventually polls the store until cond holds on its snapshot.
func eventually(t *testing.T, s dcs.Store, what string, cond func(c *dcs.Cluster) bool) *dcs.Cluster {
	t.Helper()
	var last *dcs.Cluster
	require.Eventually(t, func() bool {
		c, err := s.Cluster(ctxT(t))
		if err != nil {
			return false
		}
		last = c
		return cond(c)
	}, waitFor, 5*time.Millisecond, "waiting for: %s", what)
	return last
}

func i64(v int64) *int64 { return &v }

func member(name string, lsn int64) dcs.MemberData {
	return dcs.MemberData{
		ConnURL: "postgres://127.0.0.1:5432/postgres", APIURL: "http://127.0.0.1:8008/patroni",
		State: "running", Role: dcs.RoleReplica, Version: "pgha-test", XLogLocation: i64(lsn), Timeline: 1,
		Tags: dcs.Tags{"node": name},
	}
}

func testClusterEmpty(t *testing.T, h Harness) {
	c := cluster(t, h.NewStore(t, "a"))
	require.Nil(t, c.Leader)
	require.Nil(t, c.Initialize)
	require.Nil(t, c.Config)
	require.Empty(t, c.Members)
	require.False(t, c.IsLocked())
	require.Empty(t, c.DecodeErrors)
	require.Equal(t, int64(0), c.Timeline())
}

func testMemberPublish(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	lease, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NotZero(t, lease.ID)
	require.Equal(t, 30*time.Second, lease.TTL)
	require.False(t, lease.Sent.IsZero(), "Sent is reported")
	require.Equal(t, lease.Sent.Add(30*time.Second), lease.Deadline())

	d := member("a", 1234)
	require.NoError(t, a.PutMember(ctx, d))
	c := eventually(t, a, "member a", func(c *dcs.Cluster) bool { _, ok := c.Member("a"); return ok })
	m, _ := c.Member("a")
	require.Equal(t, d, m.Data)
	require.Equal(t, lease.ID, m.Lease)

	raw, ok := h.ReadRaw(t, "members/a")
	require.True(t, ok)
	require.Equal(t, lease.ID, raw.Lease, "member key carries the node's lease")
	require.JSONEq(t, `{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni",
		"state":"running","role":"replica","version":"pgha-test","tags":{"node":"a"},"xlog_location":1234,"timeline":1}`, string(raw.Value))

	// An unchanged member is not rewritten.
	require.NoError(t, a.PutMember(ctx, d))
	raw2, _ := h.ReadRaw(t, "members/a")
	require.Equal(t, raw.ModRevision, raw2.ModRevision, "equal member data must not be written again")

	// A changed one is.
	d.XLogLocation = i64(5678)
	require.NoError(t, a.PutMember(ctx, d))
	raw3, _ := h.ReadRaw(t, "members/a")
	require.Greater(t, raw3.ModRevision, raw2.ModRevision)
	eventually(t, a, "member a at 5678", func(c *dcs.Cluster) bool {
		m, ok := c.Member("a")
		return ok && m.Data.Position() == 5678
	})
}

func testAcquireOneWinner(t *testing.T, h Harness) {
	const n = 5
	stores := make([]dcs.Store, n)
	for i := range stores {
		stores[i] = h.NewStore(t, fmt.Sprintf("node%d", i))
		_, err := stores[i].KeepAlive(ctxT(t), 30*time.Second)
		require.NoError(t, err)
		require.NoError(t, stores[i].PutMember(ctxT(t), member(stores[i].Name(), 0)))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	leases := make([]dcs.Lease, n)
	start := make(chan struct{})
	for i := range stores {
		wg.Go(func() {
			<-start
			leases[i], errs[i] = stores[i].AcquireLeader(ctxT(t))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "two acquirers won: %d and %d", winner, i)
			winner = i
			continue
		}
		require.ErrorIs(t, err, dcs.ErrConflict, "loser %d", i)
		require.False(t, dcs.IsTransient(err))
	}
	require.NotEqual(t, -1, winner, "nobody won")
	name := stores[winner].Name()
	c := eventually(t, stores[0], "leader visible", func(c *dcs.Cluster) bool { return c.LeaderName() == name })
	require.Equal(t, leases[winner].ID, c.Leader.Lease)
	require.NotZero(t, c.Leader.CreateRevision)
	require.Equal(t, name, c.Leader.Member.Name)
	require.Equal(t, dcs.RoleReplica, c.Leader.Member.Data.Role, "leader's member data is resolved")

	raw, ok := h.ReadRaw(t, dcs.KeyLeader)
	require.True(t, ok)
	require.Equal(t, name, string(raw.Value), "leader key holds the plain member name")
	mraw, _ := h.ReadRaw(t, dcs.KeyMembers+name)
	require.Equal(t, raw.Lease, mraw.Lease, "leader and member key share one lease")

	// A second attempt by a loser still fails while the winner holds the key.
	loser := (winner + 1) % n
	_, err := stores[loser].AcquireLeader(ctxT(t))
	require.ErrorIs(t, err, dcs.ErrConflict)
}

func testRefreshLeader(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	_, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	l1, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	l2, err := a.RefreshLeader(ctx)
	require.NoError(t, err)
	require.Equal(t, l1.ID, l2.ID)
	require.False(t, l2.Sent.Before(l1.Sent), "refresh reports a new send time")
	require.False(t, l2.Deadline().Before(l1.Deadline()))

	_, err = b.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNotLeader, "a non-holder cannot refresh")
	require.False(t, dcs.IsTransient(err))

	// The key deleted under a live lease (an operator removed it): the holder
	// re-creates it, as Patroni's update_leader does.
	c := cluster(t, a)
	createRev := c.Leader.CreateRevision
	require.NoError(t, a.ReleaseLeader(ctx, nil))
	l3, err := a.RefreshLeader(ctx)
	require.NoError(t, err)
	c = eventually(t, b, "leader re-created", func(c *dcs.Cluster) bool { return c.LeaderName() == "a" })
	require.Equal(t, l3.ID, c.Leader.Lease)
	require.Greater(t, c.Leader.CreateRevision, createRev, "a new tenure has a new create revision")
}

func testStaleLeaderFenced(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	_, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, a.SetStatus(ctx, dcs.Status{Optime: 100}))

	// a's lease expires (it froze); b takes over.
	h.ExpireLease(t, "a")
	eventually(t, b, "a's leader key gone", func(c *dcs.Cluster) bool { return !c.IsLocked() })
	_, err = b.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	_, err = b.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, b.SetStatus(ctx, dcs.Status{Optime: 200}))

	// a wakes up: every leader-only operation fails with ErrNotLeader.
	_, err = a.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNotLeader)
	require.ErrorIs(t, a.SetStatus(ctx, dcs.Status{Optime: 999}), dcs.ErrNotLeader)
	require.ErrorIs(t, a.SetHistory(ctx, []dcs.HistoryLine{{Timeline: 9, LSN: 9, Reason: "stale"}}), dcs.ErrNotLeader)
	require.ErrorIs(t, a.SetFailsafe(ctx, map[string]string{"a": "x"}), dcs.ErrNotLeader)
	_, err = a.SetSync(ctx, dcs.SyncState{Leader: "a"}, dcs.Unconditional)
	require.ErrorIs(t, err, dcs.ErrNotLeader)
	require.ErrorIs(t, a.DeleteSync(ctx, dcs.Unconditional), dcs.ErrNotLeader)
	require.ErrorIs(t, a.ReleaseLeader(ctx, &dcs.Status{Optime: 999}), dcs.ErrNotLeader)

	c := eventually(t, b, "b leads", func(c *dcs.Cluster) bool { return c.LeaderName() == "b" })
	require.Equal(t, int64(200), c.Status.Optime, "the stale leader's writes changed nothing")
	require.Nil(t, c.History)
	require.Nil(t, c.Failsafe)
	require.Nil(t, c.Sync)
}

func testReleaseLeader(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, a.ReleaseLeader(ctx, &dcs.Status{Optime: 4242}))
	c := eventually(t, a, "leader released", func(c *dcs.Cluster) bool { return !c.IsLocked() })
	require.Equal(t, int64(4242), c.Status.Optime)
	st, ok := h.ReadRaw(t, dcs.KeyStatus)
	require.True(t, ok)
	require.JSONEq(t, `{"optime":4242}`, string(st.Value))
	require.Zero(t, st.Lease, "status carries no lease")
	require.ErrorIs(t, a.ReleaseLeader(ctx, nil), dcs.ErrNotLeader, "releasing twice")
}

func testLeaseExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	for _, s := range []dcs.Store{a, b} {
		_, err := s.KeepAlive(ctx, 30*time.Second)
		require.NoError(t, err)
		require.NoError(t, s.PutMember(ctx, member(s.Name(), 1)))
	}
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, a.SetStatus(ctx, dcs.Status{Optime: 7}))
	h.ExpireLease(t, "a")
	c := eventually(t, b, "a's keys gone", func(c *dcs.Cluster) bool {
		_, ok := c.Member("a")
		return !ok && !c.IsLocked()
	})
	_, ok := c.Member("b")
	require.True(t, ok, "other members' keys stay")
	require.Equal(t, int64(7), c.Status.Optime, "keys without a lease stay")

	// The next KeepAlive grants a new lease; PutMember republishes on it.
	l, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 2)))
	c = eventually(t, b, "a back", func(c *dcs.Cluster) bool { _, ok := c.Member("a"); return ok })
	m, _ := c.Member("a")
	require.Equal(t, l.ID, m.Lease)
}

func testLeaseTTLPasses(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	ttl := h.MinTTL()
	_, err := a.KeepAlive(ctx, ttl)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	eventually(t, b, "a leads", func(c *dcs.Cluster) bool { return c.LeaderName() == "a" })
	h.Advance(t, ttl+ttl/2+time.Second)
	eventually(t, b, "a's lease ran out", func(c *dcs.Cluster) bool {
		_, ok := c.Member("a")
		return !ok && !c.IsLocked()
	})
	// The tenure ended with the lease: the old holder's deadline has passed,
	// it may have fenced itself already, so it must not get the key back by
	// refreshing (unlike Patroni, which re-creates it); it races again instead.
	_, err = a.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNotLeader)
	require.False(t, cluster(t, b).IsLocked(), "a refresh after expiry must not re-create the key")
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err, "the old holder may race for the free key like anyone")
}

func testTTLChange(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	l1, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	l2, err := a.KeepAlive(ctx, 20*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, l1.ID, l2.ID)
	require.Equal(t, 20*time.Second, l2.TTL)
	c := eventually(t, a, "keys on the new lease", func(c *dcs.Cluster) bool {
		m, ok := c.Member("a")
		return ok && c.LeaderName() == "a" && c.Leader.Lease == l2.ID && m.Lease == l2.ID
	})
	require.NotNil(t, c.Leader)
	l3, err := a.RefreshLeader(ctx)
	require.NoError(t, err)
	require.Equal(t, l2.ID, l3.ID)
	require.NoError(t, a.SetStatus(ctx, dcs.Status{Optime: 1}), "still the leader after a TTL change")
}

func testResign(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	_, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Resign(ctx))
	eventually(t, b, "a resigned", func(c *dcs.Cluster) bool {
		_, ok := c.Member("a")
		return !ok && !c.IsLocked()
	})
}

func testCASConfig(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	cfg := map[string]any{"ttl": 30, "loop_wait": 10, "postgresql": map[string]any{"use_pg_rewind": true}}
	r1, err := a.SetConfig(ctx, cfg, dcs.IfAbsent())
	require.NoError(t, err)
	require.NotZero(t, r1)
	_, err = b.SetConfig(ctx, map[string]any{"ttl": 99}, dcs.IfAbsent())
	require.ErrorIs(t, err, dcs.ErrConflict, "second create-if-absent loses")

	c := eventually(t, b, "config visible", func(c *dcs.Cluster) bool { return c.Config != nil && c.Config.ModRevision == r1 })
	require.Equal(t, 30*time.Second, c.Config.Dynamic().TTL)
	require.True(t, c.Config.Dynamic().UsePgRewind)

	r2, err := b.SetConfig(ctx, map[string]any{"ttl": 40}, dcs.IfRevision(r1))
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = a.SetConfig(ctx, map[string]any{"ttl": 50}, dcs.IfRevision(r1))
	require.ErrorIs(t, err, dcs.ErrConflict, "a write based on a stale read loses")
	c = eventually(t, a, "config at r2", func(c *dcs.Cluster) bool { return c.Config != nil && c.Config.ModRevision == r2 })
	require.Equal(t, 40*time.Second, c.Config.Dynamic().TTL)

	_, err = a.SetConfig(ctx, map[string]any{"ttl": 60}, dcs.Unconditional)
	require.NoError(t, err)
	raw, _ := h.ReadRaw(t, dcs.KeyConfig)
	require.JSONEq(t, `{"ttl":60}`, string(raw.Value))
	require.Zero(t, raw.Lease)
}

func testCASFailover(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	at := time.Date(2026, 11, 26, 2, 28, 20, 246384000, time.UTC)
	r1, err := a.SetFailover(ctx, dcs.Failover{Leader: "a", Candidate: "b", ScheduledAt: at}, dcs.Unconditional)
	require.NoError(t, err)
	raw, _ := h.ReadRaw(t, dcs.KeyFailover)
	require.JSONEq(t, `{"leader":"a","member":"b","scheduled_at":"2026-11-26T02:28:20.246384+00:00"}`, string(raw.Value))
	c := eventually(t, a, "failover visible", func(c *dcs.Cluster) bool { return !c.Failover.IsEmpty() })
	require.Equal(t, "b", c.Failover.Candidate)
	require.True(t, at.Equal(c.Failover.ScheduledAt))
	require.Equal(t, r1, c.Failover.ModRevision)

	_, err = a.SetFailover(ctx, dcs.Failover{}, dcs.IfRevision(r1-1))
	require.ErrorIs(t, err, dcs.ErrConflict)
	_, err = a.SetFailover(ctx, dcs.Failover{}, dcs.IfRevision(r1))
	require.NoError(t, err)
	raw, ok := h.ReadRaw(t, dcs.KeyFailover)
	require.True(t, ok, "clearing writes {} and keeps the key")
	require.Equal(t, "{}", string(raw.Value))
	c = eventually(t, a, "failover cleared", func(c *dcs.Cluster) bool { return c.Failover != nil && c.Failover.IsEmpty() })
	require.Greater(t, c.Failover.ModRevision, r1)
}

func testCASSync(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	r1, err := a.SetSync(ctx, dcs.SyncState{Leader: "a", Standbys: []string{"c", "b"}}, dcs.IfAbsent())
	require.NoError(t, err)
	raw, _ := h.ReadRaw(t, dcs.KeySync)
	require.JSONEq(t, `{"leader":"a","quorum":0,"sync_standby":"b,c"}`, string(raw.Value))
	_, err = a.SetSync(ctx, dcs.SyncState{Leader: "a"}, dcs.IfAbsent())
	require.ErrorIs(t, err, dcs.ErrConflict)
	require.False(t, errors.Is(err, dcs.ErrNotLeader), "a CAS conflict by the leader is not a leadership loss")
	r2, err := a.SetSync(ctx, dcs.SyncState{Leader: "a", Standbys: []string{"b"}}, dcs.IfRevision(r1))
	require.NoError(t, err)
	c := eventually(t, a, "sync at r2", func(c *dcs.Cluster) bool { return c.Sync != nil && c.Sync.ModRevision == r2 })
	require.Equal(t, []string{"b"}, c.Sync.Standbys)
	require.True(t, c.Sync.IsStandby("B"), "names match case-insensitively")
	require.ErrorIs(t, a.DeleteSync(ctx, dcs.IfRevision(r1)), dcs.ErrConflict)
	require.NoError(t, a.DeleteSync(ctx, dcs.IfRevision(r2)))
	eventually(t, a, "sync deleted", func(c *dcs.Cluster) bool { return c.Sync == nil })
}

func testInitializeRace(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.NewStore(t, "a"), h.NewStore(t, "b")
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { errA = a.InitializeRace(ctx, "") })
	wg.Go(func() { errB = b.InitializeRace(ctx, "") })
	wg.Wait()
	require.True(t, (errA == nil) != (errB == nil), "exactly one racer wins: %v / %v", errA, errB)
	for _, err := range []error{errA, errB} {
		if err != nil {
			require.ErrorIs(t, err, dcs.ErrConflict)
		}
	}
	c := eventually(t, a, "initialize present", func(c *dcs.Cluster) bool { return c.Initialize != nil })
	require.True(t, c.Initialize.InProgress())
	require.NoError(t, a.SetInitialize(ctx, "7712311896889841141"))
	c = eventually(t, b, "sysid", func(c *dcs.Cluster) bool { return c.Initialize != nil && c.Initialize.SysID != "" })
	require.Equal(t, "7712311896889841141", c.Initialize.SysID)
	require.NoError(t, b.CancelInitialize(ctx))
	eventually(t, a, "initialize gone", func(c *dcs.Cluster) bool { return c.Initialize == nil })
}

func testLeaderWrites(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	hist := []dcs.HistoryLine{
		{Timeline: 1, LSN: 67305096, Reason: "no recovery target specified", Timestamp: "2026-11-26T02:28:20.246384+00:00", NewLeader: "a"},
		{Timeline: 2, LSN: 67338448, Reason: "no recovery target specified"},
	}
	require.NoError(t, a.SetHistory(ctx, hist))
	require.NoError(t, a.SetStatus(ctx, dcs.Status{Optime: 5, Slots: map[string]int64{"b": 5}, RetainSlots: []string{"a", "b"}}))
	require.NoError(t, a.SetFailsafe(ctx, map[string]string{"a": "http://a/patroni"}))
	c := eventually(t, a, "leader writes visible", func(c *dcs.Cluster) bool {
		return c.History != nil && c.Failsafe != nil && c.Status.Optime == 5
	})
	require.Equal(t, hist, c.History.Lines)
	require.Equal(t, int64(3), c.Timeline())
	require.Equal(t, map[string]int64{"b": 5}, c.Status.Slots)
	require.Equal(t, []string{"a", "b"}, c.Status.RetainSlots)
	require.Equal(t, map[string]string{"a": "http://a/patroni"}, c.Failsafe.Members)
	raw, _ := h.ReadRaw(t, dcs.KeyHistory)
	require.JSONEq(t, `[[1,67305096,"no recovery target specified","2026-11-26T02:28:20.246384+00:00","a"],[2,67338448,"no recovery target specified"]]`, string(raw.Value))
	for _, k := range []string{dcs.KeyHistory, dcs.KeyStatus, dcs.KeyFailsafe} {
		raw, _ := h.ReadRaw(t, k)
		require.Zero(t, raw.Lease, "%s carries no lease", k)
	}
}

func testDeleteCluster(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a := h.NewStore(t, "a")
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err := a.AcquireLeader(ctx)
	require.NoError(t, err)
	_, err = a.SetConfig(ctx, map[string]any{"ttl": 30}, dcs.Unconditional)
	require.NoError(t, err)
	require.NoError(t, a.DeleteCluster(ctx))
	eventually(t, a, "cluster empty", func(c *dcs.Cluster) bool {
		return c.Config == nil && c.Leader == nil && len(c.Members) == 0
	})
	require.NoError(t, a.DeleteCluster(ctx), "deleting an empty cluster is fine")
}

func testReadOnly(t *testing.T, h Harness) {
	ctx := ctxT(t)
	ro := h.NewStore(t, "")
	require.Equal(t, "", ro.Name())
	_, err := ro.AcquireLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrNoSession)
	_, err = ro.KeepAlive(ctx, 30*time.Second)
	require.ErrorIs(t, err, dcs.ErrNoSession)
	require.ErrorIs(t, ro.PutMember(ctx, member("x", 1)), dcs.ErrNoSession)
	// Operator writes work without a session.
	_, err = ro.SetFailover(ctx, dcs.Failover{Candidate: "b"}, dcs.Unconditional)
	require.NoError(t, err)
	_, err = ro.SetConfig(ctx, map[string]any{"pause": true}, dcs.Unconditional)
	require.NoError(t, err)
	c := eventually(t, ro, "operator writes", func(c *dcs.Cluster) bool { return c.Config != nil && !c.Failover.IsEmpty() })
	require.True(t, c.Config.Dynamic().Pause)
}

type seen struct {
	typ dcs.EventType
	key string
}

// collect reads events until n non-reset events arrived or the wait ends.
func collect(t *testing.T, ch <-chan dcs.Event, n int) []dcs.Event {
	t.Helper()
	var out []dcs.Event
	deadline := time.After(waitFor)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "watch closed early after %d events: %v", len(out), out)
			require.NotEqual(t, dcs.EventReset, ev.Type, "unexpected reset")
			out = append(out, ev)
		case <-deadline:
			require.FailNow(t, "timed out", "got %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

func keysOf(evs []dcs.Event) []seen {
	out := make([]seen, len(evs))
	for i, e := range evs {
		out[i] = seen{e.Type, e.Key}
	}
	return out
}

func requireOrdered(t *testing.T, evs []dcs.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		require.GreaterOrEqual(t, evs[i].Revision, evs[i-1].Revision, "events out of order at %d", i)
	}
	for _, e := range evs {
		require.NotNil(t, e.Cluster)
		require.GreaterOrEqual(t, e.Cluster.Revision, e.Revision)
	}
}

func testWatchOrder(t *testing.T, h Harness) {
	ctx := ctxT(t)
	w, a := h.NewStore(t, "w"), h.NewStore(t, "a")
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	_, err = a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	_, err = a.SetConfig(ctx, map[string]any{"ttl": 30}, dcs.Unconditional)
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, a.PutMember(ctx, member("a", int64(i+2))))
	}
	require.NoError(t, a.ReleaseLeader(ctx, &dcs.Status{Optime: 21}))

	evs := collect(t, ch, 3+20+2)
	requireOrdered(t, evs)
	want := []seen{{dcs.EventPut, "members/a"}, {dcs.EventPut, "leader"}, {dcs.EventPut, "config"}}
	for range 20 {
		want = append(want, seen{dcs.EventPut, "members/a"})
	}
	want = append(want, seen{dcs.EventPut, "status"}, seen{dcs.EventDelete, "leader"})
	require.Equal(t, want, keysOf(evs))
	for i := range 20 {
		m, err := dcs.DecodeMember(evs[3+i].Value)
		require.NoError(t, err)
		require.Equal(t, int64(i+2), m.Position(), "member updates arrive in write order")
	}
	require.Equal(t, evs[23].Revision, evs[24].Revision, "status and leader delete are one transaction")
	require.Equal(t, "a", evs[1].Cluster.LeaderName(), "snapshot after the leader put shows the leader")
	last := evs[len(evs)-1].Cluster
	require.False(t, last.IsLocked())
	require.Equal(t, int64(21), last.Status.Optime)
}

func testWatchInterrupt(t *testing.T, h Harness) {
	ctx := ctxT(t)
	w, a := h.NewStore(t, "w"), h.NewStore(t, "a")
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	for i := range 5 {
		_, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional)
		require.NoError(t, err)
	}
	first := collect(t, ch, 5)
	h.Interrupt(t, "w")
	for i := 5; i < 15; i++ {
		_, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional)
		require.NoError(t, err)
	}
	rest := collect(t, ch, 10)
	all := append(first, rest...)
	requireOrdered(t, all)
	for i, e := range all {
		require.Equal(t, "config", e.Key)
		cfg, err := dcs.DecodeConfig(e.Value)
		require.NoError(t, err)
		require.EqualValues(t, fmt.Sprint(i), fmt.Sprint(cfg["n"]), "change %d skipped or repeated", i)
	}
	// Nothing extra is pending.
	select {
	case ev := <-ch:
		require.FailNow(t, "unexpected extra event", "%v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func testWatchLeaseExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	w, a := h.NewStore(t, "w"), h.NewStore(t, "a")
	_, err := a.KeepAlive(ctx, 30*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.PutMember(ctx, member("a", 1)))
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	h.ExpireLease(t, "a")
	evs := collect(t, ch, 2)
	got := map[seen]bool{}
	for _, e := range evs {
		got[seen{e.Type, e.Key}] = true
	}
	require.True(t, got[seen{dcs.EventDelete, "leader"}], "leader expiry is delivered: %v", evs)
	require.True(t, got[seen{dcs.EventDelete, "members/a"}], "member expiry is delivered: %v", evs)
	require.False(t, evs[1].Cluster.IsLocked())
}

func testWatchEnds(t *testing.T, h Harness) {
	w := h.NewStore(t, "w")
	ctx, cancel := context.WithCancel(ctxT(t))
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	}, waitFor, time.Millisecond, "watch channel closes when its context ends")
}

func testMalformed(t *testing.T, h Harness) {
	a := h.NewStore(t, "a")
	garbage := map[string]string{
		dcs.KeyConfig:           `{"ttl": 30,`,
		dcs.KeyFailover:         `{not json`,
		dcs.KeySync:             `[1,2`,
		dcs.KeyHistory:          `{"a":1}`,
		dcs.KeyStatus:           `"optime"`,
		dcs.KeyFailsafe:         `[]`,
		dcs.KeyInitialize:       "\x00\xff",
		dcs.KeyMembers + "bad":  `{"conn_url": 5, "role": ["x"], "xlog_location": "lots", "tags": 3}`,
		dcs.KeyMembers + "junk": "\xff\xfe garbage",
		dcs.KeyMembers + "good": `{"conn_url":"postgres://h:1/postgres","api_url":"http://h:2/patroni","state":"running","role":"replica","version":"3.0.2"}`,
		dcs.KeyLeader:           "bad",
	}
	for k, v := range garbage {
		h.WriteRaw(t, k, []byte(v))
	}
	// Wait for every key: they are written in map order, and a store that
	// reads through a watch cache may serve a snapshot between two writes.
	c := eventually(t, a, "garbage visible", func(c *dcs.Cluster) bool {
		return len(c.Members) == 3 && c.Config != nil && c.Failsafe != nil && c.Failover != nil && c.Sync != nil &&
			c.History != nil && c.Initialize != nil && c.Leader != nil && c.Status.ModRevision != 0
	})
	require.NotNil(t, c.Config.Data)
	require.Empty(t, c.Config.Data, "invalid config decodes to {}")
	require.Equal(t, 30*time.Second, c.Config.Dynamic().TTL, "and the defaults apply")
	require.True(t, c.Failover.IsEmpty())
	require.True(t, c.Sync.IsEmpty())
	require.False(t, c.History.Valid)
	require.Equal(t, int64(0), c.Timeline(), "unparsable history means timeline 0")
	require.Equal(t, int64(0), c.Status.Optime)
	require.Equal(t, "bad", c.LeaderName())
	require.Equal(t, "bad", c.Leader.Member.Name)
	bad, _ := c.Member("bad")
	require.Equal(t, "", bad.Data.ConnURL)
	require.Nil(t, bad.Data.XLogLocation)
	good, _ := c.Member("good")
	require.Equal(t, "postgres://h:1/postgres", good.Data.ConnURL)
	require.Equal(t, "3.0.2", good.Data.Version)
	// Every bad key is reported, the good one is not.
	reported := fmt.Sprint(c.DecodeErrors)
	for _, k := range []string{"config", "failover", "sync", "history", "status", "failsafe", "initialize", "members/bad", "members/junk"} {
		require.Contains(t, reported, fmt.Sprintf("%q", k))
	}
	require.NotContains(t, reported, `"members/good"`)
	for _, err := range c.DecodeErrors {
		require.ErrorIs(t, err, dcs.ErrInvalidValue)
	}
}

func testLegacy(t *testing.T, h Harness) {
	a := h.NewStore(t, "a")
	h.WriteRaw(t, dcs.KeyFailover, []byte("node1:node2"))
	h.WriteRaw(t, dcs.KeyOptimeLeader, []byte("67301152"))
	h.WriteRaw(t, dcs.KeyMembers+"old", []byte("postgres://replicator:pw@10.0.0.1:5432/postgres?application_name=http://10.0.0.1:8008/patroni"))
	h.WriteRaw(t, dcs.KeySync, []byte(`{"leader":"node1","sync_standby":"node2"}`))
	h.WriteRaw(t, dcs.KeyHistory, []byte(`[[1,100,"no recovery target specified"],[2,200,"x","2026-11-26T02:28:20+00:00"]]`))
	c := eventually(t, a, "legacy values", func(c *dcs.Cluster) bool { return c.History != nil && len(c.Members) == 1 && c.Status.Optime != 0 })
	require.Empty(t, c.DecodeErrors)
	require.Equal(t, "node1", c.Failover.Leader)
	require.Equal(t, "node2", c.Failover.Candidate)
	require.Equal(t, int64(67301152), c.Status.Optime, "optime/leader is used when /status is absent")
	old, _ := c.Member("old")
	require.Equal(t, "http://10.0.0.1:8008/patroni", old.Data.APIURL)
	require.Equal(t, "postgres://replicator:pw@10.0.0.1:5432/postgres", old.Data.ConnURL)
	require.Equal(t, []string{"node2"}, c.Sync.Standbys)
	require.Equal(t, 0, c.Sync.Quorum)
	require.Equal(t, int64(3), c.Timeline())
	// /status wins over optime/leader when both exist; a bare integer is legacy status.
	h.WriteRaw(t, dcs.KeyStatus, []byte("99"))
	eventually(t, a, "status wins", func(c *dcs.Cluster) bool { return c.Status.Optime == 99 })
}

func testCanceled(t *testing.T, h Harness) {
	a := h.NewStore(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.KeepAlive(ctx, 30*time.Second)
	require.Error(t, err)
	_, err = a.AcquireLeader(ctx)
	require.Error(t, err)
	_, err = a.SetConfig(ctx, map[string]any{}, dcs.Unconditional)
	require.Error(t, err)
	c := cluster(t, h.NewStore(t, "b"))
	require.False(t, c.IsLocked(), "a canceled acquire took nothing")
}

func testClosed(t *testing.T, h Harness) {
	a := h.NewStore(t, "a")
	ctx := ctxT(t)
	ch, err := a.Watch(ctx)
	require.NoError(t, err)
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "Close is idempotent")
	_, ok := <-ch
	require.False(t, ok, "Close ends watches")
	_, err = a.Cluster(ctx)
	require.ErrorIs(t, err, dcs.ErrClosed)
	_, err = a.AcquireLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrClosed)
}

// testConfirm: a store that implements dcs.Confirmer confirms a snapshot
// that holds every change committed before the call, by any client.
func testConfirm(t *testing.T, h Harness) {
	ctx := ctxT(t)
	r, a := h.NewStore(t, "r"), h.NewStore(t, "a")
	c, ok := r.(dcs.Confirmer)
	if !ok {
		t.Skip("the store does not implement dcs.Confirmer")
	}
	for i := range 3 {
		rev, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional)
		require.NoError(t, err)
		got, err := c.Confirm(ctx)
		require.NoError(t, err)
		require.GreaterOrEqual(t, got, rev, "confirmed revision")
		cl := cluster(t, r)
		require.GreaterOrEqual(t, cl.Revision, rev, "the snapshot after Confirm")
		require.NotNil(t, cl.Config)
		require.EqualValues(t, fmt.Sprint(i), fmt.Sprint(cl.Config.Data["n"]))
	}
}

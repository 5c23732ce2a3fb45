package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/cluster"
)

// SIGKILL of the primary's node process and its postmaster (RELIABILITY.md
// B4): a replica becomes a writable primary, the other follows it, and the
// dead node, restarted, rejoins as a replica through pg_rewind: the row it
// alone had (written while its walsenders were frozen) is gone.
func TestKillPrimaryFailoverAndRewind(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(nil)})
	finish := startChecker(t, c)

	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 2*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int)"))
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (1)"))
	for _, n := range others(c, p) {
		waitRows(t, n, 20*time.Second, 1)
	}
	tl, err := p.Timeline(ctx)
	require.NoError(t, err)

	// C1: a short agent pause (1 s, under retry_timeout + the fence
	// margin's slack) changes nothing: same leader tenure.
	_, rev, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	require.NoError(t, p.Freeze())
	time.Sleep(time.Second) // the fault's duration, not a wait for a condition
	require.NoError(t, p.Thaw())
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (0)"))
	leader, rev2, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	require.Equal(t, p.Name, leader)
	require.Equal(t, rev, rev2, "no new leader tenure after a short pause")
	require.NoError(t, p.Exec(ctx, "DELETE FROM t WHERE v = 0"))

	// A write only the old primary gets: its walsenders are frozen.
	frozen, err := p.FreezeWALSenders(ctx)
	require.NoError(t, err)
	require.Len(t, frozen, 2, "two walsenders on the primary")
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (2)"))
	waitRows(t, p, time.Second, 1, 2)

	killed := time.Now()
	require.NoError(t, p.Kill())
	q, err := c.WaitPrimary(within(t, 30*time.Second), p)
	require.NoError(t, err)
	t.Logf("%s killed; %s is a writable leader after %s", p.Name, q.Name, time.Since(killed).Round(time.Millisecond))
	_, err = c.WaitStable(within(t, 30*time.Second))
	require.NoError(t, err, "the third node follows the new primary")
	qtl, err := q.Timeline(ctx)
	require.NoError(t, err)
	require.Greater(t, qtl, tl, "the new primary runs on a new timeline")
	require.NoError(t, q.Exec(ctx, "INSERT INTO t VALUES (3)"))
	for _, n := range others(c, p) {
		waitRows(t, n, 20*time.Second, 1, 3)
	}

	// The dead node comes back and rejoins as a replica of q, rewound.
	require.NoError(t, p.Start(ctx))
	s, err := c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	require.Equal(t, q.Name, s.Name, "the restarted node does not take over")
	waitRows(t, p, 20*time.Second, 1, 3)
	require.True(t, logHas(t, p, "action done", "action=rewind"), "the diverged node was rewound (see %s)", p.LogFile())

	// A clean restart of a replica process (SIGTERM: the node stops
	// Postgres fast and revokes its lease) changes nothing for the primary.
	require.NoError(t, p.Restart(ctx))
	s, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	require.Equal(t, q.Name, s.Name)
	finish()
}

// A Postgres-only crash on the primary (RELIABILITY.md B1 and B2): while the
// lease holds the node restarts Postgres in place (same leader key tenure,
// same timeline); with primary_start_timeout 0 it fails over instead, and
// the crashed node rejoins as a replica.
func TestPostgresCrashOnPrimary(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.InProcess, Dynamic: shortTTL(nil)})
	finish := startChecker(t, c)

	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 2*time.Minute)
	leader, rev, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	require.Equal(t, p.Name, leader)
	tl, err := p.Timeline(ctx)
	require.NoError(t, err)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int)"))
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (1)"))

	// B1: restarted in place.
	pid, err := p.KillPostgres()
	require.NoError(t, err)
	crashed := time.Now()
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		np, err := p.PostmasterPID()
		if err != nil {
			return err
		}
		if np == pid {
			return errors.New("the old postmaster is still there")
		}
		if !p.Writable(ctx) {
			return errors.New("not writable yet")
		}
		return nil
	}))
	t.Logf("%s restarted its Postgres in %s", p.Name, time.Since(crashed).Round(time.Millisecond))
	s, err := c.WaitStable(within(t, 30*time.Second))
	require.NoError(t, err)
	require.Equal(t, p.Name, s.Name, "no failover")
	leader2, rev2, err := c.LeaderRevision(ctx)
	require.NoError(t, err)
	require.Equal(t, leader, leader2)
	require.Equal(t, rev, rev2, "the leader key was never released")
	tl2, err := p.Timeline(ctx)
	require.NoError(t, err)
	require.Equal(t, tl, tl2, "no timeline change")
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (2)"))

	// B2: primary_start_timeout 0 fails over. maximum_lag_on_failover rides
	// along as the marker that every node has read the new /config.
	require.NoError(t, c.SetConfig(ctx, map[string]any{"primary_start_timeout": 0, "maximum_lag_on_failover": 1048577}))
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(context.Context) error {
		for _, n := range c.Nodes() {
			if got := n.HA().Status().MaximumLagOnFailover; got != 1048577 {
				return errors.New(n.Name + " has not read the new /config")
			}
		}
		return nil
	}))
	_, err = p.KillPostgres()
	require.NoError(t, err)
	crashed = time.Now()
	q, err := c.WaitPrimary(within(t, 30*time.Second), p)
	require.NoError(t, err)
	t.Logf("%s crashed; %s is a writable leader after %s", p.Name, q.Name, time.Since(crashed).Round(time.Millisecond))
	s, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err, "the crashed node rejoins as a replica")
	require.Equal(t, q.Name, s.Name)
	qtl, err := q.Timeline(ctx)
	require.NoError(t, err)
	require.Greater(t, qtl, tl)
	require.NoError(t, q.Exec(ctx, "INSERT INTO t VALUES (3)"))
	for _, n := range c.Nodes() {
		waitRows(t, n, 20*time.Second, 1, 2, 3)
	}
	finish()
}

// Switchover through the node API (Node.Switchover): to any healthy member
// ("" candidate), which never picks the nofailover member, and to a named
// one; a switchover to the nofailover member is refused with
// ha.ErrInvalidRequest and changes nothing. In between, the primary is cut
// from etcd (RELIABILITY.md D1, etcd edge only) and fences itself.
func TestSwitchover(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.InProcess, Dynamic: shortTTL(nil),
		Tags:      map[string]dcs.Tags{"node3": {"nofailover": true}},
		Bootstrap: []string{"node1", "node2"}})
	finish := startChecker(t, c)

	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	require.NotEqual(t, "node3", p.Name)
	ctx := within(t, 2*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int)"))
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (1)"))

	// To any healthy member: the only eligible one is the other of
	// node1/node2.
	require.NoError(t, c.Node("node3").HA().Switchover(ctx, "", time.Time{}))
	asked := time.Now()
	q, err := c.WaitPrimary(within(t, 30*time.Second), p)
	require.NoError(t, err)
	t.Logf("switchover from %s: %s is a writable leader after %s", p.Name, q.Name, time.Since(asked).Round(time.Millisecond))
	require.NotEqual(t, "node3", q.Name, "a nofailover member is never chosen")
	_, err = c.WaitStable(within(t, 30*time.Second))
	require.NoError(t, err)
	require.NoError(t, q.Exec(ctx, "INSERT INTO t VALUES (2)"))

	// To the nofailover member: refused, nothing written.
	err = q.HA().Switchover(ctx, "node3", time.Time{})
	require.ErrorIs(t, err, ha.ErrInvalidRequest)
	t.Logf("refused: %v", err)
	cl, err := c.Store().Cluster(ctx)
	require.NoError(t, err)
	require.True(t, cl.Failover == nil || cl.Failover.Candidate == "", "no /failover written: %+v", cl.Failover)

	// The primary cut from etcd fences itself before another node is
	// promoted (the checker would see two writable primaries otherwise),
	// and rejoins once healed.
	q.CutFromDCS()
	cut := time.Now()
	r, err := c.WaitPrimary(within(t, 30*time.Second), q)
	require.NoError(t, err)
	t.Logf("%s cut from etcd; %s is a writable leader after %s", q.Name, r.Name, time.Since(cut).Round(time.Millisecond))
	require.NotEqual(t, "node3", r.Name)
	q.HealDCS()
	s, err := c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err, "the fenced primary rejoins")
	require.Equal(t, r.Name, s.Name)
	p, q = q, r

	// Back to the named first primary.
	require.NoError(t, q.HA().Switchover(ctx, p.Name, time.Time{}))
	r, err = c.WaitPrimary(within(t, 30*time.Second), q)
	require.NoError(t, err)
	require.Equal(t, p.Name, r.Name)
	_, err = c.WaitStable(within(t, 30*time.Second))
	require.NoError(t, err)
	require.NoError(t, r.Exec(ctx, "INSERT INTO t VALUES (3)"))
	for _, n := range c.Nodes() {
		waitRows(t, n, 20*time.Second, 1, 2, 3)
	}
	finish()
}

// Failover with no leader (Patroni's users' theme #6): the primary is
// SIGKILLed while its replicas lag beyond maximum_lag_on_failover, so no
// replica promotes itself; an operator's failover naming a member (written
// to /failover as patronictl does) overrides the lag bound. The old primary,
// restarted, is rewound and loses the rows only it had.
func TestFailoverWithoutLeader(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Bootstrap: []string{"node1"},
		Dynamic: shortTTL(map[string]any{"maximum_lag_on_failover": 65536})})
	finish := startChecker(t, c)

	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	require.Equal(t, "node1", p.Name)
	ctx := within(t, 2*time.Minute)
	require.NoError(t, p.Exec(ctx, "CREATE TABLE t (v int)"))
	require.NoError(t, p.Exec(ctx, "INSERT INTO t VALUES (1)"))
	for _, n := range others(c, p) {
		waitRows(t, n, 20*time.Second, 1)
	}

	// The replicas stop receiving; the primary writes ~1.5 MB of WAL and
	// publishes its position in /status.
	_, err = p.FreezeWALSenders(ctx)
	require.NoError(t, err)
	require.NoError(t, p.Exec(ctx, "INSERT INTO t SELECT 1000 + g FROM generate_series(1, 40000) g"))
	lsn, err := p.QueryInt(ctx, "SELECT (pg_current_wal_lsn() - '0/0')::bigint")
	require.NoError(t, err)
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(ctx context.Context) error {
		cl, err := c.Store().Cluster(ctx)
		if err != nil {
			return err
		}
		if cl.Status.Optime < lsn-65536 {
			return errors.New("/status not updated yet")
		}
		return nil
	}))

	require.NoError(t, p.Kill())
	// The leader key expires; nobody may promote.
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(ctx context.Context) error {
		l, err := c.Leader(ctx)
		if err != nil {
			return err
		}
		if l != "" {
			return errors.New("leader key still there")
		}
		return nil
	}))
	expired := time.Now()
	for time.Since(expired) < 4*time.Second { // more than a ttl, 13 times the 0.3 s reaction target
		require.Empty(t, c.Writable(ctx), "a lagging replica promoted itself")
		l, err := c.Leader(ctx)
		require.NoError(t, err)
		require.Empty(t, l, "a lagging replica took the leader key")
		time.Sleep(100 * time.Millisecond)
	}
	require.True(t, logHas(t, c.Node("node2"), "failover blocked by lag") || logHas(t, c.Node("node3"), "failover blocked by lag"),
		"the replicas report the block")

	// The operator's failover to node3 overrides the bound.
	require.NoError(t, c.RequestFailover(ctx, "", "node3"))
	asked := time.Now()
	q, err := c.WaitPrimary(within(t, 30*time.Second), p)
	require.NoError(t, err)
	require.Equal(t, "node3", q.Name)
	t.Logf("failover to %s: writable leader after %s", q.Name, time.Since(asked).Round(time.Millisecond))
	_, err = c.WaitStable(within(t, 30*time.Second))
	require.NoError(t, err, "node2 follows node3")
	require.NoError(t, q.Exec(ctx, "INSERT INTO t VALUES (2)"))

	require.NoError(t, p.Start(ctx))
	s, err := c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	require.Equal(t, "node3", s.Name)
	for _, n := range c.Nodes() {
		waitRows(t, n, 20*time.Second, 1, 2)
	}
	require.True(t, logHas(t, p, "action done", "action=rewind"), "the diverged node was rewound (see %s)", p.LogFile())
	finish()
}

// A frozen agent cannot fence itself (DESIGN.md, "The leader lease and the
// fence", 5; RELIABILITY.md C2). SIGSTOP the primary's agent for three ttls
// while its Postgres keeps running. What pgha guarantees without a watchdog
// or synchronous_mode_strict: the frozen node's lease expires and another
// node leads; the frozen node's REST API does not answer, so HAProxy and the
// router stop sending it traffic; once thawed, its first renewal fails and
// it fences itself at once, and the cluster converges to one primary with no
// two writable primaries from then on. What it does not guarantee: while the
// agent is frozen its Postgres may still accept writes from clients that
// reach it directly, alongside the new primary. The test logs how long that
// overlap lasted instead of asserting it away (the next step, a race gate on
// a WAL receiver still streaming from the vanished leader, is issue 8's).
func TestFrozenAgentFencesOnThaw(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(nil)})

	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 2*time.Minute)
	require.NoError(t, p.Freeze())
	frozen := time.Now()
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(ctx context.Context) error {
		if l, err := c.Leader(ctx); err != nil || l == "" || l == p.Name {
			return fmt.Errorf("no new leader yet (%q, %v)", l, err)
		}
		return nil
	}), "the frozen agent's lease expires and another node leads")
	t.Logf("%s frozen; another node leads %s later", p.Name, time.Since(frozen).Round(time.Millisecond))
	var overlap time.Duration
	for time.Since(frozen) < 9*time.Second { // the fault lasts three ttls
		if len(c.Writable(ctx)) > 1 {
			overlap += 100 * time.Millisecond
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("two writable Postgres (the documented frozen-agent limit) for about %s of the freeze", overlap)
	require.NoError(t, p.Thaw())
	thawed := time.Now()
	s, err := c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err, "the cluster converges after the thaw")
	t.Logf("%s thawed; stable after %s with %s primary", p.Name, time.Since(thawed).Round(time.Millisecond), s.Name)
	require.NotEqual(t, p.Name, s.Name)
	require.True(t, logHas(t, p, "fencing"), "the thawed agent fenced itself (see %s)", p.LogFile())
	// From the convergence on, one writer only.
	finish := startChecker(t, c)
	time.Sleep(2 * time.Second)
	finish()
}

package failover_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Memory carried across rounds, and the wake-up times Decide asks for.

func TestMemoryCrashClock(t *testing.T) {
	t.Parallel()
	in := input(cluster(), crashed("node1", pos))
	d := failover.Decide(in)
	require.Equal(t, failover.ActionRestartPrimary, d.Action, d.String())
	require.Equal(t, t0, d.Memory.CrashedAt, "the crash clock starts when the crash is first seen")
	require.Equal(t, t0.Add(300*time.Second), d.WakeAt, "decide again when primary_start_timeout expires")

	// 100 s later the restart is still running: the clock keeps its start.
	in.Local.Memory, in.Local.Async, in.Now = d.Memory, failover.ActionRestartPrimary, t0.Add(100*time.Second)
	d = failover.Decide(in)
	require.Equal(t, failover.ActionRefreshLeader, d.Action, d.String())
	require.Equal(t, t0, d.Memory.CrashedAt)

	// Running as primary again: the clock stops.
	in.Local = primary("node1", pos)
	in.Local.Memory = d.Memory
	d = failover.Decide(in)
	require.Equal(t, failover.ActionRefreshLeader, d.Action, d.String())
	require.True(t, d.Memory.CrashedAt.IsZero())
}

func TestMemoryPromoteFailureBacksOff(t *testing.T) {
	t.Parallel()
	c := cluster()
	setLeader(c, "node2", 70)
	l := replica("node2", pos)
	l.LeaderValid = true
	l.Result = &failover.Result{Action: failover.ActionPromote, Err: "pre_promote failed"}
	d := failover.Decide(input(c, l))
	require.Equal(t, failover.ActionReleaseLeader, d.Action, d.String())
	require.Equal(t, t0.Add(30*time.Second), d.Memory.SkipRaceUntil, "no race for ttl after a failed pre_promote")

	// The key is gone: the node does not race until the backoff ends, and
	// asks to be woken then.
	l = replica("node2", pos)
	l.Memory = d.Memory
	in := probed(unlocked(cluster()), l)
	in.Now = t0.Add(10 * time.Second)
	d = failover.Decide(in)
	require.Equal(t, failover.ActionNone, d.Action, d.String())
	require.Equal(t, t0.Add(30*time.Second), d.WakeAt)
	in.Now = t0.Add(31 * time.Second)
	require.Equal(t, failover.ActionAcquireLeader, failover.Decide(in).Action)
}

func TestMemoryRewindStates(t *testing.T) {
	t.Parallel()
	// A demote of a node that can rewind triggers the divergence check.
	l := primary("node2", pos)
	l.CanRewind = true
	d := failover.Decide(input(cluster(), l))
	require.Equal(t, failover.ActionDemote, d.Action, d.String())
	require.Equal(t, failover.RewindCheck, d.Memory.Rewind)

	// Without rewind or data removal there is nothing to check.
	d = failover.Decide(input(cluster(), primary("node2", pos)))
	require.Equal(t, failover.RewindNone, d.Memory.Rewind)

	// The check's answer moves the state; a check decision changes nothing.
	r := replica("node2", pos)
	r.CanRewind, r.Memory.Rewind = true, failover.RewindCheck
	d = failover.Decide(input(cluster(), r))
	require.Equal(t, failover.ActionCheckDivergence, d.Action, d.String())
	require.Equal(t, failover.RewindCheck, d.Memory.Rewind)
	r.Divergence = failover.DivergenceNone
	require.Equal(t, failover.RewindNotNeeded, failover.Decide(input(cluster(), r)).Memory.Rewind)
	r.Divergence = failover.DivergenceCheckFailed
	d = failover.Decide(input(cluster(), r))
	require.Equal(t, failover.RewindCheck, d.Memory.Rewind, "a failed check is retried")
	require.Equal(t, failover.ActionNone, d.Action, d.String())

	// The outcome of pg_rewind.
	r.Divergence = failover.DivergenceUnknown
	r.Memory.Rewind = failover.RewindNeeded
	r.Result = &failover.Result{Action: failover.ActionRewind}
	require.Equal(t, failover.RewindDone, failover.Decide(input(cluster(), r)).Memory.Rewind)
	r.Result = &failover.Result{Action: failover.ActionRewind, Err: "exit 1"}
	require.Equal(t, failover.RewindFailed, failover.Decide(input(cluster(), r)).Memory.Rewind)
}

func TestMemoryLastLeader(t *testing.T) {
	t.Parallel()
	d := failover.Decide(input(cluster(), replica("node2", pos)))
	require.Equal(t, failover.LeaderToken{Name: "node1", CreateRevision: 10, Lease: leaseOf("node1"), APIURL: "http://node1:8008/patroni"}, d.Memory.LastLeader)

	// With the key and node1's member key gone, the former leader is still
	// probed: if it answers as a primary, nobody races.
	l := replica("node2", pos)
	l.Memory = d.Memory
	d = failover.Decide(input(unlocked(cluster()), l))
	require.Equal(t, failover.ActionProbePeers, d.Action)
	require.Equal(t, []failover.ProbeTarget{{Name: "node3", APIURL: "http://node3:8008/patroni"}, {Name: "node1", APIURL: "http://node1:8008/patroni"}}, d.Probe)
	d = failover.Decide(probed(unlocked(cluster()), l, peer("node3", pos), primaryPeer("node1", pos)))
	require.Equal(t, failover.ActionNone, d.Action)
	require.Contains(t, d.Reason, "node1 is still running as a primary")

	// My own tenure is not recorded.
	c := cluster()
	setLeader(c, "node2", 70)
	w := replica("node2", pos)
	w.LeaderValid, w.Memory = true, d.Memory
	require.Equal(t, "node1", failover.Decide(input(c, w)).Memory.LastLeader.Name)
}

func TestScheduledSwitchoverWakesOnTime(t *testing.T) {
	t.Parallel()
	c := cluster()
	at := t0.Add(45 * time.Second)
	c.Failover = &dcs.Failover{Leader: "node1", Candidate: "node2", ScheduledAt: at, ModRevision: 55}
	d := failover.Decide(input(c, primary("node1", pos)))
	require.Equal(t, failover.ActionRefreshLeader, d.Action)
	require.Equal(t, at, d.WakeAt)
	require.NotContains(t, d.Reason, "(due)")

	in := probed(c, primary("node1", pos), peer("node2", pos))
	in.Now = at.Add(-5 * time.Second) // within loop_wait: due, not yet
	d = failover.Decide(in)
	require.Equal(t, failover.ActionRefreshLeader, d.Action)
	require.Contains(t, d.Reason, "(due)")
	in.Now = at
	require.Equal(t, failover.ActionDemote, failover.Decide(in).Action)
	in.Now = at.Add(15 * time.Second) // 1.5 * loop_wait later: still acted on
	require.Equal(t, failover.ActionDemote, failover.Decide(in).Action)
	in.Now = at.Add(16 * time.Second) // stale
	require.Equal(t, failover.ActionClearFailover, failover.Decide(in).Action)
}

func TestStrings(t *testing.T) {
	t.Parallel()
	for _, a := range failover.Actions() {
		got, ok := failover.ParseAction(a.String())
		require.True(t, ok, a.String())
		require.Equal(t, a, got)
	}
	_, ok := failover.ParseAction("nope")
	require.False(t, ok)
	require.Equal(t, "action(99)", failover.Action(99).String())
	require.Equal(t, []string{"", "offline", "graceful", "immediate", "immediate-nolock"}, []string{
		failover.DemoteNone.String(), failover.DemoteOffline.String(), failover.DemoteGraceful.String(),
		failover.DemoteImmediate.String(), failover.DemoteImmediateNoLock.String()})
	require.True(t, failover.DemoteImmediate.ReleasesKey())
	require.False(t, failover.DemoteImmediateNoLock.ReleasesKey())
	d := failover.Decision{Action: failover.ActionPromote, Target: "node2", ClearFailover: true, FailoverRevision: 65, Reason: "why"}
	require.Equal(t, "promote target=node2 +clear_failover@65: why", d.String())
	require.Equal(t, "found", failover.DivergenceFound.String())
	require.Equal(t, "needed", failover.RewindNeeded.String())
}

package failover_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// syncCluster is the unlocked cluster after node1 died, with /sync naming
// node1 as leader and the given synchronous standbys.
func syncCluster(standbys ...string) *dcs.Cluster {
	c := unlocked(cluster())
	c.Sync = &dcs.SyncState{Leader: "node1", Standbys: standbys, ModRevision: 40}
	return c
}

func TestDecideSynchronousMode(t *testing.T) {
	on := cfg("synchronous_mode", true)
	strict := cfg("synchronous_mode", true, "synchronous_mode_strict", true)
	cases := []struct {
		name string
		in   failover.Input
		want want
	}{
		{"the sync standby races", with(probed(syncCluster("node2"), replica("node2", pos), peer("node3", pos)), on),
			want{action: failover.ActionAcquireLeader, target: "node2"}},
		{"an async standby ahead of the sync one does not stop it", with(probed(syncCluster("node2"), replica("node2", pos), peer("node3", pos+mb/2)), on),
			want{action: failover.ActionAcquireLeader, target: "node2"}},
		{"an async standby does not race, even when ahead", with(probed(syncCluster("node2"), replica("node3", pos+mb/2), peer("node2", pos)), on),
			want{action: failover.ActionNone, blocked: failover.BlockSyncMode, reason: "I am not in /sync"}},
		{"an async standby does not race when the sync one is dead", with(probed(syncCluster("node2"), replica("node3", pos), deadPeer("node2")), on),
			want{action: failover.ActionNone, blocked: failover.BlockSyncMode}},
		{"quorum mode is gated the same way", with(probed(syncCluster("node2"), replica("node3", pos), peer("node2", pos)), cfg("synchronous_mode", "quorum")),
			want{action: failover.ActionNone, blocked: failover.BlockSyncMode}},
		{"/sync with no standby: nobody but the old leader may take over", with(probed(syncCluster(), replica("node2", pos), peer("node3", pos)), on),
			want{action: failover.ActionNone, blocked: failover.BlockSyncMode}},
		{"/sync absent: the usual race", with(probed(unlocked(cluster()), replica("node2", pos), peer("node3", pos)), on),
			want{action: failover.ActionAcquireLeader, target: "node2"}},
		{"sync mode off ignores a leftover /sync", probed(syncCluster("node3"), replica("node2", pos), peer("node3", pos)),
			want{action: failover.ActionAcquireLeader, target: "node2"}},
		{"two sync standbys: the more advanced one wins", with(probed(syncCluster("node2", "node3"), replica("node2", pos), peer("node3", pos+100)), on),
			want{action: failover.ActionNone, reason: "node3 is ahead of me"}},
		{"a running primary outside /sync does not retake the lock", with(input(syncCluster("node3"), primary("node2", pos)), on),
			want{action: failover.ActionDemote, mode: failover.DemoteImmediateNoLock, reason: "a primary outside /sync"}},
		{"an operator's failover to an async member overrides the gate", with(probed(func() *dcs.Cluster {
			c := syncCluster("node2")
			c.Failover = &dcs.Failover{Candidate: "node3", ModRevision: 45}
			return c
		}(), replica("node3", pos), peer("node2", pos)), strict),
			want{action: failover.ActionAcquireLeader, target: "node3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := failover.Decide(c.in)
			msg := "decision: " + d.String()
			assert.Equal(t, c.want.action, d.Action, msg)
			assert.Equal(t, c.want.mode, d.DemoteMode, msg)
			assert.Equal(t, c.want.target, d.Target, msg)
			assert.Equal(t, c.want.blocked, d.Blocked, msg)
			assert.Contains(t, d.Reason, c.want.reason, msg)
		})
	}
}

func TestPromoteWritesSyncFirst(t *testing.T) {
	won := func() failover.Local {
		l := replica("node2", pos)
		l.LeaderValid = true
		return l
	}
	mine := func() *dcs.Cluster {
		c := cluster()
		setLeader(c, "node2", 70)
		c.Sync = &dcs.SyncState{Leader: "node1", Standbys: []string{"node2", "node3"}, ModRevision: 40}
		return c
	}
	d := failover.Decide(with(input(mine(), won()), cfg("synchronous_mode", true)))
	require.Equal(t, failover.ActionPromote, d.Action, d.String())
	require.NotNil(t, d.Sync)
	assert.Equal(t, dcs.SyncState{Leader: "node2"}, *d.Sync)
	assert.Equal(t, int64(40), d.SyncRevision)
	assert.Equal(t, "", d.SyncNames)
	assert.Contains(t, d.String(), "+sync@40")

	d = failover.Decide(with(input(mine(), won()), cfg("synchronous_mode", true, "synchronous_mode_strict", true)))
	require.NotNil(t, d.Sync)
	assert.Equal(t, []string{"node3"}, d.Sync.Standbys)
	assert.Equal(t, "node3", d.SyncNames)

	d = failover.Decide(input(mine(), won()))
	assert.Nil(t, d.Sync, "no /sync write with synchronous mode off")
}

func TestValidateSwitchoverSync(t *testing.T) {
	c := cluster()
	c.Sync = &dcs.SyncState{Leader: "node1", Standbys: []string{"node2"}, ModRevision: 40}
	peers := []failover.Peer{primaryPeer("node1", pos), peer("node2", pos), peer("node3", pos)}
	on := dcs.ParseDynamicConfig(map[string]any{"synchronous_mode": true})
	req := failover.SwitchoverRequest{Leader: "node1", Candidate: "node3"}
	err := failover.ValidateSwitchover(c, on, req, peers, t0)
	require.ErrorIs(t, err, failover.ErrCandidateNotSync)
	req.Candidate = "node2"
	require.NoError(t, failover.ValidateSwitchover(c, on, req, peers, t0))
	require.NoError(t, failover.ValidateSwitchover(c, on, failover.SwitchoverRequest{Leader: "node1"}, peers, t0), "any: node2 qualifies")
	require.NoError(t, failover.ValidateSwitchover(unlockedWithSync(), on, failover.SwitchoverRequest{Candidate: "node3", Failover: true}, peers[1:], t0),
		"an operator's failover without a leader may name an async member")
}

func unlockedWithSync() *dcs.Cluster { return syncCluster("node2") }

func TestDecideFailsafe(t *testing.T) {
	fsOn := cfg("failsafe_mode", true)
	cut := func(in failover.Input) failover.Input { in.DCSReachable = false; return in }
	p := primary("node1", pos)
	p.LeaderValid = false
	d := failover.Decide(cut(with(input(cluster(), p), fsOn)))
	assert.Equal(t, failover.ActionDemote, d.Action, "not confirmed: demote offline: %s", d)
	assert.Equal(t, failover.DemoteOffline, d.DemoteMode)
	p.FailsafeConfirmed = true
	d = failover.Decide(cut(with(input(cluster(), p), fsOn)))
	assert.Equal(t, failover.ActionNone, d.Action, d.String())
	assert.Contains(t, d.Reason, "failsafe mode is enabled and all members are accessible")
	d = failover.Decide(cut(input(cluster(), p)))
	assert.Equal(t, failover.ActionDemote, d.Action, "failsafe_mode off: the acknowledgements do not count: %s", d)

	c := unlocked(cluster())
	c.Failsafe = &dcs.Failsafe{Members: map[string]string{"node1": "a", "node3": "c"}}
	d = failover.Decide(with(probed(c, replica("node2", pos), peer("node3", pos)), fsOn))
	assert.Equal(t, failover.ActionNone, d.Action, d.String())
	assert.Contains(t, d.Reason, "not listed in /failsafe")
}

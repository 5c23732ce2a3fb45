package failover_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

type want struct {
	action  failover.Action
	mode    failover.DemoteMode
	target  string
	reason  string // the reason must contain this
	blocked failover.Block
	clear   bool // ClearFailover
	setInit bool // SetInitialize
}

type tableCase struct {
	name string
	in   failover.Input
	want want
}

// cases covers every Action and DemoteMode with Patroni-like reasons.
func cases() []tableCase {
	var cs []tableCase
	add := func(name string, in failover.Input, w want) { cs = append(cs, tableCase{name, in, w}) }

	// ---- a healthy cluster ----
	add("replica following the leader", input(cluster(), replica("node2", pos)),
		want{action: failover.ActionNone, target: "node1", reason: "no action. I am (node2), a secondary, and following a leader (node1)"})
	add("leader with the lock", input(cluster(), primary("node1", pos)),
		want{action: failover.ActionRefreshLeader, reason: "no action. I am (node1), the leader with the lock"})
	add("replica with the wrong upstream follows the leader", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.Upstream = "node3"
		return l
	}()), want{action: failover.ActionFollow, target: "node1", reason: "following a new leader (node1)"})
	add("replicatefrom names a member", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.Tags = dcs.Tags{"replicatefrom": "node3"}
		return l
	}()), want{action: failover.ActionFollow, target: "node3", reason: "following a new leader (node3)"})
	add("nostream stops replication", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.Tags = dcs.Tags{"nostream": true}
		return l
	}()), want{action: failover.ActionFollow, target: "", reason: "stopping replication (nostream)"})
	add("leader member key missing: wait for its conn_url", input(func() *dcs.Cluster {
		c := cluster()
		c.Leader.Member = dcs.Member{Name: "node1"}
		return c
	}(), replica("node2", pos)), want{action: failover.ActionNone, target: "node1", reason: "waiting for the leader (node1) to publish its connection URL"})
	add("a primary while another node leads demotes", input(cluster(), primary("node2", pos)),
		want{action: failover.ActionDemote, mode: failover.DemoteImmediateNoLock, target: "node1", reason: "demoting self because I do not have the lock and I was a leader"})
	add("leader key with my name on an old lease", input(cluster(), func() failover.Local {
		l := primary("node1", pos)
		l.LeaseID = 4242
		return l
	}()), want{action: failover.ActionNone, reason: "an earlier run of this node; continuing as primary until it expires"})

	// ---- the leader loses its lease or the DCS ----
	add("leader whose lease is not valid demotes", input(cluster(), func() failover.Local {
		l := primary("node1", pos)
		l.LeaderValid = false
		return l
	}()), want{action: failover.ActionDemote, mode: failover.DemoteImmediateNoLock, reason: "demoted self because failed to update leader lock in DCS"})
	add("replica holding the key without a valid lease does not promote", input(func() *dcs.Cluster {
		c := cluster()
		setLeader(c, "node2", 70)
		return c
	}(), replica("node2", pos)), want{action: failover.ActionNone, reason: "not promoting because failed to update leader lock in DCS"})
	add("DCS unreachable, lease still valid: keep the primary", with(input(cluster(), primary("node1", pos)), func(in *failover.Input) { in.DCSReachable = false }),
		want{action: failover.ActionNone, reason: "DCS is not accessible; continuing as primary while my leader lease is valid"})
	add("DCS unreachable, lease gone: demote offline", with(input(cluster(), primary("node1", pos)), func(in *failover.Input) {
		in.DCSReachable = false
		in.Local.LeaderValid = false
	}), want{action: failover.ActionDemote, mode: failover.DemoteOffline, reason: "demoted self because DCS is not accessible and I was a leader"})
	add("no snapshot at all is the DCS-unreachable path", with(input(cluster(), replica("node2", pos)), func(in *failover.Input) { in.Cluster = nil }),
		want{action: failover.ActionNone, reason: "DCS is not accessible"})
	add("DCS unreachable during a promote without a lease cancels it", with(input(cluster(), replica("node2", pos)), func(in *failover.Input) {
		in.DCSReachable = false
		in.Local.Async = failover.ActionPromote
	}), want{action: failover.ActionCancelAsync, reason: "lost leader before promote"})

	// ---- no leader: the race ----
	add("unlocked, peers not probed yet", input(unlocked(cluster()), replica("node2", pos)),
		want{action: failover.ActionProbePeers, reason: "probing peers"})
	add("unlocked, I am ahead: acquire", probed(unlocked(cluster()), replica("node2", pos+10), peer("node3", pos)),
		want{action: failover.ActionAcquireLeader, target: "node2", reason: "acquiring the leader lock: I am the healthiest node (position 0/500000A)"})
	add("unlocked, a peer is ahead", probed(unlocked(cluster()), replica("node2", pos), peer("node3", pos+10)),
		want{action: failover.ActionNone, reason: "not racing: node3 is ahead of me (0/500000A > 0/5000000)"})
	add("unlocked, a peer is still primary", probed(unlocked(cluster()), replica("node2", pos), primaryPeer("node3", pos)),
		want{action: failover.ActionNone, reason: "not racing: node3 is still running as a primary"})
	add("unlocked, equal position, peer has higher failover_priority", probed(unlocked(cluster()), replica("node2", pos), func() failover.Peer {
		p := peer("node3", pos)
		p.Tags = dcs.Tags{"failover_priority": 5}
		return p
	}()), want{action: failover.ActionNone, reason: "not racing: node3 has the same position 0/5000000 and a higher failover_priority (5 > 1)"})
	add("unlocked, an unreachable peer does not count", probed(unlocked(cluster()), replica("node2", pos), deadPeer("node3")),
		want{action: failover.ActionAcquireLeader, target: "node2", reason: "I am the healthiest node"})
	add("unlocked, a nofailover peer ahead does not count", probed(unlocked(cluster()), replica("node2", pos), func() failover.Peer {
		p := peer("node3", pos+10)
		p.Tags = dcs.Tags{"nofailover": true}
		return p
	}()), want{action: failover.ActionAcquireLeader, target: "node2"})
	add("unlocked, nofailover does not race", probed(unlocked(cluster()), func() failover.Local {
		l := replica("node2", pos)
		l.Tags = dcs.Tags{"nofailover": true}
		return l
	}()), want{action: failover.ActionNone, reason: "not racing: tagged nofailover"})
	add("unlocked, failover_priority 0 is nofailover", probed(unlocked(cluster()), func() failover.Local {
		l := replica("node2", pos)
		l.Tags = dcs.Tags{"failover_priority": 0}
		return l
	}()), want{action: failover.ActionNone, reason: "not racing: tagged nofailover"})
	add("unlocked, everyone behind a current /status: blocked by lag", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 5*mb, ModRevision: 50}
		return c
	}(), replica("node2", pos), peer("node3", pos-mb)), want{action: failover.ActionNone, blocked: failover.BlockLag,
		reason: "failover blocked by lag: the best live position 0/5000000 (node2) is 5242880 bytes behind 0/5500000 (the last leader position in /status); maximum_lag_on_failover is 1048576"})
	add("unlocked, I lag but a peer is within the bound", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 2*mb, ModRevision: 50}
		return c
	}(), replica("node2", pos), peer("node3", pos+2*mb)), want{action: failover.ActionNone,
		reason: "not racing: my position 0/5000000 is 2097152 bytes behind 0/5200000 (node3's live position); maximum_lag_on_failover is 1048576; node3 can take over"})
	add("unlocked, /status from an earlier tenure is stale and ignored", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 50*mb, ModRevision: 5} // before node1's tenure (10)
		return c
	}(), func() failover.Local {
		l := replica("node2", pos)
		l.Memory.LastLeader = failover.LeaderToken{Name: "node1", CreateRevision: 10, Lease: leaseOf("node1")}
		return l
	}(), peer("node3", pos-10)), want{action: failover.ActionAcquireLeader, target: "node2"})
	add("unlocked, manual failover names me: the lag bound does not apply", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 50*mb, ModRevision: 50}
		c.Failover = &dcs.Failover{Candidate: "node2", ModRevision: 55}
		return c
	}(), replica("node2", pos)), want{action: failover.ActionAcquireLeader, target: "node2", reason: "manual failover: I am the candidate"})
	add("unlocked, manual failover names me, but a primary still answers", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Failover = &dcs.Failover{Candidate: "node2", ModRevision: 55}
		return c
	}(), replica("node2", pos), primaryPeer("node1", pos)), want{action: failover.ActionNone, reason: "not racing: node1 is still running as a primary"})
	add("unlocked, a switchover's candidate keeps the lag bound", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 5*mb, ModRevision: 50}
		c.Failover = &dcs.Failover{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(time.Hour), ModRevision: 55}
		return c
	}(), replica("node2", pos), peer("node3", pos+5*mb)), want{action: failover.ActionNone,
		reason: "not racing: I am the switchover candidate, but my position 0/5000000 is 5242880 bytes behind 0/5500000"})
	add("unlocked, the others race without a lagging switchover candidate", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Status = dcs.Status{Optime: pos + 5*mb, ModRevision: 50}
		c.Failover = &dcs.Failover{Leader: "node1", Candidate: "node2", ModRevision: 55}
		return c
	}(), replica("node3", pos+5*mb), peer("node2", pos)), want{action: failover.ActionAcquireLeader, target: "node3", reason: "I am the healthiest node"})
	add("unlocked, a switchover's healthy candidate takes over", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Failover = &dcs.Failover{Leader: "node1", Candidate: "node2", ModRevision: 55}
		return c
	}(), replica("node2", pos), peer("node3", pos+10)), want{action: failover.ActionAcquireLeader, target: "node2", reason: "switchover: I am the candidate; acquiring the leader lock"})
	add("unlocked, manual failover names a healthy peer", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Failover = &dcs.Failover{Candidate: "node3", ModRevision: 55}
		return c
	}(), replica("node2", pos+100), peer("node3", pos)), want{action: failover.ActionNone, reason: "not racing: waiting for the manual failover candidate node3"})
	add("unlocked, manual failover names an unreachable peer: race as usual", probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Failover = &dcs.Failover{Candidate: "node3", ModRevision: 55}
		return c
	}(), replica("node2", pos), deadPeer("node3")), want{action: failover.ActionAcquireLeader, target: "node2"})
	add("unlocked, check_timeline and nobody on the cluster timeline", with(probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.History = &dcs.History{Valid: true, Lines: []dcs.HistoryLine{{Timeline: 1, LSN: pos}}, ModRevision: 4} // timeline 2
		return c
	}(), replica("node2", pos), peer("node3", pos)), cfg("check_timeline", true)),
		want{action: failover.ActionNone, blocked: failover.BlockTimeline, reason: "failover blocked by timeline: no live member is on the cluster timeline 2"})
	add("unlocked, synchronous_mode on and not in /sync: blocked", with(probed(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Sync = &dcs.SyncState{Leader: "node1", Standbys: []string{"node3"}, ModRevision: 5}
		return c
	}(), replica("node2", pos)), cfg("synchronous_mode", true)),
		want{action: failover.ActionNone, blocked: failover.BlockSyncMode, reason: "not racing: synchronous_mode is on and I am not in /sync"})
	add("unlocked, watchdog required but unusable", probed(unlocked(cluster()), func() failover.Local {
		l := replica("node2", pos)
		l.WatchdogFailed = true
		return l
	}()), want{action: failover.ActionNone, reason: "not racing: the watchdog is required but could not be activated"})
	add("unlocked, backing off after a failed pre_promote", probed(unlocked(cluster()), func() failover.Local {
		l := replica("node2", pos)
		l.Memory.SkipRaceUntil = t0.Add(10 * time.Second)
		return l
	}()), want{action: failover.ActionNone, reason: "not racing: promote failed (pre_promote); backing off until 2025-03-01T12:00:10Z"})
	add("unlocked, a running primary retakes the lock without probing", input(unlocked(cluster()), primary("node2", pos)),
		want{action: failover.ActionAcquireLeader, target: "node2", reason: "I am a running primary and the cluster has no leader"})
	add("unlocked, a stale former primary does not retake the lock", input(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.History = &dcs.History{Valid: true, Lines: []dcs.HistoryLine{{Timeline: 1, LSN: pos}}, ModRevision: 4}
		return c
	}(), primary("node2", pos)), want{action: failover.ActionDemote, mode: failover.DemoteImmediateNoLock,
		reason: "demoting self because I am not the healthiest node: my timeline 1 is behind the cluster timeline 2"})

	// ---- the key is mine: promote ----
	mine := func() *dcs.Cluster {
		c := cluster()
		setLeader(c, "node2", 70)
		return c
	}
	won := func() failover.Local {
		l := replica("node2", pos)
		l.LeaderValid = true
		return l
	}
	add("replica holding the key promotes", input(mine(), won()),
		want{action: failover.ActionPromote, target: "node2", reason: "promoting self to leader because I had the session lock"})
	add("promote clears the failover request that led to the race", input(func() *dcs.Cluster {
		c := mine()
		c.Failover = &dcs.Failover{Leader: "node1", Candidate: "node2", ModRevision: 65}
		return c
	}(), won()), want{action: failover.ActionPromote, target: "node2", clear: true})
	add("replica holding the key far behind the last leader releases it", input(func() *dcs.Cluster {
		c := mine()
		c.Status = dcs.Status{Optime: pos + 10*mb, ModRevision: 80}
		return c
	}(), won()), want{action: failover.ActionReleaseLeader, reason: "not promoting: my position 0/5000000 is 10485760 bytes behind 0/5A00000"})
	add("watchdog unusable: release the key instead of promoting", input(mine(), func() failover.Local {
		l := won()
		l.WatchdogFailed = true
		return l
	}()), want{action: failover.ActionReleaseLeader, reason: "refusing to promote: the watchdog is required but could not be activated"})
	add("a failed promote releases the key", input(mine(), func() failover.Local {
		l := won()
		l.Result = &failover.Result{Action: failover.ActionPromote, Err: "pre_promote exited with 1"}
		return l
	}()), want{action: failover.ActionReleaseLeader, reason: "releasing the leader key: promote failed (pre_promote)"})
	add("a leader whose watchdog fails demotes immediately", input(cluster(), func() failover.Local {
		l := primary("node1", pos)
		l.WatchdogFailed = true
		return l
	}()), want{action: failover.ActionDemote, mode: failover.DemoteImmediate, reason: "demoting self: the watchdog is required but could not be activated"})
	add("leader fixes a missing /initialize and /config", input(func() *dcs.Cluster {
		c := cluster()
		c.Initialize, c.Config = nil, nil
		return c
	}(), primary("node1", pos)), want{action: failover.ActionRefreshLeader, setInit: true})

	// ---- switchover and manual failover on the leader ----
	withFailover := func(f dcs.Failover) *dcs.Cluster {
		c := cluster()
		f.ModRevision = 55
		c.Failover = &f
		return c
	}
	add("switchover: probe the candidates first", input(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2"}), primary("node1", pos)),
		want{action: failover.ActionProbePeers})
	add("switchover to a healthy candidate: graceful demote", probed(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2"}), primary("node1", pos), peer("node2", pos), peer("node3", pos)),
		want{action: failover.ActionDemote, mode: failover.DemoteGraceful, target: "node2", reason: "switchover: demoting myself"})
	add("manual failover with the leader alive: graceful demote", probed(withFailover(dcs.Failover{Candidate: "node3"}), primary("node1", pos), peer("node2", pos), peer("node3", pos)),
		want{action: failover.ActionDemote, mode: failover.DemoteGraceful, target: "node3", reason: "manual failover: demoting myself"})
	add("switchover to any member", probed(withFailover(dcs.Failover{Leader: "node1"}), primary("node1", pos), deadPeer("node2"), peer("node3", pos)),
		want{action: failover.ActionDemote, mode: failover.DemoteGraceful, target: "", reason: "switchover: demoting myself"})
	add("switchover to a lagging candidate is cleared", probed(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2"}), primary("node1", pos+5*mb), peer("node2", pos), peer("node3", pos+5*mb)),
		want{action: failover.ActionClearFailover, clear: true, reason: "manual failover: no healthy members found, failover is not possible: no good candidates have been found: node2: lagging 5242880 bytes behind"})
	add("switchover to a nofailover candidate is cleared", probed(func() *dcs.Cluster {
		c := withFailover(dcs.Failover{Leader: "node1", Candidate: "node2"})
		setMember(c, "node2", func(m *dcs.Member) { m.Data.Tags = dcs.Tags{"nofailover": true} })
		return c
	}(), primary("node1", pos), peer("node2", pos)), want{action: failover.ActionClearFailover, clear: true, reason: "node2: not allowed to promote (nofailover)"})
	add("switchover naming another leader is cleared", input(withFailover(dcs.Failover{Leader: "node3", Candidate: "node2"}), primary("node1", pos)),
		want{action: failover.ActionClearFailover, clear: true, reason: "manual failover: leader name does not match: node3 != node1"})
	add("failover to the leader itself is cleared", input(withFailover(dcs.Failover{Candidate: "node1"}), primary("node1", pos)),
		want{action: failover.ActionClearFailover, clear: true, reason: "manual failover: I am already the leader, no need to failover"})
	add("a failover request older than the tenure is cleared", input(func() *dcs.Cluster {
		c := withFailover(dcs.Failover{Candidate: "node3"})
		c.Failover.ModRevision = 5
		return c
	}(), primary("node1", pos)), want{action: failover.ActionClearFailover, clear: true, reason: "cleaning up a failover request from before my tenure"})
	add("scheduled switchover not due yet", input(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(time.Hour)}), primary("node1", pos)),
		want{action: failover.ActionRefreshLeader, reason: "switchover to node2 scheduled at 2025-03-01T13:00:00Z"})
	add("scheduled switchover long past is stale", input(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(-16 * time.Second)}), primary("node1", pos)),
		want{action: failover.ActionClearFailover, clear: true, reason: "found a stale failover value, cleaning up: scheduled at 2025-03-01T11:59:44Z"})
	add("scheduled switchover at its time", probed(withFailover(dcs.Failover{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(-time.Second)}), primary("node1", pos), peer("node2", pos)),
		want{action: failover.ActionDemote, mode: failover.DemoteGraceful, target: "node2", reason: "switchover: demoting myself"})

	// ---- crashes and starts ----
	add("crashed primary holding the key restarts", input(cluster(), crashed("node1", pos)),
		want{action: failover.ActionRestartPrimary, target: "node1", reason: "starting primary after failure"})
	add("crashed primary, primary_start_timeout 0, candidate healthy: fail over", with(probed(cluster(), crashed("node1", pos), peer("node2", pos), peer("node3", pos)), cfg("primary_start_timeout", 0)),
		want{action: failover.ActionDemote, mode: failover.DemoteImmediate, reason: "stopped PostgreSQL to fail over after a crash"})
	add("crashed primary, primary_start_timeout 0, nobody to fail over to", with(probed(cluster(), crashed("node1", pos), deadPeer("node2"), deadPeer("node3")), cfg("primary_start_timeout", 0)),
		want{action: failover.ActionStartAsReplica, reason: "starting as readonly because i had the session lock"})
	add("primary start past primary_start_timeout with a candidate: fail over", probed(cluster(), func() failover.Local {
		l := crashed("node1", pos)
		l.Running, l.State = true, failover.StateStarting
		l.Memory.CrashedAt = t0.Add(-301 * time.Second)
		return l
	}(), peer("node2", pos)), want{action: failover.ActionDemote, mode: failover.DemoteImmediate, reason: "primary did not start within primary_start_timeout (5m0s, down for 5m1s)"})
	add("primary still starting within primary_start_timeout", input(cluster(), func() failover.Local {
		l := crashed("node1", pos)
		l.Running, l.State = true, failover.StateStarting
		l.Memory.CrashedAt = t0.Add(-30 * time.Second)
		return l
	}()), want{action: failover.ActionRefreshLeader, reason: "PostgreSQL is still starting; updated leader lock"})
	add("start failed while holding the key", input(cluster(), func() failover.Local {
		l := crashed("node1", pos)
		l.State = failover.StateStartFailed
		return l
	}()), want{action: failover.ActionReleaseLeader, reason: "removed leader key after trying and failing to start postgres"})
	add("stopped ex-primary in an unlocked cluster: crash recovery first", input(unlocked(cluster()), func() failover.Local {
		l := crashed("node1", pos)
		l.LeaderValid = false
		return l
	}()), want{action: failover.ActionCrashRecovery, reason: "doing crash recovery in a single user mode"})
	add("stopped replica starts following the leader", input(cluster(), stopped("node2")),
		want{action: failover.ActionStartAsReplica, target: "node1", reason: "starting as a secondary"})
	add("stopped node, no leader: start without upstream", input(unlocked(cluster()), stopped("node2")),
		want{action: failover.ActionStartAsReplica, target: "", reason: "starting as a secondary"})

	// ---- rejoin: divergence, rewind, reinit ----
	rejoin := func(mod func(*failover.Local)) failover.Local {
		l := stopped("node2")
		l.Role, l.ControlState, l.StandbySignal, l.CanRewind = dcs.RolePrimary, failover.ControlShutDown, false, true
		if mod != nil {
			mod(&l)
		}
		return l
	}
	add("old primary rejoins: check divergence first", input(cluster(), rejoin(nil)),
		want{action: failover.ActionCheckDivergence, target: "node1", reason: "checking whether my timeline diverged from the leader (node1)"})
	add("diverged and can rewind: rewind", input(cluster(), rejoin(func(l *failover.Local) { l.Divergence = failover.DivergenceFound })),
		want{action: failover.ActionRewind, target: "node1", reason: "running pg_rewind from node1"})
	add("not diverged: start as a secondary", input(cluster(), rejoin(func(l *failover.Local) { l.Divergence = failover.DivergenceNone })),
		want{action: failover.ActionStartAsReplica, target: "node1", reason: "starting as a secondary"})
	add("diverged, no rewind, remove data allowed: reinitialize", input(cluster(), rejoin(func(l *failover.Local) {
		l.CanRewind, l.RemoveDataOnDivergence, l.Divergence = false, true, failover.DivergenceFound
	})), want{action: failover.ActionReinitialize, target: "node1", reason: "reinitializing due to diverged timelines"})
	add("rewind waits for the leader's checkpoint after promote", input(func() *dcs.Cluster {
		c := cluster()
		setMember(c, "node1", func(m *dcs.Member) { m.Data.CheckpointAfterPromote = ptr(false) })
		return c
	}(), rejoin(func(l *failover.Local) { l.Memory.Rewind = failover.RewindNeeded })),
		want{action: failover.ActionNone, target: "node1", reason: "waiting for checkpoint on node1 before rewind"})
	add("unclean replica shutdown before rewind: crash recovery", input(cluster(), rejoin(func(l *failover.Local) {
		l.ControlState, l.Memory.Rewind = failover.ControlInArchiveRecovery, failover.RewindNeeded
	})), want{action: failover.ActionCrashRecovery, target: "node1", reason: "doing crash recovery in a single user mode before pg_rewind"})
	add("rewind failed, removal allowed: reinitialize", input(cluster(), rejoin(func(l *failover.Local) {
		l.RemoveDataOnRewindFailure = true
		l.Result = &failover.Result{Action: failover.ActionRewind, Err: "pg_rewind: could not find common ancestor"}
	})), want{action: failover.ActionReinitialize, target: "node1", reason: "reinitializing after pg_rewind failed"})
	add("rewind failed: do not start a diverged instance", input(cluster(), rejoin(func(l *failover.Local) { l.Memory.Rewind = failover.RewindFailed })),
		want{action: failover.ActionNone, target: "node1", reason: "pg_rewind from node1 failed; not starting a diverged instance"})
	add("replica behind the leader's timeline checks divergence", input(func() *dcs.Cluster {
		c := cluster()
		setMember(c, "node1", func(m *dcs.Member) { m.Data.Timeline = 2 })
		return c
	}(), func() failover.Local {
		l := replica("node2", pos)
		l.CanRewind = true
		return l
	}()), want{action: failover.ActionCheckDivergence, target: "node1"})

	// ---- bootstrap and clone ----
	fresh := func() *dcs.Cluster {
		return &dcs.Cluster{Revision: 1}
	}
	add("empty cluster: bootstrap", input(fresh(), empty("node1")),
		want{action: failover.ActionBootstrap, target: "node1", reason: "trying to bootstrap a new cluster"})
	add("someone is bootstrapping: wait", input(func() *dcs.Cluster {
		c := fresh()
		c.Initialize = &dcs.Initialize{ModRevision: 2}
		return c
	}(), empty("node2")), want{action: failover.ActionWaitForLeaderBootstrap, reason: "waiting for leader to bootstrap"})
	add("nofailover never bootstraps", input(fresh(), func() failover.Local {
		l := empty("node2")
		l.Tags = dcs.Tags{"nofailover": true}
		return l
	}()), want{action: failover.ActionWaitForLeaderBootstrap, reason: "tagged nofailover"})
	add("no bootstrap section: wait", input(fresh(), func() failover.Local {
		l := empty("node2")
		l.BootstrapAllowed = false
		return l
	}()), want{action: failover.ActionWaitForLeaderBootstrap, reason: "no bootstrap section"})
	add("empty node clones from the leader", input(cluster(), empty("node4")),
		want{action: failover.ActionClone, target: "node1", reason: "trying to bootstrap from leader 'node1'"})
	add("empty node clones from a clonefrom replica", input(func() *dcs.Cluster {
		c := cluster()
		setMember(c, "node3", func(m *dcs.Member) { m.Data.Tags = dcs.Tags{"clonefrom": true} })
		return c
	}(), empty("node4")), want{action: failover.ActionClone, target: "node3", reason: "trying to bootstrap from replica 'node3'"})
	add("leader with an empty data directory releases the key", input(cluster(), func() failover.Local {
		l := empty("node1")
		l.LeaderValid = true
		return l
	}()), want{action: failover.ActionReleaseLeader, reason: "released leader key: the data directory is empty"})

	// ---- identity ----
	add("system ID mismatch", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.SysID = "7399999999999999999"
		return l
	}()), want{action: failover.ActionRefuse, reason: "system ID mismatch, node node2 belongs to a different cluster: 7399999999999999999 != 7300000000000000001"})
	add("invalid system ID", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.SysID = ""
		return l
	}()), want{action: failover.ActionNone, reason: "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize"})
	add("replica data without /initialize refuses", input(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Initialize = nil
		return c
	}(), replica("node2", pos)), want{action: failover.ActionRefuse, reason: "no initialize key in DCS and PostgreSQL is running as replica"})
	add("a primary without /initialize adopts its data directory", input(func() *dcs.Cluster {
		c := unlocked(cluster())
		c.Initialize = nil
		return c
	}(), primary("node2", pos)), want{action: failover.ActionAcquireLeader, target: "node2", setInit: true})
	add("a failed bootstrap is fatal", input(fresh(), func() failover.Local {
		l := empty("node1")
		l.Result = &failover.Result{Action: failover.ActionBootstrap, Err: "initdb exited with 1"}
		return l
	}()), want{action: failover.ActionRefuse, reason: "bootstrap failed: initdb exited with 1"})
	add("no name", input(cluster(), replica("", pos)), want{action: failover.ActionRefuse, reason: "no member name configured"})

	// ---- long actions ----
	add("leader during a long action keeps the lock", input(cluster(), func() failover.Local {
		l := primary("node1", pos)
		l.Async = failover.ActionRestartPrimary
		return l
	}()), want{action: failover.ActionRefreshLeader, reason: "updated leader lock during restart_primary"})
	add("a promote is cancelled when the key is lost", input(cluster(), func() failover.Local {
		l := replica("node2", pos)
		l.Async = failover.ActionPromote
		return l
	}()), want{action: failover.ActionCancelAsync, reason: "lost leader before promote"})
	add("a restarting primary without the key is demoted", input(cluster(), func() failover.Local {
		l := primary("node2", pos)
		l.Async = failover.ActionRestartPrimary
		return l
	}()), want{action: failover.ActionDemote, mode: failover.DemoteImmediateNoLock, target: "node1", reason: "demoting self because I do not have the lock and I was a leader (restart_primary cancelled)"})
	add("bootstrap in progress", input(fresh(), func() failover.Local {
		l := primary("node1", pos)
		l.LeaderValid = false
		l.Async = failover.ActionBootstrap
		return l
	}()), want{action: failover.ActionNone, reason: "bootstrap in progress"})
	add("a graceful demote is not interrupted", input(unlocked(cluster()), func() failover.Local {
		l := primary("node2", pos)
		l.LeaderValid = false
		l.Async = failover.ActionDemote
		return l
	}()), want{action: failover.ActionNone, reason: "demote in progress"})
	add("a replica's clone in progress", input(cluster(), func() failover.Local {
		l := empty("node4")
		l.Async = failover.ActionClone
		return l
	}()), want{action: failover.ActionNone, reason: "clone in progress"})

	// ---- not implemented yet ----
	add("pause: hands off (leader keeps the lock)", with(input(cluster(), primary("node1", pos)), cfg("pause", true)),
		want{action: failover.ActionRefreshLeader, reason: "PAUSE: no action. I am (node1), the leader with the lock (pause mode is not implemented yet"})
	add("pause: hands off (replica)", with(input(unlocked(cluster()), replica("node2", pos)), cfg("pause", true)),
		want{action: failover.ActionNone, reason: "PAUSE: no action (pause mode is not implemented yet"})
	add("standby cluster: hands off", with(input(cluster(), replica("node2", pos)), cfg("standby_cluster", map[string]any{"host": "remote"})),
		want{action: failover.ActionNone, reason: "standby_cluster is not implemented yet"})
	return cs
}

func TestDecideTable(t *testing.T) {
	t.Parallel()
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := failover.Decide(tc.in)
			require.Equal(t, tc.want.action, d.Action, "decision: %s", d)
			require.Equal(t, tc.want.mode, d.DemoteMode, "decision: %s", d)
			if tc.want.action != failover.ActionProbePeers {
				require.Equal(t, tc.want.target, d.Target, "decision: %s", d)
			}
			require.Contains(t, d.Reason, tc.want.reason)
			require.Equal(t, tc.want.blocked, d.Blocked, "decision: %s", d)
			require.Equal(t, tc.want.clear, d.ClearFailover, "decision: %s", d)
			require.Equal(t, tc.want.setInit, d.SetInitialize, "decision: %s", d)
			if d.ClearFailover {
				require.Equal(t, tc.in.Cluster.Failover.ModRevision, d.FailoverRevision)
			}
			if d.Action == failover.ActionProbePeers {
				require.NotEmpty(t, d.Probe)
				require.Equal(t, tc.in.Local.Memory, d.Memory, "a probe decision changes no memory")
			}
		})
	}
}

// TestTableCoversEveryDecision: every Action and every DemoteMode appears
// in the table.
func TestTableCoversEveryDecision(t *testing.T) {
	t.Parallel()
	actions := map[failover.Action]bool{}
	modes := map[failover.DemoteMode]bool{}
	for _, tc := range cases() {
		d := failover.Decide(tc.in)
		actions[d.Action] = true
		modes[d.DemoteMode] = true
	}
	for _, a := range failover.Actions() {
		require.True(t, actions[a], "no table case decides %s", a)
	}
	for _, m := range []failover.DemoteMode{failover.DemoteOffline, failover.DemoteGraceful, failover.DemoteImmediate, failover.DemoteImmediateNoLock} {
		require.True(t, modes[m], "no table case demotes %s", m)
	}
}

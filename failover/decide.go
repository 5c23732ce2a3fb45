package failover

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/replication"
)

// Decide returns what the node described by in should do now, and why. It
// is a pure function: no I/O, no clock, no randomness; equal inputs give
// equal decisions. The package documentation describes the decisions and
// the guarantees.
//
// Two decisions ask for more input instead of acting: ActionProbePeers
// (fill Input.Peers) and ActionCheckDivergence (fill
// Local.Divergence). Their Memory is the input Memory unchanged; call Decide
// again with the same Input plus the requested data.
func Decide(in Input) Decision {
	d := newDecider(in)
	dec := d.decide()
	if dec.Action == ActionProbePeers || dec.Action == ActionCheckDivergence {
		dec.Memory = in.Local.Memory
		dec.SetInitialize, dec.WriteConfig = false, false
		return dec
	}
	if dec.Action != ActionRefuse {
		if d.setInit {
			dec.SetInitialize, dec.InitializeRevision = true, d.initRev
		}
		dec.WriteConfig = d.writeConfig
	}
	if dec.WakeAt.IsZero() || (!d.wakeAt.IsZero() && d.wakeAt.Before(dec.WakeAt)) {
		dec.WakeAt = d.wakeAt
	}
	dec.Memory = d.mem
	return dec
}

// decider carries one Decide call.
type decider struct {
	in  Input
	c   *dcs.Cluster
	cfg dcs.DynamicConfig
	l   Local
	me  string
	now time.Time
	mem Memory

	// side effects collected on the way
	setInit     bool
	initRev     int64
	writeConfig bool
	wakeAt      time.Time

	peers []Peer // Input.Peers sorted by name (nil when not probed)
}

func newDecider(in Input) *decider {
	d := &decider{in: in, c: in.Cluster, cfg: in.Config, l: in.Local, me: in.Local.Name, now: in.Now, mem: in.Local.Memory}
	if in.Peers != nil {
		d.peers = slices.Clone(in.Peers)
		slices.SortStableFunc(d.peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	}
	return d
}

func (d *decider) wake(t time.Time) {
	if d.wakeAt.IsZero() || t.Before(d.wakeAt) {
		d.wakeAt = t
	}
}

// ---- small predicates ----

func (d *decider) leaderName() string { return d.c.LeaderName() }

// locked: some node holds the leader key.
func (d *decider) locked() bool { return d.leaderName() != "" }

// holdsKey: the snapshot's leader key carries my name on my current lease.
func (d *decider) holdsKey() bool {
	l := d.c.Leader
	return l != nil && l.Name != "" && l.Name == d.me && d.l.LeaseID != 0 && l.Lease == d.l.LeaseID
}

// isLeader: I hold the key and the lease keeper vouches for it.
func (d *decider) isLeader() bool { return d.holdsKey() && d.l.LeaderValid }

// otherLeader: the key is held by another member.
func (d *decider) otherLeader() string {
	if n := d.leaderName(); n != "" && n != d.me {
		return n
	}
	return ""
}

// primaryish: a postmaster runs and is not in recovery (also while it is
// still starting as a primary).
func (d *decider) primaryish() bool { return d.l.Running && !d.l.InRecovery }

func (d *decider) failoverRequest() *dcs.Failover {
	if f := d.c.Failover; !f.IsEmpty() {
		return f
	}
	return nil
}

func (d *decider) canCheckDivergence() bool { return d.l.CanRewind || d.l.RemoveDataOnDivergence }

// triggerRewindCheck is Patroni's trigger_check_diverged_lsn.
func (d *decider) triggerRewindCheck() {
	if d.canCheckDivergence() && d.mem.Rewind != RewindNeeded {
		d.mem.Rewind = RewindCheck
	}
}

func validSysID(s string) bool {
	if len(s) < 10 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func uncleanControl(s string) bool {
	return s == ControlInProduction || s == ControlShuttingDown || s == ControlInCrashRecovery
}

// wasPrimary: the stopped instance was running as a primary a moment ago
// (Patroni: controldata state, role primary, no recovery signal file).
func (d *decider) wasPrimary() bool {
	switch d.l.ControlState {
	case ControlInProduction, ControlInCrashRecovery, ControlShuttingDown, ControlShutDown:
	default:
		return false
	}
	if d.l.StandbySignal {
		return false
	}
	return d.l.Role == "" || dcs.IsPrimaryRole(d.l.Role) || d.l.Role == dcs.RolePromoted
}

// ---- the decision tree ----

func (d *decider) decide() Decision {
	d.foldResult()
	if d.mem.Fatal != "" {
		return Decision{Action: ActionRefuse, Reason: d.mem.Fatal}
	}
	if d.me == "" {
		return Decision{Action: ActionRefuse, Reason: "no member name configured"}
	}
	if d.c == nil || !d.in.DCSReachable {
		return d.dcsUnreachable()
	}
	d.rememberLeader()
	if d.cfg.Pause {
		return d.handsOff("PAUSE: ", "pause mode is not implemented yet: no automatic action")
	}
	if d.cfg.StandbyCluster != nil {
		return d.handsOff("", "standby_cluster is not implemented yet: no automatic action")
	}
	d.leaderSideEffects()
	if d.l.Async != ActionNone {
		return d.asyncInProgress()
	}
	if d.l.DataDirEmpty {
		return d.emptyDataDir()
	}
	if dec, ok := d.checkSysID(); ok {
		return dec
	}
	if (d.l.State == StateStartFailed || d.l.State == StateRestartFailed) && d.holdsKey() {
		d.mem.CrashedAt = time.Time{}
		return Decision{Action: ActionReleaseLeader, Reason: "removed leader key after trying and failing to start postgres"}
	}
	if d.l.State == StateStarting {
		if dec, ok := d.starting(); ok {
			return dec
		}
	} else if !d.l.Running {
		return d.recover()
	}
	if d.l.Running && d.l.State != StateStarting {
		d.mem.CrashRecoveryDone = false
	}
	switch {
	case !d.locked():
		return d.unlocked()
	case d.holdsKey():
		return d.leader()
	case d.leaderName() == d.me:
		if d.primaryish() {
			return Decision{Action: ActionNone, Reason: fmt.Sprintf("the leader key holds my name on lease %d, not on mine (%d): an earlier run of this node; continuing as primary until it expires", d.c.Leader.Lease, d.l.LeaseID)}
		}
		return Decision{Action: ActionNone, Reason: fmt.Sprintf("the leader key holds my name on lease %d, not on mine (%d): waiting for it to expire", d.c.Leader.Lease, d.l.LeaseID)}
	default:
		return d.follow()
	}
}

// foldResult records the outcome of a finished long action.
func (d *decider) foldResult() {
	r := d.l.Result
	if r == nil {
		return
	}
	switch r.Action {
	case ActionRewind:
		switch {
		case r.Err == "":
			d.mem.Rewind = RewindDone
		case r.Retry:
			// pg_rewind did not run: still needed, tried again.
		default:
			d.mem.Rewind = RewindFailed
		}
	case ActionReinitialize, ActionClone:
		if r.Err == "" {
			d.mem.Rewind = RewindNone
		}
	case ActionPromote:
		if r.Err != "" {
			d.mem.SkipRaceUntil = d.now.Add(d.cfg.TTL)
		}
	case ActionBootstrap:
		if r.Err != "" {
			d.mem.Fatal = "bootstrap failed: " + r.Err + " (clean up and restart the node)"
		}
	}
}

// rememberLeader records the leader key when another member holds it. My
// own tenure is not recorded: the promote-time lag check must still judge
// /status against the tenure before mine.
func (d *decider) rememberLeader() {
	l := d.c.Leader
	if l == nil || l.Name == "" || l.Name == d.me {
		return
	}
	t := LeaderToken{Name: l.Name, CreateRevision: l.CreateRevision, Lease: l.Lease, APIURL: l.Member.Data.APIURL}
	if t.APIURL == "" && t.Name == d.mem.LastLeader.Name {
		t.APIURL = d.mem.LastLeader.APIURL
	}
	d.mem.LastLeader = t
}

// leaderSideEffects: a leader fixes a missing /initialize and /config
// (SPEC 3.2 steps 5 and 6).
func (d *decider) leaderSideEffects() {
	if !d.isLeader() {
		return
	}
	if init := d.c.Initialize; (init == nil || !validSysID(init.SysID)) && validSysID(d.l.SysID) {
		d.setInit = true
		if init != nil {
			d.initRev = init.ModRevision
		}
	}
	if d.c.Config == nil || len(d.c.Config.Data) == 0 {
		d.writeConfig = true
	}
}

func (d *decider) handsOff(prefix, why string) Decision {
	if d.isLeader() {
		return Decision{Action: ActionRefreshLeader, Reason: fmt.Sprintf("%sno action. I am (%s), the leader with the lock (%s)", prefix, d.me, why)}
	}
	return Decision{Action: ActionNone, Reason: prefix + "no action (" + why + ")"}
}

// dcsUnreachable is SPEC 3.10. In failsafe mode a primary that every
// member acknowledged this cycle keeps running. Otherwise a primary keeps
// running while its lease is valid (no other node can lead before it runs
// out) and is demoted offline once it is not; the fence timer in ha does the
// same at the same instant, whichever comes first.
func (d *decider) dcsUnreachable() Decision {
	if d.cfg.Pause {
		return Decision{Action: ActionNone, Reason: "PAUSE: DCS is not accessible (pause mode is not implemented yet: no automatic action)"}
	}
	if d.l.Async == ActionPromote && !d.l.LeaderValid {
		return Decision{Action: ActionCancelAsync, Reason: "lost leader before promote: DCS is not accessible"}
	}
	if d.primaryish() {
		if d.cfg.FailsafeMode && d.l.FailsafeConfirmed {
			return Decision{Action: ActionNone, Reason: "continue to run as a leader because failsafe mode is enabled and all members are accessible"}
		}
		if d.l.LeaderValid {
			return Decision{Action: ActionNone, Reason: "DCS is not accessible; continuing as primary while my leader lease is valid"}
		}
		d.triggerRewindCheck()
		return Decision{Action: ActionDemote, DemoteMode: DemoteOffline, Reason: "demoted self because DCS is not accessible and I was a leader"}
	}
	return Decision{Action: ActionNone, Reason: "DCS is not accessible"}
}

// asyncInProgress is SPEC 3.9.
func (d *decider) asyncInProgress() Decision {
	name := d.l.Async.String()
	if d.isLeader() {
		if d.l.Async == ActionRestartPrimary {
			if dec, ok := d.startTimeout(); ok {
				return dec
			}
		}
		return Decision{Action: ActionRefreshLeader, Reason: "updated leader lock during " + name}
	}
	switch d.l.Async {
	case ActionBootstrap:
		return Decision{Action: ActionNone, Reason: "bootstrap in progress"}
	case ActionDemote:
		return Decision{Action: ActionNone, Reason: "demote in progress"}
	}
	if d.primaryish() {
		d.triggerRewindCheck()
		return Decision{Action: ActionDemote, DemoteMode: DemoteImmediateNoLock, Target: d.otherLeader(),
			Reason: "demoting self because I do not have the lock and I was a leader (" + name + " cancelled)"}
	}
	if d.l.Async == ActionPromote {
		return Decision{Action: ActionCancelAsync, Reason: "lost leader before promote"}
	}
	return Decision{Action: ActionNone, Reason: name + " in progress"}
}

// emptyDataDir is SPEC 3.2 step 11 and 3.14.
func (d *decider) emptyDataDir() Decision {
	if d.holdsKey() {
		return Decision{Action: ActionReleaseLeader, Reason: "released leader key: the data directory is empty"}
	}
	if !d.locked() && d.c.Initialize == nil && !d.l.Tags.NoFailover() && d.l.BootstrapAllowed {
		return Decision{Action: ActionBootstrap, Target: d.me, Reason: "trying to bootstrap a new cluster"}
	}
	if name, fromLeader := d.cloneMember(); name != "" {
		role := "replica"
		if fromLeader {
			role = "leader"
		}
		return Decision{Action: ActionClone, Target: name, Reason: fmt.Sprintf("trying to bootstrap from %s '%s'", role, name)}
	}
	if l := d.otherLeader(); l != "" {
		return Decision{Action: ActionWaitForLeaderBootstrap, Target: l, Reason: fmt.Sprintf("waiting for the leader (%s) to publish its connection URL", l)}
	}
	if d.c.Initialize == nil {
		switch {
		case d.l.Tags.NoFailover():
			return Decision{Action: ActionWaitForLeaderBootstrap, Reason: "waiting for leader to bootstrap (tagged nofailover: not racing for /initialize)"}
		case !d.l.BootstrapAllowed:
			return Decision{Action: ActionWaitForLeaderBootstrap, Reason: "waiting for leader to bootstrap (no bootstrap section in the configuration)"}
		}
	}
	return Decision{Action: ActionWaitForLeaderBootstrap, Reason: "waiting for leader to bootstrap"}
}

// cloneMember is Patroni's get_clone_member: a running member tagged
// clonefrom (other than me and the leader), else the leader. The choice
// among several clonefrom members is a hash of my name, so it is
// deterministic and spreads the nodes.
func (d *decider) cloneMember() (name string, fromLeader bool) {
	leader := d.leaderName()
	var cands []string
	for _, m := range d.c.Members {
		if m.Name == d.me || m.Name == leader || m.Name == "" {
			continue
		}
		if m.Data.Tags.CloneFrom() && m.Data.State == StateRunning && m.Data.ConnURL != "" {
			cands = append(cands, m.Name)
		}
	}
	if len(cands) > 0 {
		h := fnv.New32a()
		h.Write([]byte(d.me))
		return cands[h.Sum32()%uint32(len(cands))], false
	}
	if l := d.otherLeader(); l != "" && d.c.Leader.Member.Data.ConnURL != "" {
		return l, true
	}
	return "", false
}

// checkSysID is SPEC 3.2 step 12 for a non-empty data directory.
func (d *decider) checkSysID() (Decision, bool) {
	if !validSysID(d.l.SysID) {
		return Decision{Action: ActionNone, Reason: "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize"}, true
	}
	init := d.c.Initialize
	if init != nil && validSysID(init.SysID) {
		if init.SysID != d.l.SysID {
			return Decision{Action: ActionRefuse, Reason: fmt.Sprintf("system ID mismatch, node %s belongs to a different cluster: %s != %s", d.me, d.l.SysID, init.SysID)}, true
		}
		return Decision{}, false
	}
	if d.locked() {
		return Decision{}, false // a leader fixes /initialize (leaderSideEffects)
	}
	replica := (d.l.Running && d.l.InRecovery) || (!d.l.Running && d.l.StandbySignal)
	if init == nil {
		if replica {
			return Decision{Action: ActionRefuse, Reason: "no initialize key in DCS and PostgreSQL is running as replica: refusing to seed a cluster from a replica's data directory"}, true
		}
		d.setInit, d.initRev = true, 0 // adopt this primary's data directory
		return Decision{}, false
	}
	// /initialize is "": some node won the bootstrap race and runs initdb.
	if d.primaryish() {
		d.setInit, d.initRev = true, init.ModRevision
		return Decision{}, false
	}
	return Decision{Action: ActionWaitForLeaderBootstrap, Reason: "waiting for leader to bootstrap (/initialize is empty: a bootstrap is in progress; delete the key if it is stale)"}, true
}

// starting is Patroni's handle_starting_instance for a node holding the
// key; other starting nodes go on through the normal flow.
func (d *decider) starting() (Decision, bool) {
	if !d.holdsKey() {
		return Decision{}, false
	}
	if !d.l.LeaderValid {
		if d.primaryish() || !d.mem.CrashedAt.IsZero() {
			d.triggerRewindCheck()
			return Decision{Action: ActionDemote, DemoteMode: DemoteImmediateNoLock, Target: d.otherLeader(), Reason: "demoted self because failed to update leader lock in DCS"}, true
		}
		return Decision{Action: ActionNone, Reason: "not promoting because failed to update leader lock in DCS"}, true
	}
	if dec, ok := d.startTimeout(); ok {
		return dec, true
	}
	if d.primaryish() {
		if dec, ok := d.manualFailoverFromLeader(); ok {
			return dec, true
		}
	}
	return Decision{Action: ActionRefreshLeader, Reason: "PostgreSQL is still starting; updated leader lock"}, true
}

// startTimeout fails over a primary whose restart outlived
// primary_start_timeout, when a candidate can take over. It applies only
// while the crash clock (Memory.CrashedAt) runs.
func (d *decider) startTimeout() (Decision, bool) {
	if d.mem.CrashedAt.IsZero() {
		return Decision{}, false
	}
	deadline := d.mem.CrashedAt.Add(d.cfg.PrimaryStartTimeout)
	if d.now.Before(deadline) {
		d.wake(deadline)
		return Decision{}, false
	}
	probe, err := d.failoverPossible("", 0, "")
	if probe != nil {
		return *probe, true
	}
	waited := d.now.Sub(d.mem.CrashedAt).Round(time.Second)
	if err == nil {
		d.triggerRewindCheck()
		d.mem.CrashedAt = time.Time{}
		return Decision{Action: ActionDemote, DemoteMode: DemoteImmediate,
			Reason: fmt.Sprintf("primary did not start within primary_start_timeout (%s, down for %s): stopping PostgreSQL to fail over", d.cfg.PrimaryStartTimeout, waited)}, true
	}
	return Decision{Action: ActionRefreshLeader, Reason: fmt.Sprintf("PostgreSQL is still starting as primary after %s, but failover is not possible: %v", waited, err)}, true
}

// recover is SPEC 3.8 for an instance that is not running.
func (d *decider) recover() Decision {
	if d.isLeader() {
		if d.mem.CrashedAt.IsZero() {
			d.mem.CrashedAt = d.now
		}
		timeout := d.cfg.PrimaryStartTimeout
		if timeout <= 0 {
			probe, err := d.failoverPossible("", 0, "")
			if probe != nil {
				return *probe
			}
			if err == nil {
				d.triggerRewindCheck()
				d.mem.CrashedAt = time.Time{}
				return Decision{Action: ActionDemote, DemoteMode: DemoteImmediate, Reason: "stopped PostgreSQL to fail over after a crash"}
			}
		} else if d.wasPrimary() && d.l.State != StateStopped {
			if dec, ok := d.startTimeout(); ok && dec.Action != ActionRefreshLeader {
				return dec
			}
			d.wake(d.mem.CrashedAt.Add(timeout))
			return Decision{Action: ActionRestartPrimary, Target: d.me, Reason: "starting primary after failure"}
		}
	} else {
		d.mem.CrashedAt = time.Time{}
	}
	if uncleanControl(d.l.ControlState) && !d.l.BackupLabel && !d.mem.CrashRecoveryDone && (!d.locked() || d.l.CanRewind) {
		d.mem.CrashRecoveryDone = true
		return Decision{Action: ActionCrashRecovery, Reason: "doing crash recovery in a single user mode"}
	}
	if d.holdsKey() {
		return Decision{Action: ActionStartAsReplica, Reason: "starting as readonly because i had the session lock"}
	}
	if l := d.otherLeader(); l != "" {
		if !d.mem.Rewind.executed() {
			d.triggerRewindCheck()
		}
		if dec, ok := d.rewindOrReinitialize(); ok {
			return dec
		}
		return Decision{Action: ActionStartAsReplica, Target: d.nodeToFollow(), Reason: "starting as a secondary"}
	}
	return Decision{Action: ActionStartAsReplica, Reason: "starting as a secondary"}
}

// nodeToFollow is Patroni's _get_node_to_follow for a cluster led by
// someone else: nostream → none; replicatefrom naming an existing member →
// it; else the leader.
func (d *decider) nodeToFollow() string {
	if d.l.Tags.Bool("nostream") {
		return ""
	}
	if rf := d.l.Tags.ReplicateFrom(); rf != "" && rf != d.me {
		if _, ok := d.c.Member(rf); ok {
			return rf
		}
	}
	return d.otherLeader()
}

// rewindOrReinitialize is Patroni's _handle_rewind_or_reinitialize against
// the current leader.
func (d *decider) rewindOrReinitialize() (Decision, bool) {
	leader := d.otherLeader()
	if leader == "" || !d.canCheckDivergence() {
		return Decision{}, false
	}
	lm := d.c.Leader.Member.Data
	switch d.mem.Rewind {
	case RewindCheck:
		if !dcs.IsPrimaryRole(lm.Role) || lm.ConnURL == "" {
			return Decision{}, false // check only against a running primary
		}
		switch d.l.Divergence {
		case DivergenceUnknown:
			return Decision{Action: ActionCheckDivergence, Target: leader, Reason: fmt.Sprintf("checking whether my timeline diverged from the leader (%s)", leader)}, true
		case DivergenceNone:
			d.mem.Rewind = RewindNotNeeded
			return Decision{}, false
		case DivergenceFound:
			d.mem.Rewind = RewindNeeded
		default:
			return Decision{}, false // retried next time
		}
	case RewindNeeded:
	case RewindFailed:
		if d.l.RemoveDataOnRewindFailure || d.l.RemoveDataOnDivergence {
			target, _ := d.cloneMember()
			return Decision{Action: ActionReinitialize, Target: target, Reason: "reinitializing after pg_rewind failed"}, true
		}
		if !d.l.Running {
			return Decision{Action: ActionNone, Target: leader, Reason: fmt.Sprintf("pg_rewind from %s failed; not starting a diverged instance: reinitialize this member", leader)}, true
		}
		return Decision{}, false
	default:
		return Decision{}, false
	}
	if d.l.CanRewind {
		if cp := lm.CheckpointAfterPromote; cp != nil && !*cp {
			return Decision{Action: ActionNone, Target: leader, Reason: fmt.Sprintf("waiting for checkpoint on %s before rewind", leader)}, true
		}
		if !d.l.Running && (uncleanControl(d.l.ControlState) || d.l.ControlState == ControlInArchiveRecovery) && !d.l.BackupLabel && !d.mem.CrashRecoveryDone {
			d.mem.CrashRecoveryDone = true
			return Decision{Action: ActionCrashRecovery, Target: leader, Reason: "doing crash recovery in a single user mode before pg_rewind"}, true
		}
		return Decision{Action: ActionRewind, Target: leader, Reason: "running pg_rewind from " + leader}, true
	}
	target, _ := d.cloneMember()
	return Decision{Action: ActionReinitialize, Target: target, Reason: "reinitializing due to diverged timelines"}, true
}

// follow is SPEC 3.6 for a running instance while another member leads.
func (d *decider) follow() Decision {
	leader := d.otherLeader()
	if d.primaryish() {
		d.triggerRewindCheck()
		return Decision{Action: ActionDemote, DemoteMode: DemoteImmediateNoLock, Target: leader, Reason: "demoting self because I do not have the lock and I was a leader"}
	}
	lm := d.c.Leader.Member.Data
	if lm.Timeline > 0 && d.l.Timeline > 0 && lm.Timeline > d.l.Timeline {
		d.triggerRewindCheck()
	}
	if dec, ok := d.rewindOrReinitialize(); ok {
		return dec
	}
	target := d.nodeToFollow()
	if target == leader && lm.ConnURL == "" {
		return Decision{Action: ActionNone, Target: leader, Reason: fmt.Sprintf("waiting for the leader (%s) to publish its connection URL", leader)}
	}
	if target != d.l.Upstream {
		d.triggerRewindCheck()
		if target == "" {
			return Decision{Action: ActionFollow, Reason: "stopping replication (nostream)"}
		}
		return Decision{Action: ActionFollow, Target: target, Reason: fmt.Sprintf("following a new leader (%s)", target)}
	}
	return Decision{Action: ActionNone, Target: target, Reason: fmt.Sprintf("no action. I am (%s), a secondary, and following a leader (%s)", d.me, leader)}
}

// leader is SPEC 3.5 for a running instance whose leader key I hold.
func (d *decider) leader() Decision {
	if !d.l.LeaderValid {
		if d.primaryish() {
			d.triggerRewindCheck()
			return Decision{Action: ActionDemote, DemoteMode: DemoteImmediateNoLock, Reason: "demoted self because failed to update leader lock in DCS"}
		}
		return Decision{Action: ActionNone, Reason: "not promoting because failed to update leader lock in DCS"}
	}
	f := d.failoverRequest()
	stale := f != nil && f.ModRevision != 0 && d.c.Leader.CreateRevision != 0 && f.ModRevision < d.c.Leader.CreateRevision
	if d.primaryish() {
		if d.l.WatchdogFailed {
			d.triggerRewindCheck()
			return Decision{Action: ActionDemote, DemoteMode: DemoteImmediate, Reason: "demoting self: the watchdog is required but could not be activated"}
		}
		d.mem.CrashedAt = time.Time{}
		d.mem.Rewind = RewindNone
		d.mem.SkipRaceUntil = time.Time{}
		if stale {
			return Decision{Action: ActionClearFailover, ClearFailover: true, FailoverRevision: f.ModRevision,
				Reason: fmt.Sprintf("no action. I am (%s), the leader with the lock; cleaning up a failover request from before my tenure", d.me)}
		}
		if dec, ok := d.manualFailoverFromLeader(); ok {
			return dec
		}
		return Decision{Action: ActionRefreshLeader, Reason: fmt.Sprintf("no action. I am (%s), the leader with the lock", d.me)}
	}
	// A replica that holds the key: promote it.
	if d.l.WatchdogFailed {
		return Decision{Action: ActionReleaseLeader, Reason: "refusing to promote: the watchdog is required but could not be activated"}
	}
	if d.now.Before(d.mem.SkipRaceUntil) {
		d.wake(d.mem.SkipRaceUntil)
		return Decision{Action: ActionReleaseLeader, Reason: "releasing the leader key: promote failed (pre_promote); not racing until " + fmtTime(d.mem.SkipRaceUntil)}
	}
	if manual := f != nil && f.Leader == "" && f.Candidate == d.me; !manual {
		if lag, ref, from, lagging := d.lagging(d.l.Position()); lagging {
			return Decision{Action: ActionReleaseLeader, Reason: fmt.Sprintf("not promoting: my position %s is %d bytes behind %s (%s); maximum_lag_on_failover is %d",
				fmtLSN(d.l.Position()), lag, fmtLSN(ref), from, d.cfg.MaximumLagOnFailover)}
		}
	}
	dec := Decision{Action: ActionPromote, Target: d.me, Reason: "promoting self to leader because I had the session lock"}
	if m := d.cfg.SynchronousMode; m != "" && m != dcs.SyncOff {
		s, names := replication.PromoteSync(d.me, d.c.Sync, d.cfg.SynchronousModeStrict)
		dec.Sync, dec.SyncNames = &s, names.String()
		if d.c.Sync != nil {
			dec.SyncRevision = d.c.Sync.ModRevision
		}
	}
	if f != nil && (stale || f.Leader != d.me || f.Candidate == d.me) {
		// The request that led to this race, or one not meant for me: done
		// once promoted. A switchover away from me that arrived after I took
		// the key is kept and handled once I am primary.
		dec.ClearFailover, dec.FailoverRevision = true, f.ModRevision
	}
	return dec
}

// manualFailoverFromLeader is SPEC 3.7 (process_manual_failover_from_leader)
// for a primary holding the key.
func (d *decider) manualFailoverFromLeader() (Decision, bool) {
	f := d.failoverRequest()
	if f == nil {
		return Decision{}, false
	}
	clear := func(reason string) (Decision, bool) {
		return Decision{Action: ActionClearFailover, ClearFailover: true, FailoverRevision: f.ModRevision, Reason: reason}, true
	}
	if !f.ScheduledAt.IsZero() {
		staleAfter := (d.cfg.LoopWait * 3 / 2).Truncate(time.Second)
		if d.now.Sub(f.ScheduledAt) > staleAfter {
			return clear("found a stale failover value, cleaning up: scheduled at " + fmtTime(f.ScheduledAt))
		}
		if d.now.Before(f.ScheduledAt) {
			d.wake(f.ScheduledAt)
			what := "switchover"
			if f.Candidate != "" {
				what += " to " + f.Candidate
			}
			due := ""
			if f.ScheduledAt.Sub(d.now) <= d.cfg.LoopWait {
				due = " (due)"
			}
			return Decision{Action: ActionRefreshLeader, Reason: fmt.Sprintf("no action. I am (%s), the leader with the lock; %s scheduled at %s%s",
				d.me, what, fmtTime(f.ScheduledAt), due)}, true
		}
	}
	if f.Leader != "" && f.Leader != d.me {
		return clear(fmt.Sprintf("manual failover: leader name does not match: %s != %s", f.Leader, d.me))
	}
	if f.Candidate == d.me {
		return clear("manual failover: I am already the leader, no need to failover")
	}
	probe, err := d.failoverPossible(f.Candidate, 0, "")
	if probe != nil {
		return *probe, true
	}
	if err != nil {
		return clear("manual failover: no healthy members found, failover is not possible: " + err.Error())
	}
	d.triggerRewindCheck()
	what := "switchover"
	if f.Leader == "" {
		what = "manual failover"
	}
	return Decision{Action: ActionDemote, DemoteMode: DemoteGraceful, Target: f.Candidate, Reason: what + ": demoting myself"}, true
}

// unlocked is SPEC 3.3 for a running instance when nobody holds the key.
func (d *decider) unlocked() Decision {
	v := d.healthiest()
	if v.probe != nil {
		return *v.probe
	}
	if v.ok {
		return Decision{Action: ActionAcquireLeader, Target: d.me, Reason: v.reason}
	}
	if f := d.failoverRequest(); (f != nil && f.Candidate != "" && f.Candidate != d.me) || d.l.Tags.NoFailover() {
		d.triggerRewindCheck()
	}
	if d.primaryish() {
		d.triggerRewindCheck()
		return Decision{Action: ActionDemote, DemoteMode: DemoteImmediateNoLock, Reason: "demoting self because I am not the healthiest node: " + v.reason}
	}
	return Decision{Action: ActionNone, Reason: v.reason, Blocked: v.block}
}

// itoa formats an int64.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// fmtLSN formats a WAL position the way PostgreSQL prints it (X/Y).
func fmtLSN(n int64) string {
	u := uint64(n)
	return fmt.Sprintf("%X/%X", u>>32, uint32(u))
}

// fmtTime formats a time for reasons (UTC, RFC 3339).
func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

package failover

import (
	"strings"
	"time"

	"github.com/pgha/pgha/dcs"
)

// Action is what a Decision asks the caller to do. Long actions (bootstrap,
// clone, rewind, reinitialize, crash recovery, starts, promote, demote) are
// meant to run asynchronously; while one runs the caller reports it in
// Local.Async and keeps calling Decide, which keeps the leader lock alive or
// cancels the action when the node loses the lock.
type Action int

// Actions. Each one's comment says what the caller does; Decision.Target
// names the member involved where there is one.
const (
	// ActionNone: nothing to do this round (a healthy replica, a node
	// waiting, a node blocked; see Reason and Blocked).
	ActionNone Action = iota

	// ActionRefreshLeader: the node is the leader and stays so. Keep the
	// lease renewed (the lease keeper does) and do the leader's routine:
	// publish /status (and /history after a promotion).
	ActionRefreshLeader

	// ActionProbePeers: the decision needs the other members' live state.
	// Probe Decision.Probe in parallel (GET /patroni, short timeout) and call
	// Decide again with the same Input and Peers set.
	ActionProbePeers

	// ActionCheckDivergence: check whether the local timeline diverged from
	// Target's (the leader's) and call Decide again with the same Input and
	// Local.Divergence set.
	ActionCheckDivergence

	// ActionBootstrap: race for /initialize (create-only, value ""); the
	// winner runs initdb, starts Postgres, writes /initialize = sysid and
	// /config, and takes the leader key. A loser does nothing (next round
	// waits for the winner).
	ActionBootstrap

	// ActionWaitForLeaderBootstrap: another node is bootstrapping (or no
	// node may); wait.
	ActionWaitForLeaderBootstrap

	// ActionClone: stop Postgres if it runs, clone the data directory from
	// Target (pg_basebackup), then start as a replica following the leader.
	ActionClone

	// ActionStartAsReplica: start the stopped instance read-only (with
	// standby.signal) following Target; with Target "" it starts with no
	// upstream.
	ActionStartAsReplica

	// ActionFollow: re-point the running replica at Target (rewrite
	// primary_conninfo and reload or restart); Target "" means no upstream.
	ActionFollow

	// ActionAcquireLeader: create the leader key (atomic create-if-absent on
	// the node's lease). On success the next round decides Promote; on
	// failure the node follows whoever won.
	ActionAcquireLeader

	// ActionPromote: the node holds the leader key on its lease and the
	// lease is valid: run pre_promote, promote Postgres (pg_promote), fire
	// on_role_change. Honour ClearFailover once promoted.
	ActionPromote

	// ActionDemote: stop being a writable primary in DemoteMode (see
	// [DemoteMode]), then run as a replica of Target ("" for none yet).
	// Cancel any async action first.
	ActionDemote

	// ActionRestartPrimary: the node holds the leader key and its primary
	// crashed: start Postgres as primary again. Decide fails over when the
	// start outlives primary_start_timeout.
	ActionRestartPrimary

	// ActionReleaseLeader: stop Postgres (immediate) if it runs as primary,
	// then delete the leader key (guarded by the node's lease).
	ActionReleaseLeader

	// ActionRewind: stop Postgres (fast) if it runs, run pg_rewind from
	// Target (the leader; single-user crash recovery first if the shutdown
	// was unclean), then start as a replica of Target. Report the outcome in
	// Local.Result.
	ActionRewind

	// ActionReinitialize: stop Postgres, remove the data directory and clone
	// again from Target, then start as a replica. Report the outcome in
	// Local.Result.
	ActionReinitialize

	// ActionCrashRecovery: finish the unclean shutdown of the stopped
	// instance with single-user crash recovery (postgres --single), leaving
	// it stopped and clean.
	ActionCrashRecovery

	// ActionClearFailover: the node is the leader and stays so (as for
	// ActionRefreshLeader); also clear /failover (write {} if its revision
	// is still Decision.FailoverRevision).
	ActionClearFailover

	// ActionCancelAsync: cancel the async action in progress (a promote
	// after the leader key was lost).
	ActionCancelAsync

	// ActionRefuse: a condition the node must not act under (system ID
	// mismatch, a replica's data without /initialize, a failed bootstrap).
	// Do not start, promote or follow; stop Postgres if it runs, release the
	// leader key if held, and report Reason to the operator. The reference
	// daemon exits.
	ActionRefuse

	numActions // sentinel for tests and loops
)

var actionNames = [...]string{
	ActionNone:                   "none",
	ActionRefreshLeader:          "refresh_leader",
	ActionProbePeers:             "probe_peers",
	ActionCheckDivergence:        "check_divergence",
	ActionBootstrap:              "bootstrap",
	ActionWaitForLeaderBootstrap: "wait_for_leader_bootstrap",
	ActionClone:                  "clone",
	ActionStartAsReplica:         "start_as_replica",
	ActionFollow:                 "follow",
	ActionAcquireLeader:          "acquire_leader",
	ActionPromote:                "promote",
	ActionDemote:                 "demote",
	ActionRestartPrimary:         "restart_primary",
	ActionReleaseLeader:          "release_leader",
	ActionRewind:                 "rewind",
	ActionReinitialize:           "reinitialize",
	ActionCrashRecovery:          "crash_recovery",
	ActionClearFailover:          "clear_failover",
	ActionCancelAsync:            "cancel_async",
	ActionRefuse:                 "refuse",
}

// String returns the action's snake_case name, e.g. "acquire_leader".
func (a Action) String() string {
	if a >= 0 && a < numActions {
		return actionNames[a]
	}
	return "action(" + itoa(int64(a)) + ")"
}

// Actions lists every Action in order, for documentation and tests.
func Actions() []Action {
	out := make([]Action, 0, numActions)
	for a := ActionNone; a < numActions; a++ {
		out = append(out, a)
	}
	return out
}

// ParseAction returns the Action whose String is s.
func ParseAction(s string) (Action, bool) {
	for a := ActionNone; a < numActions; a++ {
		if actionNames[a] == s {
			return a, true
		}
	}
	return ActionNone, false
}

// DemoteMode is how a primary steps down (SPEC 3.11).
type DemoteMode int

// Demote modes.
const (
	// DemoteNone is the zero value: the decision is not a demote.
	DemoteNone DemoteMode = iota
	// DemoteOffline: the DCS is unreachable. Stop fast without a
	// checkpoint, keep the leader key (it cannot be deleted), restart
	// read-only with no upstream.
	DemoteOffline
	// DemoteGraceful: a switchover or failover request. CHECKPOINT, stop
	// fast, release the leader key with the final LSN in /status as soon as
	// a candidate has the shutdown checkpoint (see FailoverPossible with
	// minLSN), then follow the new leader (Target is the requested
	// candidate, "" for any).
	DemoteGraceful
	// DemoteImmediate: stop immediately and release the leader key (crash
	// with primary_start_timeout 0, start timeout, watchdog failure).
	DemoteImmediate
	// DemoteImmediateNoLock: the lock is lost or another node leads. Stop
	// immediately; there is no key to release. Then follow the leader.
	DemoteImmediateNoLock
)

// String returns Patroni's name of the mode: "offline", "graceful",
// "immediate" or "immediate-nolock" ("" for DemoteNone).
func (m DemoteMode) String() string {
	switch m {
	case DemoteOffline:
		return "offline"
	case DemoteGraceful:
		return "graceful"
	case DemoteImmediate:
		return "immediate"
	case DemoteImmediateNoLock:
		return "immediate-nolock"
	}
	return ""
}

// ReleasesKey reports whether the mode deletes the leader key.
func (m DemoteMode) ReleasesKey() bool { return m == DemoteGraceful || m == DemoteImmediate }

// Block names a visible state in which automatic failover cannot happen.
type Block string

// Blocks.
const (
	// BlockNone: nothing is blocked.
	BlockNone Block = ""
	// BlockLag: no live candidate is within maximum_lag_on_failover of the
	// reference position. An operator's failover naming a candidate (POST
	// /failover while there is no leader) overrides it.
	BlockLag Block = "failover blocked by lag"
	// BlockTimeline: with check_timeline, no live candidate is on the
	// cluster timeline.
	BlockTimeline Block = "failover blocked by timeline"
	// BlockSyncMode: in synchronous mode this node is not in /sync, so it
	// may lack acknowledged commits and does not take over automatically;
	// the nodes /sync lists may. An operator's failover naming a candidate
	// overrides it.
	BlockSyncMode Block = "failover blocked: not a synchronous standby"
)

// ProbeTarget is a member to probe for an ActionProbePeers decision.
type ProbeTarget struct {
	// Name is the member name.
	Name string
	// APIURL is the URL to GET (the member's api_url).
	APIURL string
}

// Decision is the result of Decide.
type Decision struct {
	// Action is what to do.
	Action Action

	// Reason says why, in Patroni's wording where Patroni has one, e.g.
	// "no action. I am (node1), the leader with the lock".
	Reason string

	// Target is the member the action concerns: the leader to follow, the
	// member to clone or rewind from, the switchover candidate of a graceful
	// demote, the node itself for AcquireLeader and Promote.
	Target string

	// DemoteMode is set when Action is ActionDemote.
	DemoteMode DemoteMode

	// ClearFailover asks the caller to clear /failover (write {}) if its
	// revision is still FailoverRevision, after the action (for
	// ActionPromote: once promoted).
	ClearFailover    bool
	FailoverRevision int64

	// SetInitialize asks the caller to write Local.SysID into /initialize if
	// its revision is still InitializeRevision (0: only if absent). Set for
	// a leader whose /initialize is missing or empty, and for a node that
	// adopts an existing primary's data directory.
	SetInitialize      bool
	InitializeRevision int64

	// WriteConfig asks the leader to write its dynamic configuration to
	// /config, which is missing or empty.
	WriteConfig bool

	// Sync, set with ActionPromote in synchronous mode, is the /sync the
	// node writes before it promotes, if the key's revision is still
	// SyncRevision (0: only if absent), after setting
	// synchronous_standby_names to SyncNames. A failed write postpones the
	// promotion: the caller does not promote and decides again.
	Sync         *dcs.SyncState
	SyncRevision int64
	SyncNames    string

	// Blocked is set when automatic failover cannot happen (see Block);
	// Reason then names the cause and the bound.
	Blocked Block

	// Probe lists the members to probe for ActionProbePeers.
	Probe []ProbeTarget

	// WakeAt, when not zero, is the latest time at which the caller should
	// decide again even if nothing changes (a scheduled switchover falls
	// due, primary_start_timeout expires, a race backoff ends).
	WakeAt time.Time

	// Memory is the state to pass in the next Input.
	Memory Memory
}

// String renders the decision on one line: the action, the demote mode,
// the target, side effects marked with "+" (with the revision they are
// conditional on), "blocked", then the reason. For example
// "demote(graceful) target=node2: switchover: demoting myself" or
// "promote target=node2 +clear_failover@65: promoting self ...".
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.Action.String())
	if d.DemoteMode != DemoteNone {
		b.WriteString("(" + d.DemoteMode.String() + ")")
	}
	if d.Target != "" {
		b.WriteString(" target=" + d.Target)
	}
	if d.ClearFailover {
		if d.Action != ActionClearFailover {
			b.WriteString(" +clear_failover")
		}
		b.WriteString("@" + itoa(d.FailoverRevision))
	}
	if d.SetInitialize {
		b.WriteString(" +set_initialize@" + itoa(d.InitializeRevision))
	}
	if d.WriteConfig {
		b.WriteString(" +write_config")
	}
	if d.Sync != nil {
		b.WriteString(" +sync@" + itoa(d.SyncRevision))
	}
	if d.Blocked != BlockNone {
		b.WriteString(" blocked")
	}
	b.WriteString(": " + d.Reason)
	return b.String()
}

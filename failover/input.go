package failover

import (
	"time"

	"github.com/pgha/pgha/dcs"
)

// Input is everything one decision is made from. Build a fresh Input for
// every call; Decide never keeps a reference to it.
type Input struct {
	// Cluster is the DCS snapshot. nil means the node has no usable view of
	// the DCS; Decide then takes the DCS-unreachable path whatever
	// DCSReachable says.
	Cluster *dcs.Cluster

	// DCSReachable is false when the node's last DCS read or lease renewal
	// failed after its retries (Patroni's DCSError path, SPEC 3.10). Cluster
	// may then still hold the last snapshot, but Decide does not trust it
	// for any leader action.
	DCSReachable bool

	// Config is the dynamic configuration in force (normally
	// Cluster.Config.Dynamic(), or the node's cached copy when /config is
	// missing).
	//
	// Config.Pause makes Decide take no automatic action (a leader keeps
	// its lock); Config.SynchronousMode restricts automatic failover to the
	// members /sync lists (see the package doc); Config.StandbyCluster makes
	// Decide take no action. Config.FailsafeMode keeps a primary that
	// Local.FailsafeConfirmed running while the DCS is out of reach, and
	// keeps members not listed in /failsafe out of races.
	// Config.PrimaryRaceBackoff is ignored.
	Config dcs.DynamicConfig

	// Local is this node: its identity, lease, Postgres and memory.
	Local Local

	// Peers are the results of probing the other members' REST API (GET
	// /patroni) for this decision. nil means "not probed": when the decision
	// needs live positions Decide returns [ActionProbePeers], and the caller
	// probes the targets it lists and calls Decide again with the same Input
	// and Peers set (an empty, non-nil slice when nobody was probed).
	Peers []Peer

	// Now is the caller's current time. Decide compares it only with times
	// it stored in Memory or read from the DCS request itself
	// (/failover.scheduled_at), never with another node's clock.
	Now time.Time
}

// Local is what the node knows about itself.
type Local struct {
	// Name is the member name.
	Name string

	// LeaseID is the node's current DCS lease, 0 when it has none. The node
	// holds the leader key only if the snapshot's leader key carries Name on
	// this lease.
	LeaseID int64

	// LeaderValid is the lease keeper's word that the node's leader lease has
	// been renewed and its deadline minus the fence margin has not passed.
	// Decide acts as leader (refresh, promote, restart as primary) only when
	// the snapshot shows the key on LeaseID and LeaderValid is true.
	LeaderValid bool

	// Tags are the node's effective tags (nofailover, failover_priority,
	// clonefrom, replicatefrom, nostream, ...).
	Tags dcs.Tags

	// BootstrapAllowed is true when the node's configuration has a
	// bootstrap section, so it may race for /initialize and run initdb.
	BootstrapAllowed bool

	// CanRewind is true when postgresql.use_pg_rewind is on, pg_rewind works
	// and the data directory has wal_log_hints or data checksums.
	CanRewind bool

	// RemoveDataOnDivergence is
	// postgresql.remove_data_directory_on_diverged_timelines: re-clone when
	// the timeline diverged and pg_rewind cannot be used.
	RemoveDataOnDivergence bool

	// RemoveDataOnRewindFailure is
	// postgresql.remove_data_directory_on_rewind_failure: re-clone when
	// pg_rewind failed.
	RemoveDataOnRewindFailure bool

	// WatchdogFailed is true when the watchdog is required (watchdog.mode
	// required) but cannot be used. Such a node never races and never
	// promotes; a primary is demoted.
	WatchdogFailed bool

	// FailsafeConfirmed is true when, in failsafe mode with the DCS out of
	// reach, every member listed in /failsafe acknowledged this node as the
	// primary (POST /failsafe) during this cycle (SPEC.md 3.10). Such a
	// primary keeps running.
	FailsafeConfirmed bool

	// DataDirEmpty is true when the data directory is missing or empty.
	DataDirEmpty bool

	// SysID is the data directory's database system identifier (decimal, from
	// pg_controldata), "" when unknown.
	SysID string

	// Running is true when a postmaster runs on the data directory.
	Running bool

	// State is the member state as published in the member key:
	// [StateRunning], [StateStarting], [StateStopped], [StateCrashed],
	// [StateStartFailed], ... (SPEC 1.3).
	State string

	// Role is the role the node last published (dcs.RolePrimary,
	// dcs.RoleReplica, dcs.RoleDemoted, dcs.RoleUninitialized,
	// dcs.RolePromoted); "" when unknown. Together with ControlState it
	// tells a crashed primary from a stopped replica.
	Role string

	// InRecovery is pg_is_in_recovery() of the running instance.
	InRecovery bool

	// Timeline is the instance's timeline: the current one on a primary,
	// the received (or replayed) one on a replica; 0 when unknown.
	Timeline int64

	// FlushLSN is a primary's pg_current_wal_flush_lsn().
	FlushLSN int64
	// ReceiveLSN and ReplayLSN are a replica's received (max of received and
	// written) and replayed positions.
	ReceiveLSN int64
	ReplayLSN  int64

	// Upstream is the member the replica currently follows (from its
	// primary_conninfo), "" for none.
	Upstream string

	// ControlState is pg_controldata's "Database cluster state" of a stopped
	// instance: [ControlInProduction], [ControlShutDown],
	// [ControlShutDownInRecovery], [ControlInCrashRecovery],
	// [ControlInArchiveRecovery], [ControlShuttingDown]; "" when unknown.
	ControlState string

	// StandbySignal is true when standby.signal (or recovery.signal) exists:
	// the instance would start as a replica.
	StandbySignal bool

	// BackupLabel is true when the data directory has a backup_label (a
	// copy whose recovery never finished); single-user crash recovery is
	// then not used.
	BackupLabel bool

	// Async is the long action in progress (started from an earlier
	// decision, or by the REST API), [ActionNone] when none.
	Async Action

	// Result reports the outcome of the long action that finished since the
	// previous decision, nil when none did. Pass it until a decision has
	// been made from it (and again in the second call of a two-phase
	// decision).
	Result *Result

	// Divergence is the result of the timeline check a previous
	// [ActionCheckDivergence] decision asked for, [DivergenceUnknown]
	// otherwise.
	Divergence Divergence

	// Memory is the decision state carried across rounds: pass the Memory
	// of the previous Decision (the zero Memory at start).
	Memory Memory
}

// Position is the node's live WAL position: the flush LSN of a running
// primary, the larger of the received and replayed LSN of a running replica,
// and 0 when Postgres is not running.
func (l Local) Position() int64 {
	if !l.Running {
		return 0
	}
	if !l.InRecovery {
		return l.FlushLSN
	}
	return max(l.ReceiveLSN, l.ReplayLSN)
}

// IsPrimary reports whether Postgres runs and is not in recovery.
func (l Local) IsPrimary() bool { return l.Running && !l.InRecovery && l.State != StateStarting }

// Member states as published in member keys (SPEC 1.3).
const (
	StateRunning         = "running"
	StateStarting        = "starting"
	StateStopped         = "stopped"
	StateStopping        = "stopping"
	StateCrashed         = "crashed"
	StateStartFailed     = "start failed"
	StateRestarting      = "restarting"
	StateRestartFailed   = "restart failed"
	StateCreatingReplica = "creating replica"
	StateInitializing    = "initializing new cluster"
)

// pg_controldata "Database cluster state" values.
const (
	ControlInProduction       = "in production"
	ControlShutDown           = "shut down"
	ControlShutDownInRecovery = "shut down in recovery"
	ControlShuttingDown       = "shutting down"
	ControlInCrashRecovery    = "in crash recovery"
	ControlInArchiveRecovery  = "in archive recovery"
)

// Peer is what another member answered to GET /patroni (SPEC 4.3), or why
// it did not.
type Peer struct {
	// Name is the member name.
	Name string
	// Reachable is true when the member answered in time with a valid body.
	Reachable bool
	// Err describes the failure when Reachable is false.
	Err string
	// Role is the "role" field (primary, replica, ...).
	Role string
	// State is the "state" field (running, starting, ...).
	State string
	// InRecovery is false when the peer reports itself a primary: role
	// primary/master, or an "xlog.location" field (Patroni's rule).
	InRecovery bool
	// Location is xlog.location (a primary's flush position).
	Location int64
	// ReceivedLocation and ReplayedLocation are a replica's
	// xlog.received_location and xlog.replayed_location.
	ReceivedLocation int64
	ReplayedLocation int64
	// Timeline is the "timeline" field, 0 when absent.
	Timeline int64
	// Tags are the "tags" field.
	Tags dcs.Tags
	// WatchdogFailed is the "watchdog_failed" field.
	WatchdogFailed bool
}

// Position is the peer's live WAL position: xlog.location for a primary,
// the larger of received and replayed for a replica, 0 when unreachable.
func (p Peer) Position() int64 {
	if !p.Reachable {
		return 0
	}
	if !p.InRecovery {
		return p.Location
	}
	return max(p.ReceivedLocation, p.ReplayedLocation)
}

// usable reports whether the probe result lets the peer take part in a
// failover: reachable, not tagged nofailover, watchdog fine (Patroni's
// failover_limitation).
func (p Peer) usable() bool {
	return p.Reachable && p.Err == "" && !p.Tags.NoFailover() && !p.WatchdogFailed
}

// limitation says why the peer cannot take over, "" when it can.
func (p Peer) limitation() string {
	switch {
	case !p.Reachable || p.Err != "":
		if p.Err != "" {
			return "not reachable: " + p.Err
		}
		return "not reachable"
	case p.Tags.NoFailover():
		return "not allowed to promote (nofailover)"
	case p.WatchdogFailed:
		return "not watchdog capable"
	}
	return ""
}

// Result is the outcome of a long action that finished.
type Result struct {
	// Action is the action that finished.
	Action Action
	// Err is "" on success, else what went wrong.
	Err string
	// Retry marks a failure that happened before the action changed
	// anything (the server was still stopping, a tool could not start):
	// Decide treats the action as not having run, so it is decided again.
	Retry bool
}

// Divergence is the result of checking whether the local timeline diverged
// from the leader's (Patroni's rewind check: IDENTIFY_SYSTEM and
// TIMELINE_HISTORY on the leader against the local timeline and position).
type Divergence int

// Divergence values.
const (
	// DivergenceUnknown: not checked for this decision.
	DivergenceUnknown Divergence = iota
	// DivergenceNone: the local history is a prefix of the leader's.
	DivergenceNone
	// DivergenceFound: the local timeline diverged; rewind or re-clone.
	DivergenceFound
	// DivergenceCheckFailed: the check could not be made (leader not
	// reachable, ...); it is retried later.
	DivergenceCheckFailed
)

// String returns "unknown", "none", "found" or "check failed".
func (d Divergence) String() string {
	switch d {
	case DivergenceNone:
		return "none"
	case DivergenceFound:
		return "found"
	case DivergenceCheckFailed:
		return "check failed"
	}
	return "unknown"
}

// Memory is what Decide remembers between rounds. The caller stores the
// Memory of each Decision and passes it back in the next Input; Decide never
// keeps state of its own.
type Memory struct {
	// LastLeader is the last leader key held by another member seen in a
	// snapshot. It is probed with the other members when the key is gone (a
	// former leader that still answers as a primary stops the race), it is
	// excused from the failover_priority rule, and its tenure tells whether
	// /status is current (see the lag rule in the package doc).
	LastLeader LeaderToken

	// CrashedAt is when this node, holding the leader key, first saw its
	// primary not running. primary_start_timeout is counted from it. Zero
	// when the primary is not down.
	CrashedAt time.Time

	// Rewind is the state of the rewind machinery (Patroni's rewind state).
	Rewind RewindState

	// SkipRaceUntil: after a failed promote (pre_promote), the node does not
	// race (and releases a leader key it holds) until this time.
	SkipRaceUntil time.Time

	// CrashRecoveryDone is set when Decide asked for single-user crash
	// recovery, so it is asked for once per stop (cleared when Postgres
	// runs again).
	CrashRecoveryDone bool

	// Fatal, when not empty, makes every later decision [ActionRefuse] with
	// this reason (a failed bootstrap). Start a fresh Memory to clear it.
	Fatal string
}

// LeaderToken identifies one tenure of the leader key.
type LeaderToken struct {
	// Name is the leader's member name.
	Name string
	// CreateRevision and Lease are the key's create revision and lease: the
	// fencing token of the tenure.
	CreateRevision int64
	Lease          int64
	// APIURL is the leader's api_url as its member key last published it.
	APIURL string
}

// RewindState is where a node is in the rewind machinery (SPEC 3.12).
type RewindState int

// Rewind states.
const (
	// RewindNone: nothing known or pending.
	RewindNone RewindState = iota
	// RewindCheck: a divergence check against the leader is due.
	RewindCheck
	// RewindNeeded: the timeline diverged; rewind or re-clone before
	// following.
	RewindNeeded
	// RewindNotNeeded: the last check found no divergence.
	RewindNotNeeded
	// RewindDone: pg_rewind succeeded.
	RewindDone
	// RewindFailed: pg_rewind failed.
	RewindFailed
)

// String returns the state's name.
func (s RewindState) String() string {
	switch s {
	case RewindCheck:
		return "check"
	case RewindNeeded:
		return "needed"
	case RewindNotNeeded:
		return "not needed"
	case RewindDone:
		return "done"
	case RewindFailed:
		return "failed"
	}
	return "none"
}

// executed mirrors Patroni's rewind "executed": a rewind was attempted.
func (s RewindState) executed() bool { return s == RewindDone || s == RewindFailed }

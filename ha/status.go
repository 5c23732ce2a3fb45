package ha

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

// Status is an immutable snapshot of what a Node knows about itself, taken at
// the end of a loop cycle (and after role changes). Node.Status returns the
// latest one without taking any lock; never modify a Status you got.
type Status struct {
	// Name and Scope identify the node and its cluster.
	Name, Scope string
	// Version is the pgha version string the node publishes.
	Version string
	// Role is the member role: dcs.RolePrimary, dcs.RoleReplica,
	// dcs.RoleDemoted, dcs.RoleUninitialized, ...
	Role string
	// State is the Postgres state as published (running, starting, stopped,
	// crashed, creating replica, ...).
	State string
	// IsLeader is true while the node holds the leader key and its lease
	// deadline minus the fence margin has not passed.
	IsLeader bool
	// LeaseDeadline is the instant before which no other node can hold the
	// leader key (zero when not leading).
	LeaseDeadline time.Time
	// Postgres facts, from the last observation.
	PostmasterStartTime time.Time
	ServerVersion       int
	Timeline            int64
	SystemID            string
	InRecovery          bool
	// XLogLocation is a primary's flush LSN.
	XLogLocation int64
	// ReceivedLocation and ReplayedLocation are a replica's positions.
	ReceivedLocation, ReplayedLocation int64
	// ReplicationState is "streaming" or "in archive recovery" on replicas.
	ReplicationState string
	// Upstream is the member this replica streams from.
	Upstream string
	// Replication lists the walsenders of a primary.
	Replication []pg.WALSender
	// ReplayedTimestamp and ReplayPaused are a replica's last replayed
	// transaction time and whether replay is paused.
	ReplayedTimestamp *time.Time
	ReplayPaused      bool
	// Tags are the node's effective tags.
	Tags dcs.Tags
	// DCSLastSeen is the last time the DCS answered.
	DCSLastSeen time.Time
	// ClusterUnlocked is true when the last snapshot had no leader key (or
	// there was no snapshot).
	ClusterUnlocked bool
	// LeaderName is the leader in the last snapshot.
	LeaderName string
	// Paused is the cluster's pause flag.
	Paused bool
	// WatchdogFailed is true when the watchdog is required but cannot
	// protect a primary (watchdog_failed in /patroni): the node neither
	// races for nor keeps the leader key.
	WatchdogFailed bool
	// ScheduledRestart is the pending scheduled restart ({"schedule": ...,
	// plus its conditions}), nil when none.
	ScheduledRestart map[string]any
	// FailsafeMode is the dynamic failsafe_mode; FailsafeActive is true
	// while this primary runs on its members' acknowledgement (DCS out of
	// reach) or this replica follows a leader that announced itself by
	// POST /failsafe.
	FailsafeMode, FailsafeActive bool
	// SyncStandby is true for a replica that /sync lists as a synchronous
	// standby while synchronous mode is on.
	SyncStandby bool
	// PendingRestart is true when a parameter change needs a restart.
	PendingRestart bool
	// LastDecision is the last decision's one-line rendering and Blocked the
	// reason automatic failover is blocked ("" when it is not).
	LastDecision string
	Blocked      string
	// LeaderOptime is /status.optime of the last snapshot, the reference
	// for replica lag in health checks.
	LeaderOptime int64
	// TTL and MaximumLagOnFailover are the dynamic settings in force.
	TTL                  time.Duration
	MaximumLagOnFailover int64
	// Taken is when the snapshot was taken (the end of a loop cycle).
	Taken time.Time

	// pgKnown: the Postgres facts come from a successful query of a
	// running server; otherwise /patroni reports only state and role.
	pgKnown bool
}

// pgTimeLayout is how Patroni prints Postgres timestamps in /patroni.
const pgTimeLayout = "2006-01-02 15:04:05.999999-07:00"

// patroniJSON renders the body of GET /patroni and the health checks with
// Patroni's field names and types (SPEC.md 4.3).
func (s *Status) patroniJSON() []byte {
	m := map[string]any{
		"state": s.State,
		"role":  s.Role,
		"patroni": map[string]any{
			"version": s.Version,
			"scope":   s.Scope,
			"name":    s.Name,
		},
	}
	if !s.DCSLastSeen.IsZero() {
		m["dcs_last_seen"] = s.DCSLastSeen.Unix()
	}
	if s.SystemID != "" {
		m["database_system_identifier"] = s.SystemID
	}
	if len(s.Tags) > 0 {
		m["tags"] = s.Tags
	}
	if s.ClusterUnlocked {
		m["cluster_unlocked"] = true
	}
	if s.Paused {
		m["pause"] = true
	}
	if s.WatchdogFailed {
		m["watchdog_failed"] = true
	}
	if s.PendingRestart {
		m["pending_restart"] = true
	}
	if s.SyncStandby && s.InRecovery {
		m["sync_standby"] = true
	}
	if s.ScheduledRestart != nil {
		m["scheduled_restart"] = s.ScheduledRestart
	}
	if s.pgKnown && (s.State == "running" || s.State == "starting" || s.State == "restarting") {
		if !s.PostmasterStartTime.IsZero() {
			m["postmaster_start_time"] = s.PostmasterStartTime.Format(pgTimeLayout)
		}
		if s.ServerVersion != 0 {
			m["server_version"] = s.ServerVersion
		}
		if s.Timeline != 0 {
			m["timeline"] = s.Timeline
		}
		if s.InRecovery {
			m["xlog"] = map[string]any{
				"received_location":  s.ReceivedLocation,
				"replayed_location":  s.ReplayedLocation,
				"replayed_timestamp": nil,
				"paused":             s.ReplayPaused,
			}
			if s.ReplayedTimestamp != nil {
				m["xlog"].(map[string]any)["replayed_timestamp"] = s.ReplayedTimestamp.Format(pgTimeLayout)
			}
			if s.ReplicationState != "" {
				m["replication_state"] = s.ReplicationState
			}
		} else {
			m["xlog"] = map[string]any{"location": s.XLogLocation}
			if len(s.Replication) > 0 {
				m["replication"] = s.Replication
			}
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Only a tag value that JSON cannot encode gets here; report that
		// rather than a half body.
		return []byte(`{"state":` + strconv.Quote(s.State) + `,"role":` + strconv.Quote(s.Role) + `}`)
	}
	return b
}

// applyPostgres sets the Postgres facts of s from an observation.
func (s *Status) applyPostgres(st pg.Status) {
	s.PostmasterStartTime = st.PostmasterStartTime
	if st.ServerVersion != 0 {
		s.ServerVersion = st.ServerVersion
	}
	s.Replication = st.Replication
	s.ReplayedTimestamp, s.ReplayPaused = st.ReplayTimestamp, st.ReplayPaused
	s.Timeline = int64(st.Timeline)
	s.InRecovery = st.Role != "" && st.Role != pg.RolePrimary
	s.XLogLocation, s.ReceivedLocation, s.ReplayedLocation, s.ReplicationState = 0, 0, 0, ""
	s.pgKnown = st.Running && st.Role != ""
	if st.SystemID != 0 {
		s.SystemID = strconv.FormatUint(st.SystemID, 10)
	}
	switch {
	case st.Running && st.Role == pg.RolePrimary:
		s.XLogLocation = int64(st.FlushLSN)
	case st.Running && st.Role != "":
		s.ReceivedLocation, s.ReplayedLocation = int64(st.ReceiveLSN), int64(st.ReplayLSN)
		s.ReplicationState = "in archive recovery"
		if w := st.WALReceiver; w != nil {
			s.ReceivedLocation = max(s.ReceivedLocation, int64(w.FlushedLSN))
			s.LeaderOptime = max(s.LeaderOptime, int64(w.LatestEndLSN))
			if w.Status == "streaming" {
				s.ReplicationState = "streaming"
			}
		}
	}
}

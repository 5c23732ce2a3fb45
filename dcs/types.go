package dcs

import (
	"slices"
	"strings"
	"time"
)

// KeyValue is one raw key of the cluster as a store holds it. Stores keep these
// and turn them into a Cluster with BuildCluster, so every Store decodes the same
// way.
type KeyValue struct {
	// Key is relative to the cluster prefix, e.g. "leader" or "members/node1".
	Key   string
	Value []byte
	// CreateRevision is the store revision at which the key was created.
	CreateRevision int64
	// ModRevision is the store revision of the key's last write. It is the
	// "version" Patroni compares in its CAS writes.
	ModRevision int64
	// Lease is the lease the key is attached to, or 0.
	Lease int64
}

// Cluster is an immutable snapshot of everything under one cluster's prefix,
// decoded. Absent keys are nil (or empty). Never modify a Cluster you did not
// build: stores share snapshots between readers.
type Cluster struct {
	// Revision is the store revision the snapshot reflects.
	Revision int64
	// Initialize is the /initialize key, nil when absent.
	Initialize *Initialize
	// Config is the /config key, nil when absent.
	Config *Config
	// Leader is the /leader key, nil when absent.
	Leader *Leader
	// Members are the members/<name> keys, sorted by name.
	Members []Member
	// Failover is the /failover key, nil when absent. A present key may hold
	// an empty request ({}); see Failover.IsEmpty.
	Failover *Failover
	// Sync is the /sync key, nil when absent.
	Sync *SyncState
	// History is the /history key, nil when absent.
	History *History
	// Status is the /status key, or the legacy optime/leader when /status is
	// absent. Zero when both are absent.
	Status Status
	// Failsafe is the /failsafe key, nil when absent.
	Failsafe *Failsafe
	// DecodeErrors lists every stored value that could not be decoded; each
	// wraps ErrInvalidValue and names the key. The documented default was used
	// in place of the bad value.
	DecodeErrors []error
}

// Member returns the member with the given name.
func (c *Cluster) Member(name string) (Member, bool) {
	if c == nil {
		return Member{}, false
	}
	for _, m := range c.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// LeaderName returns the leader's name, or "" when the cluster has no leader.
func (c *Cluster) LeaderName() string {
	if c == nil || c.Leader == nil {
		return ""
	}
	return c.Leader.Name
}

// IsLocked reports whether some node holds the leader key.
func (c *Cluster) IsLocked() bool { return c.LeaderName() != "" }

// Timeline is the cluster timeline as Patroni derives it from /history: 0 when
// the key is absent or unparsable, 1 for an empty history, else the last line's
// timeline + 1.
func (c *Cluster) Timeline() int64 {
	if c == nil || c.History == nil || !c.History.Valid {
		return 0
	}
	if len(c.History.Lines) == 0 {
		return 1
	}
	return c.History.Lines[len(c.History.Lines)-1].Timeline + 1
}

// Initialize is the /initialize key: the PostgreSQL system identifier of the
// cluster, or "" while the winner of the bootstrap race is still running initdb.
type Initialize struct {
	SysID       string
	ModRevision int64
}

// InProgress reports whether a bootstrap is under way (the key exists but holds
// no system identifier yet).
func (i *Initialize) InProgress() bool { return i != nil && i.SysID == "" }

// Config is the /config key: the dynamic configuration as a JSON object.
type Config struct {
	// Data is the decoded object. Numbers are json.Number. Never nil in a
	// decoded Config: invalid JSON decodes to an empty object.
	Data map[string]any
	// ModRevision is the key's version, for CAS writes with IfRevision.
	ModRevision int64
}

// Dynamic returns the typed view of the dynamic configuration with Patroni's
// defaults and parse rules applied. See DynamicConfig.
func (c *Config) Dynamic() DynamicConfig {
	if c == nil {
		return ParseDynamicConfig(nil)
	}
	return ParseDynamicConfig(c.Data)
}

// Leader is the /leader key and the token that fences leader-only writes.
type Leader struct {
	// Name is the member name stored in the key.
	Name string
	// ModRevision is the key's version.
	ModRevision int64
	// CreateRevision identifies this tenure: it changes every time the key is
	// created anew, so two leaders never share it.
	CreateRevision int64
	// Lease is the lease the key is attached to (Patroni's "session").
	Lease int64
	// Member is the leader's member key, or a Member with only Name set when the
	// member key is missing.
	Member Member
}

// Member is one members/<name> key.
type Member struct {
	Name        string
	ModRevision int64
	Lease       int64
	Data        MemberData
}

// MemberData is the JSON a node publishes about itself in its member key,
// field for field as Patroni writes it (SPEC.md 1.3). Optional fields are
// omitted when zero, as Patroni omits them.
type MemberData struct {
	ConnURL                string                   `json:"conn_url"`
	APIURL                 string                   `json:"api_url"`
	State                  string                   `json:"state"`
	Role                   string                   `json:"role"`
	Version                string                   `json:"version"`
	ProxyURL               string                   `json:"proxy_url,omitempty"`
	CheckpointAfterPromote *bool                    `json:"checkpoint_after_promote,omitempty"`
	Tags                   Tags                     `json:"tags,omitempty"`
	PendingRestart         bool                     `json:"pending_restart,omitempty"`
	PendingRestartReason   map[string]PendingChange `json:"pending_restart_reason,omitempty"`
	XLogLocation           *int64                   `json:"xlog_location,omitempty"`
	ReceiveLSN             *int64                   `json:"receive_lsn,omitempty"`
	ReplayLSN              *int64                   `json:"replay_lsn,omitempty"`
	ReplicationState       string                   `json:"replication_state,omitempty"`
	Timeline               int64                    `json:"timeline,omitempty"`
	ScheduledRestart       map[string]any           `json:"scheduled_restart,omitempty"`
	Pause                  bool                     `json:"pause,omitempty"`
}

// PendingChange is one entry of pending_restart_reason.
type PendingChange struct {
	OldValue string `json:"old_value"`
	NewValue string `json:"new_value"`
}

// Member roles as published in member keys. Older Patroni wrote RoleMaster for
// a primary; IsPrimaryRole accepts both.
const (
	RolePrimary       = "primary"
	RoleMaster        = "master"
	RoleReplica       = "replica"
	RoleStandbyLeader = "standby_leader"
	RoleDemoted       = "demoted"
	RoleUninitialized = "uninitialized"
	RolePromoted      = "promoted"
)

// IsPrimaryRole reports whether role names a primary (either spelling).
func IsPrimaryRole(role string) bool { return role == RolePrimary || role == RoleMaster }

// Position returns the member's WAL position as published (xlog_location), or
// 0 when it did not publish one.
func (d MemberData) Position() int64 {
	if d.XLogLocation == nil {
		return 0
	}
	return *d.XLogLocation
}

// Tags are a member's tags: Patroni's known ones have typed accessors, custom
// ones are kept as decoded.
type Tags map[string]any

// Bool returns a boolean tag with Patroni's parse_bool rules (true, "on",
// "yes", "1", ...); absent or unparsable is false.
func (t Tags) Bool(name string) bool {
	b, ok := parseBool(t[name])
	return ok && b
}

// Int returns an integer tag, and whether it was present and parsable.
func (t Tags) Int(name string) (int64, bool) { return parseInt(t[name]) }

// String returns a string tag ("" when absent or not a string).
func (t Tags) String(name string) string {
	s, _ := t[name].(string)
	return s
}

// NoFailover reports the nofailover tag, or failover_priority 0.
func (t Tags) NoFailover() bool {
	if t.Bool("nofailover") {
		return true
	}
	if p, ok := t.Int("failover_priority"); ok && p <= 0 {
		return true
	}
	return false
}

// FailoverPriority returns failover_priority (default 1; 0 when nofailover).
func (t Tags) FailoverPriority() int64 {
	if t.Bool("nofailover") {
		return 0
	}
	if p, ok := t.Int("failover_priority"); ok {
		return max(p, 0)
	}
	return 1
}

// NoLoadBalance reports the noloadbalance tag.
func (t Tags) NoLoadBalance() bool { return t.Bool("noloadbalance") }

// CloneFrom reports the clonefrom tag.
func (t Tags) CloneFrom() bool { return t.Bool("clonefrom") }

// NoSync reports the nosync tag, or sync_priority 0.
func (t Tags) NoSync() bool {
	if t.Bool("nosync") {
		return true
	}
	if p, ok := t.Int("sync_priority"); ok && p <= 0 {
		return true
	}
	return false
}

// ReplicateFrom returns the replicatefrom tag ("" when absent).
func (t Tags) ReplicateFrom() string { return t.String("replicatefrom") }

// Failover is the /failover key: a manual failover or switchover request.
// The zero value is "no request"; it is written as {}.
type Failover struct {
	// Leader is the current leader the request names (switchover), or "".
	Leader string
	// Candidate is the member to promote ("member" in JSON), or "".
	Candidate string
	// ScheduledAt is when a scheduled switchover should happen, or zero.
	ScheduledAt time.Time
	// ModRevision is the key's version (0 for a value not read from a store).
	ModRevision int64
}

// IsEmpty reports whether the value holds no request (neither leader nor
// candidate), as Patroni judges it.
func (f *Failover) IsEmpty() bool { return f == nil || (f.Leader == "" && f.Candidate == "") }

// SyncState is the /sync key: who the primary treats as synchronous standbys.
type SyncState struct {
	// Leader is the primary that wrote the state; "" means the state is empty.
	Leader string
	// Quorum is the quorum size (quorum mode); 0 when Leader is empty.
	Quorum int
	// Standbys are the synchronous standbys, sorted.
	Standbys []string
	// ModRevision is the key's version.
	ModRevision int64
}

// IsEmpty reports whether the state names no leader.
func (s *SyncState) IsEmpty() bool { return s == nil || s.Leader == "" }

// Matches reports whether name is the leader or one of the standbys,
// compared case-insensitively as Patroni does.
func (s *SyncState) Matches(name string) bool {
	if s.IsEmpty() {
		return false
	}
	if strings.EqualFold(s.Leader, name) {
		return true
	}
	return slices.ContainsFunc(s.Standbys, func(v string) bool { return strings.EqualFold(v, name) })
}

// IsStandby reports whether name is listed as a synchronous standby
// (case-insensitive).
func (s *SyncState) IsStandby(name string) bool {
	if s.IsEmpty() {
		return false
	}
	return slices.ContainsFunc(s.Standbys, func(v string) bool { return strings.EqualFold(v, name) })
}

// History is the /history key: one line per timeline switch.
type History struct {
	Lines []HistoryLine
	// Valid is false when the stored value could not be parsed; the cluster
	// timeline is then 0, as in Patroni.
	Valid       bool
	ModRevision int64
}

// HistoryLine is one timeline switch: [timeline, lsn, reason, timestamp,
// new_leader]. Older lines have only the first three or four fields.
type HistoryLine struct {
	Timeline int64
	LSN      int64
	Reason   string
	// Timestamp is kept as written (ISO 8601 with zone); "" when absent.
	Timestamp string
	// NewLeader is the member promoted; "" when absent.
	NewLeader string
}

// Status is the /status key: the leader's last known WAL position and slots.
type Status struct {
	// Optime is the leader's last published WAL position (last_lsn).
	Optime int64
	// Slots maps a slot name to its confirmed position. nil when absent.
	Slots map[string]int64
	// RetainSlots lists slots of members that must be kept.
	RetainSlots []string
	ModRevision int64
}

// Failsafe is the /failsafe key: member name → api_url of every member the
// leader saw when it last wrote the key.
type Failsafe struct {
	Members     map[string]string
	ModRevision int64
}

// Lease is what a Store reports about the node's lease after a successful
// keepalive or leader refresh.
type Lease struct {
	// ID is the lease id in the store.
	ID int64
	// TTL is the lease's time to live as granted.
	TTL time.Duration
	// Sent is the local monotonic time at which the request that refreshed the
	// lease was sent. The store cannot expire the lease before Sent+TTL, so
	// Deadline() bounds how long the node may act as leader.
	Sent time.Time
}

// Deadline is Sent + TTL: the earliest instant at which the store may expire
// the lease, judged by the local monotonic clock.
func (l Lease) Deadline() time.Time { return l.Sent.Add(l.TTL) }

// EventType says what an Event reports.
type EventType int

// Event types.
const (
	// EventPut: a key was created or changed.
	EventPut EventType = iota + 1
	// EventDelete: a key was deleted (or expired with its lease).
	EventDelete
	// EventReset: the watch lost continuity (a reconnect past a compaction,
	// or a slow reader) and was rebuilt; Cluster is a fresh snapshot and
	// individual changes in between are not reported.
	EventReset
)

// String returns "put", "delete" or "reset".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventReset:
		return "reset"
	}
	return "unknown"
}

// Event is one change under the cluster prefix, in store order.
type Event struct {
	Type EventType
	// Key is relative to the cluster prefix; "" for EventReset.
	Key string
	// Value is the new value (EventPut).
	Value []byte
	// Revision is the store revision of the change.
	Revision int64
	// Cluster is the snapshot right after this change.
	Cluster *Cluster
}

// Precondition guards a write of a key that is not leader-fenced.
type Precondition struct {
	kind int
	rev  int64
}

const (
	condAny = iota
	condAbsent
	condRevision
)

// Unconditional writes whatever is there.
var Unconditional = Precondition{}

// IfAbsent writes only if the key does not exist.
func IfAbsent() Precondition { return Precondition{kind: condAbsent} }

// IfRevision writes only if the key's ModRevision is rev (the version the
// caller read). IfRevision(0) is the same as IfAbsent.
func IfRevision(rev int64) Precondition {
	if rev == 0 {
		return IfAbsent()
	}
	return Precondition{kind: condRevision, rev: rev}
}

// Check reports whether a key whose current ModRevision is modRev (0 when
// absent) satisfies the precondition.
func (p Precondition) Check(modRev int64) bool {
	switch p.kind {
	case condAbsent:
		return modRev == 0
	case condRevision:
		return modRev == p.rev
	}
	return true
}

// Kind describes the precondition for stores that translate it:
// "any", "absent" or "revision" with the revision.
func (p Precondition) Kind() (kind string, rev int64) {
	switch p.kind {
	case condAbsent:
		return "absent", 0
	case condRevision:
		return "revision", p.rev
	}
	return "any", 0
}

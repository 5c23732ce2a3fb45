package replication

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

// Slot types as pg_replication_slots.slot_type spells them.
const (
	SlotPhysical = "physical"
	SlotLogical  = "logical"
)

// AdvanceVersion is the first server_version_num with
// pg_replication_slot_advance (PostgreSQL 11): member slot retention,
// advancing and permanent slots on replicas need it.
const AdvanceVersion = 110000

var permanentSlotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// SlotsInput is what DesiredSlots computes a node's slots from.
type SlotsInput struct {
	// Cluster is the DCS snapshot (members, leader, /status, /config).
	Cluster *dcs.Cluster
	// Name is this member's name.
	Name string
	// Role is this node's member role: dcs.RolePrimary (or RoleMaster) and
	// dcs.RoleStandbyLeader keep slots for the members that replicate from
	// the leader; any other role is a replica.
	Role string
	// Tags are this node's tags (nofailover, nostream, replicatefrom).
	Tags dcs.Tags
	// Config is the dynamic configuration in force (use_slots,
	// member_slots_ttl, slots, ignore_slots).
	Config dcs.DynamicConfig
	// ServerVersion is the local server_version_num.
	ServerVersion int
}

// DesiredSlot is one replication slot a node should have.
type DesiredSlot struct {
	// Name is the slot name.
	Name string
	// Type is SlotPhysical (logical slots are not managed yet).
	Type string
	// Member is the member the slot is for ("" for a permanent slot or a
	// retained slot of a member that is gone).
	Member string
	// Permanent is true for a slot from /config "slots".
	Permanent bool
	// Retained is true for the slot of an absent member kept because the
	// leader lists it in /status.retain_slots (member_slots_ttl).
	Retained bool
	// ExpectedActive is true when a standby is expected to stream through
	// the slot from this node: such a slot is never advanced.
	ExpectedActive bool
	// LSN is the position an inactive slot may be advanced to (the
	// leader's published position of the slot, /status.slots, or the
	// member's own position for a cascading member); 0 when none is known.
	LSN int64
}

// Desired is the slot set DesiredSlots computed, with the configuration
// problems it met (bad permanent slot names, logical permanent slots,
// members whose slot names collide).
type Desired struct {
	Slots    map[string]DesiredSlot
	Problems []string
}

// Names returns the desired slot names, sorted.
func (d Desired) Names() []string {
	out := make([]string, 0, len(d.Slots))
	for n := range d.Slots {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isLeaderRole(role string) bool {
	return dcs.IsPrimaryRole(role) || role == dcs.RoleStandbyLeader
}

// DesiredSlots computes the physical replication slots this node should
// have (Patroni's Cluster.get_replication_slots, SPEC 8.2):
//
//   - With use_slots off: none (and pgha then leaves existing slots alone).
//   - Member slots. On PostgreSQL 11+ with member_slots_ttl > 0 every node
//     keeps a slot for every other member, so that whichever node becomes
//     primary already holds WAL for the others (a nofailover node only for
//     the members that replicate from it); otherwise the primary keeps
//     slots for the members that replicate from it (no replicatefrom, or
//     replicatefrom naming it or a member that does not exist) and a
//     replica only for the members whose replicatefrom names it. Members
//     tagged nostream get no slot anywhere.
//   - Retained slots: names in /status.retain_slots (absent members within
//     member_slots_ttl), except on nofailover nodes.
//   - Permanent physical slots from /config "slots" on every node that can
//     become primary (not nofailover; on PostgreSQL < 11 only on the
//     primary), except the slot named after the node itself. Permanent
//     logical slots are not supported yet: they are reported in Problems
//     and not created.
//
// A slot not expected to be active on this node carries the LSN it may be
// advanced to.
func DesiredSlots(in SlotsInput) Desired {
	d := Desired{Slots: map[string]DesiredSlot{}}
	cfg := in.Config
	if !cfg.UseSlots {
		return d
	}
	c := in.Cluster
	if c == nil {
		c = &dcs.Cluster{}
	}
	canAdvance := in.ServerVersion >= AdvanceVersion
	leaderLike := isLeaderRole(in.Role)
	nofailover := in.Tags.NoFailover()
	me := pg.SlotName(in.Name)
	has := func(name string) bool { _, ok := c.Member(name); return ok }

	var candidates []dcs.Member
	for _, m := range c.Members {
		if m.Name != in.Name && !m.Data.Tags.Bool("nostream") {
			candidates = append(candidates, m)
		}
	}
	leaderFilter := func(m dcs.Member) bool {
		rf := m.Data.Tags.ReplicateFrom()
		return rf == "" || rf == in.Name || !has(rf)
	}
	replicaFilter := func(m dcs.Member) bool {
		return m.Data.Tags.ReplicateFrom() == in.Name && m.Name != c.LeaderName()
	}
	expected := replicaFilter
	if leaderLike {
		expected = leaderFilter
	}
	retention := canAdvance && cfg.MemberSlotsTTL > 0
	var members []dcs.Member
	for _, m := range candidates {
		if retention {
			if !nofailover || m.Data.Tags.ReplicateFrom() == in.Name {
				members = append(members, m)
			}
		} else if expected(m) {
			members = append(members, m)
		}
	}
	published := c.Status.Slots
	byName := map[string][]string{}
	for _, m := range members {
		name := pg.SlotName(m.Name)
		byName[name] = append(byName[name], m.Name)
		lsn := published[name]
		if m.Data.Tags.ReplicateFrom() != "" || len(published) == 0 {
			// The leader's slot for a cascading member does not move (the
			// member streams from someone else), and a leader that
			// publishes no slots gives no position: use the member's own.
			lsn = max(lsn, m.Data.Position())
		}
		d.Slots[name] = DesiredSlot{Name: name, Type: SlotPhysical, Member: m.Name, ExpectedActive: expected(m), LSN: lsn}
	}
	for _, name := range slices.Sorted(mapKeys(byName)) {
		if ms := byName[name]; len(ms) > 1 {
			d.Problems = append(d.Problems, fmt.Sprintf("members %v share the replication slot name %q", ms, name))
		}
	}
	if !nofailover {
		for _, name := range c.Status.RetainSlots {
			if _, ok := d.Slots[name]; !ok && name != me && permanentSlotName.MatchString(name) {
				d.Slots[name] = DesiredSlot{Name: name, Type: SlotPhysical, Retained: true}
			}
		}
	}

	if nofailover || (!canAdvance && !leaderLike) {
		return d
	}
	topology := map[string]string{}
	cascadeLSN := map[string]int64{}
	for _, m := range c.Members {
		rf := m.Data.Tags.ReplicateFrom()
		if rf != "" {
			topology[pg.SlotName(m.Name)] = pg.SlotName(rf)
			cascadeLSN[pg.SlotName(m.Name)] = m.Data.Position()
		}
	}
	for _, name := range slices.Sorted(mapKeys(cfg.Slots)) {
		kind, problem := PermanentSlotType(cfg.Slots[name])
		switch {
		case !permanentSlotName.MatchString(name):
			d.Problems = append(d.Problems, fmt.Sprintf("permanent slot %q: invalid name (only [a-z0-9_], at most 63 characters)", name))
			continue
		case problem != "":
			d.Problems = append(d.Problems, fmt.Sprintf("permanent slot %q: %s", name, problem))
			continue
		case kind == SlotLogical:
			d.Problems = append(d.Problems, fmt.Sprintf("permanent slot %q: logical permanent slots are not supported by pgha yet; not created", name))
			continue
		}
		if ct := clusterType(cfg.Slots[name]); ct == "standby" {
			continue // only for standby clusters, which pgha does not run
		}
		if _, ok := d.Slots[name]; ok || name == me {
			continue
		}
		d.Slots[name] = DesiredSlot{Name: name, Type: SlotPhysical, Permanent: true,
			ExpectedActive: topology[name] == "" && leaderLike,
			LSN:            max(cascadeLSN[name], published[name])}
	}
	return d
}

// PermanentSlotType classifies a /config "slots" entry the way Patroni
// does: null or {} or {"type":"physical"} is physical; an entry with
// database and plugin (and type absent or "logical") is logical; anything
// else is a problem, described.
func PermanentSlotType(v any) (kind, problem string) {
	if v == nil {
		return SlotPhysical, ""
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Sprintf("bad value %v (want an object)", v)
	}
	t, _ := m["type"].(string)
	hasDB := truthyString(m["database"]) && truthyString(m["plugin"])
	switch {
	case t == "" && hasDB, t == SlotLogical && hasDB:
		return SlotLogical, ""
	case t == "", t == SlotPhysical:
		return SlotPhysical, ""
	case t == SlotLogical:
		return "", "a logical slot needs database and plugin"
	}
	return "", fmt.Sprintf("unknown type %q", t)
}

func clusterType(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["cluster_type"].(string)
	return s
}

func truthyString(v any) bool {
	s, ok := v.(string)
	return ok && s != ""
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// IgnoreSlot reports whether slot matches one of the ignore_slots
// matchers of /config: each matcher is an object whose present fields
// (name, type, database, plugin) must all equal the slot's. Slots that
// match are never dropped.
func IgnoreSlot(ignore []any, slot pg.ReplicationSlot) bool {
	for _, x := range ignore {
		m, ok := x.(map[string]any)
		if !ok {
			continue
		}
		match := true
		for field, have := range map[string]string{"name": slot.Name, "type": slot.Type, "database": slot.Database, "plugin": slot.Plugin} {
			want, present := m[field]
			if !present || want == nil || want == "" {
				continue
			}
			if fmt.Sprint(want) != have {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// ActionKind is what a SlotAction does.
type ActionKind int

// Slot actions.
const (
	// ActionCreate creates a physical slot (reserving WAL at once).
	ActionCreate ActionKind = iota + 1
	// ActionDrop drops a slot.
	ActionDrop
	// ActionAdvance advances an inactive physical slot to LSN.
	ActionAdvance
)

// String returns "create", "drop" or "advance".
func (k ActionKind) String() string {
	switch k {
	case ActionCreate:
		return "create"
	case ActionDrop:
		return "drop"
	case ActionAdvance:
		return "advance"
	}
	return "unknown"
}

// SlotAction is one change PlanSlots asks for.
type SlotAction struct {
	Kind   ActionKind
	Slot   string
	LSN    pg.LSN // ActionAdvance: the target
	Reason string
}

// String renders the action for logs.
func (a SlotAction) String() string {
	s := a.Kind.String() + " " + a.Slot
	if a.Kind == ActionAdvance {
		s += " to " + a.LSN.String()
	}
	if a.Reason != "" {
		s += " (" + a.Reason + ")"
	}
	return s
}

// PlanInput is what PlanSlots compares.
type PlanInput struct {
	// Desired is the slot set DesiredSlots computed.
	Desired Desired
	// Existing are the node's slots (pg_replication_slots).
	Existing []pg.ReplicationSlot
	// Paused: the cluster is paused; no slot is dropped for being
	// unknown or lost.
	Paused bool
	// IgnoreSlots are /config's ignore_slots matchers.
	IgnoreSlots []any
	// ServerVersion is the local server_version_num (advancing needs
	// AdvanceVersion).
	ServerVersion int
	// CleanXmin: drop physical slots that are not expected to be active
	// but hold an xmin (nothing would ever release it). Patroni does it
	// when the cluster has a leader and this node is it (running as
	// primary) or follows it.
	CleanXmin bool
	// MaxLSN caps advancing (a replica's replay position: a standby cannot
	// advance a slot past what it replayed). 0 means no cap.
	MaxLSN pg.LSN
}

// PlanSlots compares the desired slots with the existing ones and returns
// the changes, drops first (SPEC 8.2 drop rules): slots that are not
// desired (unless paused, ignored by ignore_slots, or temporary); desired
// physical slots that exist as logical ones; lost slots (wal_status
// "lost", the WAL they need is gone: they are recreated); physical slots
// with no restart_lsn that should be advanced (created by someone else
// without reserving WAL); inactive-expected slots holding an xmin (when
// CleanXmin). Then it creates missing slots and advances inactive
// physical slots that are not expected to be active to their published
// position when it is ahead of theirs.
func PlanSlots(in PlanInput) []SlotAction {
	var drops, creates, advances []SlotAction
	have := map[string]pg.ReplicationSlot{}
	canAdvance := in.ServerVersion >= AdvanceVersion
	for _, s := range in.Existing {
		if s.Temporary {
			continue
		}
		have[s.Name] = s
		want, desired := in.Desired.Slots[s.Name]
		switch {
		case !desired:
			if !in.Paused && !IgnoreSlot(in.IgnoreSlots, s) {
				drops = append(drops, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "not a slot of this cluster"})
			}
		case s.Type != want.Type:
			drops = append(drops, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "it is " + s.Type + ", want " + want.Type})
		case s.WALStatus == "lost":
			if !in.Paused {
				drops = append(drops, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "its WAL is lost; recreating it"})
			}
		case canAdvance && in.CleanXmin && !want.ExpectedActive && s.HasXmin && !s.Active:
			drops = append(drops, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "not expected to be active but holds an xmin"})
		case canAdvance && !want.ExpectedActive && !s.Active && s.RestartLSN == 0:
			drops = append(drops, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "it reserves no WAL (not created by pgha); recreating it"})
		case canAdvance && !want.ExpectedActive && !s.Active && !s.HasXmin && want.LSN > 0:
			target := pg.LSN(want.LSN)
			if in.MaxLSN > 0 {
				target = min(target, in.MaxLSN)
			}
			if target > s.RestartLSN {
				advances = append(advances, SlotAction{Kind: ActionAdvance, Slot: s.Name, LSN: target})
			}
		}
	}
	for _, name := range in.Desired.Names() {
		if _, ok := have[name]; !ok {
			creates = append(creates, SlotAction{Kind: ActionCreate, Slot: name, Reason: describe(in.Desired.Slots[name])})
		}
	}
	sortActions(drops)
	sortActions(advances)
	return append(append(drops, creates...), advances...)
}

func describe(s DesiredSlot) string {
	switch {
	case s.Member != "":
		return "member " + s.Member
	case s.Permanent:
		return "permanent"
	case s.Retained:
		return "retained for an absent member"
	}
	return ""
}

func sortActions(a []SlotAction) {
	sort.Slice(a, func(i, j int) bool { return a[i].Slot < a[j].Slot })
}

// PublishedSlots is what the leader publishes in /status.slots (SPEC 8.2,
// PostgreSQL 11+ only, nil otherwise): the restart_lsn of each physical
// slot in the desired set that exists on it, plus its own slot name at
// its current WAL position (other nodes advance their slot for it to that).
// With member_slots_ttl 0 only permanent slots are published (its own name
// only if it is a permanent slot).
func PublishedSlots(d Desired, existing []pg.ReplicationSlot, me string, current pg.LSN, cfg dcs.DynamicConfig, serverVersion int) map[string]int64 {
	if serverVersion < AdvanceVersion || !cfg.UseSlots {
		return nil
	}
	out := map[string]int64{}
	for _, s := range existing {
		want, ok := d.Slots[s.Name]
		if !ok || s.Type != SlotPhysical || s.Temporary || s.RestartLSN == 0 {
			continue
		}
		if cfg.MemberSlotsTTL == 0 && !want.Permanent {
			continue
		}
		out[s.Name] = int64(s.RestartLSN)
	}
	own := pg.SlotName(me)
	if kind, _ := PermanentSlotType(cfg.Slots[own]); current > 0 {
		if _, permanent := cfg.Slots[own]; cfg.MemberSlotsTTL > 0 || (permanent && kind == SlotPhysical) {
			out[own] = int64(current)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Retention tracks, on the leader, the member slots it has seen so it can
// keep publishing them in /status.retain_slots for member_slots_ttl after
// their member disappeared (Patroni's _build_retain_slots). The zero value
// is ready; not safe for concurrent use.
type Retention struct {
	seen map[string]time.Time
}

// Reset restarts the clock of every name in retain at now. Call it when
// the node becomes leader, with the /status.retain_slots it inherited: the
// previous leader's timers are unknown.
func (r *Retention) Reset(retain []string, now time.Time) {
	r.seen = make(map[string]time.Time, len(retain))
	for _, n := range retain {
		r.seen[n] = now
	}
}

// Update records, at now, the published slots (PublishedSlots) that belong
// to current members (not nostream; the leader itself counts as one),
// except permanent slots, then forgets names not seen for ttl. It returns
// the names to publish in /status.retain_slots, sorted, nil when none.
func (r *Retention) Update(c *dcs.Cluster, me string, published map[string]int64, permanent map[string]any, ttl time.Duration, now time.Time) []string {
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if len(published) > 0 {
		members := map[string]bool{pg.SlotName(me): true}
		if c != nil {
			for _, m := range c.Members {
				if !m.Data.Tags.Bool("nostream") {
					members[pg.SlotName(m.Name)] = true
				} else if m.Name == me {
					delete(members, pg.SlotName(me))
				}
			}
		}
		for name := range published {
			if _, perm := permanent[name]; members[name] && !perm {
				r.seen[name] = now
			}
		}
	}
	var out []string
	for name, at := range r.seen {
		if !at.Add(ttl).After(now) {
			delete(r.seen, name)
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// PlanSlotsDisabled is PlanSlots for a cluster whose use_slots is off:
// pgha drops the inactive physical slots named after members (or listed in
// /status.retain_slots), which it created while slots were on and which no
// replica streams through any more, so they would hold WAL forever. Other
// slots are left alone: unlike Patroni, which drops every slot not matched
// by ignore_slots when use_slots is off. Nothing is dropped while paused.
func PlanSlotsDisabled(c *dcs.Cluster, existing []pg.ReplicationSlot, paused bool, ignore []any) []SlotAction {
	if paused || c == nil {
		return nil
	}
	owned := map[string]bool{}
	for _, m := range c.Members {
		owned[pg.SlotName(m.Name)] = true
	}
	for _, s := range c.Status.RetainSlots {
		owned[s] = true
	}
	var out []SlotAction
	for _, s := range existing {
		if owned[s.Name] && s.Type == SlotPhysical && !s.Active && !s.Temporary && !IgnoreSlot(ignore, s) {
			out = append(out, SlotAction{Kind: ActionDrop, Slot: s.Name, Reason: "use_slots is off"})
		}
	}
	sortActions(out)
	return out
}

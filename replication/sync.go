package replication

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

// Candidate is a standby as the synchronous-mode planner sees it: a row of
// the primary's pg_stat_replication joined with the member's key.
type Candidate struct {
	// Name is the member name (the WAL sender's application_name).
	Name string
	// Streaming is true when the WAL sender is in state "streaming".
	Streaming bool
	// SyncState is pg_stat_replication.sync_state ("async", "potential",
	// "sync", "quorum").
	SyncState string
	// LSN is the standby's position that synchronous_commit waits for:
	// replay for remote_apply, write for remote_write, flush otherwise.
	LSN int64
	// Priority is the member's sync_priority tag (default 1).
	Priority int
	// NoFailover is the member's nofailover tag: such a member is picked
	// last.
	NoFailover bool
}

// SyncInput is what one planning step is made from.
type SyncInput struct {
	// Leader is this node, the primary holding the leader key.
	Leader string
	// Mode is the dynamic configuration's synchronous_mode (dcs.SyncOff,
	// dcs.SyncOn, dcs.SyncQuorum).
	Mode string
	// Strict is synchronous_mode_strict.
	Strict bool
	// NodeCount is synchronous_node_count (at least 1).
	NodeCount int
	// MaxLag is maximum_lag_on_syncnode in bytes; <= 0 disables it.
	MaxLag int64
	// Sync is the /sync key (nil when absent).
	Sync *dcs.SyncState
	// Names is the synchronous_standby_names in force on the primary.
	Names Names
	// Managed is true when pgha currently manages synchronous_standby_names
	// (pgha.sync.conf holds a value).
	Managed bool
	// Candidates are the eligible standbys (see [Candidates]).
	Candidates []Candidate
	// PrimaryLSN is the primary's flush position now.
	PrimaryLSN int64
	// ConfirmLSN is the primary's flush position taken once the last change
	// of synchronous_standby_names had settled. A standby that is not in
	// /sync yet counts as synchronous only once it has reached it: every
	// commit acknowledged before is then on it, and every later one waited
	// for it.
	ConfirmLSN int64
}

// StepKind is what a planning step asks for.
type StepKind int

// Step kinds.
const (
	// StepNone: nothing to change.
	StepNone StepKind = iota
	// StepWriteSync: write /sync = Step.Sync, conditional on the revision
	// of SyncInput.Sync (absent: create only).
	StepWriteSync
	// StepDeleteSync: delete /sync, conditional on its revision.
	StepDeleteSync
	// StepSetNames: set synchronous_standby_names to Step.Names, then take
	// a new ConfirmLSN once it has settled.
	StepSetNames
	// StepClearNames: stop managing synchronous_standby_names.
	StepClearNames
	// StepWait: the names are set but the picked standbys are not
	// confirmed synchronous yet; look again shortly.
	StepWait
)

var stepNames = [...]string{"none", "write /sync", "delete /sync", "set synchronous_standby_names", "clear synchronous_standby_names", "wait"}

// String returns the step kind's name.
func (k StepKind) String() string {
	if int(k) < len(stepNames) {
		return stepNames[k]
	}
	return fmt.Sprintf("StepKind(%d)", int(k))
}

// Step is one change, in the order the safety rule allows.
type Step struct {
	Kind StepKind
	// Sync is the value to write for StepWriteSync.
	Sync dcs.SyncState
	// Names is the value to set for StepSetNames.
	Names Names
	// Reason says why, for the log.
	Reason string
}

// NextSyncStep returns the next change synchronous mode needs, or
// StepNone. Apply it, read the state again and call NextSyncStep again
// until it returns StepNone or StepWait (a few steps per HA cycle).
//
// The rule it keeps (SPEC.md 8.3, stricter than Patroni): every standby
// named in /sync is waited for by every commit (synchronous_standby_names
// lists exactly the picked standbys and waits for all of them) and has every
// commit acknowledged since it joined. So a standby is added to the names
// first and to /sync only once confirmed; it leaves /sync before it leaves
// the names. A new primary's /sync lists no standby until one is confirmed,
// so only /sync members can be promoted without losing acknowledged
// commits.
//
// Quorum mode is not planned here yet: NextSyncStep treats dcs.SyncQuorum
// like dcs.SyncOn, so a quorum cluster runs in priority mode (every picked
// standby waited for), which keeps the same guarantee.
func NextSyncStep(in SyncInput) Step {
	if in.Mode == "" || in.Mode == dcs.SyncOff {
		switch {
		case in.Sync != nil:
			return Step{Kind: StepDeleteSync, Reason: "synchronous mode is off: removing /sync"}
		case in.Managed:
			return Step{Kind: StepClearNames, Reason: "synchronous mode is off: synchronous_standby_names back to the configured value"}
		}
		return Step{}
	}
	// 1. /sync must name me as leader before anything else.
	if in.Sync.IsEmpty() || !strings.EqualFold(in.Sync.Leader, in.Leader) {
		return Step{Kind: StepWriteSync, Sync: dcs.SyncState{Leader: in.Leader},
			Reason: "enabling synchronous replication: /sync names me as leader, no standby yet"}
	}
	picked := pick(in)
	confirmed := confirmedSet(in)
	current := lowerSet(in.Sync.Standbys)

	// 2. Remove from /sync first: members no longer confirmed or picked.
	keep := intersect(current, intersect(confirmed, picked))
	if !slices.Equal(keep, current) {
		return Step{Kind: StepWriteSync, Sync: dcs.SyncState{Leader: in.Leader, Standbys: keep},
			Reason: fmt.Sprintf("removing %v from /sync (picked %v, confirmed synchronous %v)", minus(current, keep), picked, confirmed)}
	}
	// 3. Then make the names exactly the picked standbys.
	want := Names{Num: len(picked), Standbys: picked}
	if len(picked) == 0 && in.Strict {
		want = Names{Num: 1, Standbys: []string{StrictPlaceholder}}
	}
	if !in.Managed || !sameNames(in.Names, want) {
		reason := fmt.Sprintf("synchronous_standby_names %q -> %q", in.Names.String(), want.String())
		if len(picked) == 0 {
			if in.Strict {
				reason += " (strict: no standby can be synchronous, commits wait)"
			} else {
				reason += " (no standby can be synchronous: the primary runs alone; only it may be promoted)"
			}
		}
		return Step{Kind: StepSetNames, Names: want, Reason: reason}
	}
	// 4. Add the picked standbys that are confirmed.
	add := intersect(picked, confirmed)
	if !slices.Equal(add, current) {
		return Step{Kind: StepWriteSync, Sync: dcs.SyncState{Leader: in.Leader, Standbys: add},
			Reason: fmt.Sprintf("synchronous standbys %v confirmed: writing /sync", add)}
	}
	if len(add) < len(picked) {
		return Step{Kind: StepWait, Reason: fmt.Sprintf("waiting for %v to become synchronous", minus(picked, add))}
	}
	return Step{}
}

// pick chooses up to NodeCount streaming standbys: highest sync_priority first,
// current synchronous ones before others, most advanced first, nofailover
// members last; maximum_lag_on_syncnode drops those too far behind.
func pick(in SyncInput) []string {
	// Only streaming standbys: a WAL sender in startup or catchup (a standby
	// that connects and fails, say, because its timeline diverged) comes and
	// goes, and picking it would make the names flap.
	cs := slices.DeleteFunc(slices.Clone(in.Candidates), func(c Candidate) bool { return !c.Streaming })
	rank := func(s string) int {
		switch s {
		case "sync", "quorum":
			return 0
		case "potential":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(cs, func(a, b Candidate) int {
		switch {
		case a.NoFailover != b.NoFailover:
			if a.NoFailover {
				return 1
			}
			return -1
		case a.Priority != b.Priority:
			return b.Priority - a.Priority
		case rank(a.SyncState) != rank(b.SyncState):
			return rank(a.SyncState) - rank(b.SyncState)
		case a.LSN != b.LSN:
			if a.LSN > b.LSN {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if in.MaxLag > 0 && len(cs) > 0 {
		ref := in.PrimaryLSN
		if len(cs) > 1 {
			ref = 0
			for _, c := range cs {
				ref = max(ref, c.LSN)
			}
		}
		cs = slices.DeleteFunc(cs, func(c Candidate) bool { return ref-c.LSN > in.MaxLag })
	}
	n := max(in.NodeCount, 1)
	var out []string
	for _, c := range cs {
		if len(out) == n {
			break
		}
		out = append(out, strings.ToLower(c.Name))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// confirmedSet is the standbys that hold every acknowledged commit and are
// waited for: listed in the names in force (which wait for all of them),
// reported synchronous, and past ConfirmLSN (or already in /sync, which
// they joined that way).
func confirmedSet(in SyncInput) []string {
	if !in.Managed || !in.Names.WaitsForAll() {
		return nil
	}
	var out []string
	for _, c := range in.Candidates {
		if !c.Streaming || !in.Names.Has(c.Name) || (c.SyncState != "sync" && c.SyncState != "quorum") {
			continue
		}
		if c.LSN >= in.ConfirmLSN || in.Sync.IsStandby(c.Name) {
			out = append(out, strings.ToLower(c.Name))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Candidates joins the primary's WAL senders with the member keys: only
// members that run, stream from this primary, are not tagged nosync (or
// sync_priority 0) and do not cascade from another member can be
// synchronous. syncCommit is the synchronous_commit setting, which decides
// the position compared.
func Candidates(c *dcs.Cluster, me string, senders []pg.SyncStandby, syncCommit string) []Candidate {
	var out []Candidate
	for _, s := range senders {
		if s.Name == "" || strings.EqualFold(s.Name, me) {
			continue
		}
		m, ok := memberFold(c, s.Name)
		if !ok || m.Data.State != "running" {
			continue
		}
		tags := m.Data.Tags
		if tags.NoSync() {
			continue
		}
		if rf := tags.String("replicatefrom"); rf != "" && !strings.EqualFold(rf, me) {
			if _, exists := memberFold(c, rf); exists {
				continue
			}
		}
		lsn := s.FlushLSN
		switch syncCommit {
		case "remote_apply":
			lsn = s.ReplayLSN
		case "remote_write":
			lsn = s.WriteLSN
		}
		prio := 1
		if p, ok := tags.Int("sync_priority"); ok {
			prio = int(p)
		}
		out = append(out, Candidate{Name: m.Name, Streaming: s.State == "streaming", SyncState: s.SyncState,
			LSN: int64(lsn), Priority: prio, NoFailover: tags.NoFailover()})
	}
	return out
}

func memberFold(c *dcs.Cluster, name string) (dcs.Member, bool) {
	if c == nil {
		return dcs.Member{}, false
	}
	for _, m := range c.Members {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return dcs.Member{}, false
}

// PromoteSync is the /sync a node that won the leader key writes before it
// promotes (SPEC.md 3.16): itself as leader and, in strict mode, the other
// standbys of the old /sync (they hold every acknowledged commit, and
// commits on the new primary will wait for them until the new primary's
// own planning confirms or replaces them); in non-strict mode no
// standby until the new primary confirms one. names is the
// synchronous_standby_names to set before promoting.
func PromoteSync(me string, old *dcs.SyncState, strict bool) (s dcs.SyncState, names Names) {
	s.Leader = me
	if strict {
		if !old.IsEmpty() {
			for _, n := range old.Standbys {
				if !strings.EqualFold(n, me) {
					s.Standbys = append(s.Standbys, strings.ToLower(n))
				}
			}
		}
		slices.Sort(s.Standbys)
		s.Standbys = slices.Compact(s.Standbys)
		if len(s.Standbys) == 0 {
			return s, Names{Num: 1, Standbys: []string{StrictPlaceholder}}
		}
		return s, Names{Num: len(s.Standbys), Standbys: slices.Clone(s.Standbys)}
	}
	return s, Names{}
}

func sameNames(a, b Names) bool {
	if a.IsEmpty() || b.IsEmpty() {
		return a.IsEmpty() && b.IsEmpty()
	}
	return a.Quorum == b.Quorum && a.Num == b.Num && slices.Equal(a.Set(), b.Set())
}

func lowerSet(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		out = append(out, strings.ToLower(v))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func intersect(a, b []string) []string {
	out := []string{}
	for _, v := range a {
		if slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out
}

func minus(a, b []string) []string {
	out := []string{}
	for _, v := range a {
		if !slices.Contains(b, v) {
			out = append(out, v)
		}
	}
	return out
}

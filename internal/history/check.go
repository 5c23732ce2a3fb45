package history

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// NodeState is one node's state read after the faults were healed (see
// ReadFinal).
type NodeState struct {
	// Name is the node's name.
	Name string
	// InRecovery is pg_is_in_recovery().
	InRecovery bool
	// Timeline is the node's timeline (a primary's current WAL file's, a
	// replica's replayed one).
	Timeline int64
	// Streaming is whether a replica's WAL receiver streams (ignored on the
	// primary).
	Streaming bool
	// Values are the ids in the node's table, ascending.
	Values []int64
	// Err is why the node could not be read; such a node has not converged.
	Err string
}

// Final is the state of every node after healing, read from the primary
// first and from each replica once it replayed the primary's WAL position
// taken after that read.
type Final struct {
	// Nodes are every node of the cluster.
	Nodes []NodeState
	// Leader is the node the DCS leader key names; "" skips that check.
	Leader string
}

// CheckName names one of the checks.
type CheckName string

// The checks of RELIABILITY.md section 4.
const (
	// CheckLost: an acknowledged write is missing from the final set (I1).
	CheckLost CheckName = "lost"
	// CheckUnexpected: a value that was never written, or whose write
	// failed, is in the final set or was returned by a read. It means an
	// error was misclassified, or a value appeared from nowhere.
	CheckUnexpected CheckName = "unexpected"
	// CheckDisappeared: a value seen by a primary read (or acknowledged) is
	// missing from a primary read that began later, or a value seen only by
	// reads is missing from the final set (read split brain).
	CheckDisappeared CheckName = "disappeared"
	// CheckPhantom: a replica read returned a value missing from the final
	// set. A hard failure only in strict mode.
	CheckPhantom CheckName = "phantom"
	// CheckTwoWriters: two nodes acknowledged writes on one timeline, an
	// older timeline acknowledged a write sent after a newer one had
	// acknowledged one, or one process's writes went back to an older
	// timeline (I2).
	CheckTwoWriters CheckName = "two-writers"
	// CheckConvergence: after healing the nodes do not agree: not exactly
	// one primary, the leader key names another node, a replica not
	// streaming, timelines or tables differ (I3).
	CheckConvergence CheckName = "convergence"
)

// Violation is one finding of a check.
type Violation struct {
	// Check is the check that found it.
	Check CheckName
	// Ops are the operations involved (IDs), Value the row id when one is.
	Ops   []int
	Value int64
	// Reason says what is wrong, in one line.
	Reason string
}

// String returns "check: reason".
func (v Violation) String() string { return string(v.Check) + ": " + v.Reason }

// Gap is the write unavailability between two timelines: from the last
// acknowledged write on one to the first acknowledged write on the next.
type Gap struct {
	From, To int64         // timelines
	Last     time.Duration // complete of the last OK write on From
	First    time.Duration // complete of the first OK write on To
}

// Stats are the history's figures.
type Stats struct {
	// Writes, by result; Reads, OK primary and replica reads.
	WritesOK, WritesFail, WritesInfo int
	PrimaryReads, ReplicaReads       int
	// InfoPresent and InfoAbsent split the indeterminate writes by whether
	// their value is in the final set.
	InfoPresent, InfoAbsent int
	// LostLSNMin and LostLSNMax bound the server stamps of lost writes (0
	// when none was lost).
	LostLSNMin, LostLSNMax uint64
	// Gaps are the write gaps between consecutive timelines.
	Gaps []Gap
	// MaxOverlap is the longest two-writer window witnessed (0 if none).
	MaxOverlap time.Duration
}

// Report is the result of Check.
type Report struct {
	// Violations, in check order.
	Violations []Violation
	// Stats are the figures.
	Stats Stats
}

// Of returns the violations of one check.
func (r Report) Of(name CheckName) []Violation {
	var out []Violation
	for _, v := range r.Violations {
		if v.Check == name {
			out = append(out, v)
		}
	}
	return out
}

// Count returns how many violations each check found.
func (r Report) Count() map[CheckName]int {
	out := map[CheckName]int{}
	for _, v := range r.Violations {
		out[v.Check]++
	}
	return out
}

// Summary returns a one-line summary: operations by result, violations by
// check, lost LSN range and write gaps.
func (r Report) Summary() string {
	s := r.Stats
	var b strings.Builder
	fmt.Fprintf(&b, "writes ok=%d fail=%d info=%d (info present %d, absent %d), reads primary=%d replica=%d",
		s.WritesOK, s.WritesFail, s.WritesInfo, s.InfoPresent, s.InfoAbsent, s.PrimaryReads, s.ReplicaReads)
	c := r.Count()
	for _, name := range []CheckName{CheckLost, CheckUnexpected, CheckDisappeared, CheckPhantom, CheckTwoWriters, CheckConvergence} {
		fmt.Fprintf(&b, "; %s=%d", name, c[name])
	}
	if s.LostLSNMax > 0 {
		fmt.Fprintf(&b, "; lost LSN range %s..%s", FormatLSN(s.LostLSNMin), FormatLSN(s.LostLSNMax))
	}
	for _, g := range s.Gaps {
		fmt.Fprintf(&b, "; write gap tl%d->tl%d %s", g.From, g.To, (g.First - g.Last).Round(time.Millisecond))
	}
	if s.MaxOverlap > 0 {
		fmt.Fprintf(&b, "; max two-writer overlap %s", s.MaxOverlap.Round(time.Millisecond))
	}
	return b.String()
}

// FormatLSN formats an LSN as PostgreSQL does (X/X).
func FormatLSN(l uint64) string { return fmt.Sprintf("%X/%X", l>>32, uint32(l)) }

// Check runs every check of RELIABILITY.md section 4 on a history and the
// final state. It is a pure function: the caller decides, per mode, which
// checks must come out empty (lost writes are possible in async mode,
// phantom replica reads are a hard failure only in strict mode).
func Check(ops []Op, final Final) Report {
	var r Report
	finalSet, primary := finalSet(final, &r)

	writes := map[int64]*Op{} // value -> its write
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case Write:
			if prev, ok := writes[op.Value]; ok {
				r.add(CheckUnexpected, []int{prev.ID, op.ID}, op.Value, fmt.Sprintf("value %d written twice (ops %d and %d): the workload must use unique ids", op.Value, prev.ID, op.ID))
			}
			writes[op.Value] = op
			switch op.Result {
			case OK:
				r.Stats.WritesOK++
			case Fail:
				r.Stats.WritesFail++
			case Info:
				r.Stats.WritesInfo++
			}
		case PrimaryRead:
			if op.Result == OK {
				r.Stats.PrimaryReads++
			}
		case ReplicaRead:
			if op.Result == OK {
				r.Stats.ReplicaReads++
			}
		}
	}

	if finalSet != nil {
		checkFinal(ops, writes, finalSet, primary, &r)
	}
	checkReads(ops, writes, finalSet, &r)
	checkWriters(ops, &r)
	return r
}

func (r *Report) add(check CheckName, ops []int, value int64, reason string) {
	r.Violations = append(r.Violations, Violation{Check: check, Ops: ops, Value: value, Reason: reason})
}

// finalSet checks convergence and returns the primary's set (nil when there
// is no primary to take it from).
func finalSet(final Final, r *Report) (map[int64]bool, string) {
	var primaries []NodeState
	for _, n := range final.Nodes {
		if n.Err != "" {
			r.add(CheckConvergence, nil, 0, fmt.Sprintf("%s could not be read: %s", n.Name, n.Err))
			continue
		}
		if !n.InRecovery {
			primaries = append(primaries, n)
		}
	}
	var p *NodeState
	switch {
	case len(final.Nodes) == 0:
		r.add(CheckConvergence, nil, 0, "no final state: no node was read")
		return nil, ""
	case len(primaries) == 1:
		p = &primaries[0]
	case len(primaries) == 0:
		r.add(CheckConvergence, nil, 0, "no node is a primary after healing")
	default:
		names := make([]string, len(primaries))
		for i, n := range primaries {
			names[i] = n.Name
		}
		r.add(CheckConvergence, nil, 0, fmt.Sprintf("%d primaries after healing: %s", len(primaries), strings.Join(names, ", ")))
	}
	if final.Leader != "" {
		if p != nil && p.Name != final.Leader {
			r.add(CheckConvergence, nil, 0, fmt.Sprintf("the leader key names %s but %s is the primary", final.Leader, p.Name))
		}
		if p == nil { // take the set from the leader's node, to still check writes
			for i := range final.Nodes {
				if final.Nodes[i].Name == final.Leader && final.Nodes[i].Err == "" {
					p = &final.Nodes[i]
				}
			}
		}
	}
	if p == nil {
		return nil, ""
	}
	set := make(map[int64]bool, len(p.Values))
	for _, v := range p.Values {
		set[v] = true
	}
	for _, n := range final.Nodes {
		if n.Name == p.Name || n.Err != "" {
			continue
		}
		if n.InRecovery && !n.Streaming {
			r.add(CheckConvergence, nil, 0, fmt.Sprintf("%s does not stream from the primary %s", n.Name, p.Name))
		}
		if n.Timeline != p.Timeline {
			r.add(CheckConvergence, nil, 0, fmt.Sprintf("%s is on timeline %d, the primary %s on %d", n.Name, n.Timeline, p.Name, p.Timeline))
		}
		missing, extra := diff(p.Values, n.Values)
		if len(missing) > 0 || len(extra) > 0 {
			r.add(CheckConvergence, nil, 0, fmt.Sprintf("%s's table differs from the primary %s's: %d rows missing %s, %d extra %s",
				n.Name, p.Name, len(missing), sample(missing), len(extra), sample(extra)))
		}
	}
	return set, p.Name
}

// diff returns the values of want missing from got, and those of got not in
// want; both inputs ascending.
func diff(want, got []int64) (missing, extra []int64) {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			missing = append(missing, want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	return missing, extra
}

func sample(vs []int64) string {
	if len(vs) == 0 {
		return ""
	}
	if len(vs) > 5 {
		return fmt.Sprintf("%v...", vs[:5])
	}
	return fmt.Sprint(vs)
}

// checkFinal: lost acknowledged writes, failed or never-attempted values in
// the final set, and the indeterminate writes' outcome.
func checkFinal(ops []Op, writes map[int64]*Op, final map[int64]bool, primary string, r *Report) {
	for i := range ops {
		op := &ops[i]
		if op.Kind != Write {
			continue
		}
		in := final[op.Value]
		switch op.Result {
		case OK:
			if !in {
				r.add(CheckLost, []int{op.ID}, op.Value, fmt.Sprintf("acknowledged write %d (op %d, %s tl%d lsn %s, acked at %s) is missing from the final set on %s",
					op.Value, op.ID, op.Stamp.Node, op.Stamp.Timeline, FormatLSN(op.Stamp.LSN), op.Complete.Round(time.Millisecond), primary))
				if r.Stats.LostLSNMin == 0 || op.Stamp.LSN < r.Stats.LostLSNMin {
					r.Stats.LostLSNMin = op.Stamp.LSN
				}
				r.Stats.LostLSNMax = max(r.Stats.LostLSNMax, op.Stamp.LSN)
			}
		case Fail:
			if in {
				r.add(CheckUnexpected, []int{op.ID}, op.Value, fmt.Sprintf("failed write %d (op %d: %s) is in the final set on %s: the failure was misclassified",
					op.Value, op.ID, op.Err, primary))
			}
		case Info:
			if in {
				r.Stats.InfoPresent++
			} else {
				r.Stats.InfoAbsent++
			}
		}
	}
	vals := make([]int64, 0, len(final))
	for v := range final {
		if writes[v] == nil {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	for _, v := range vals {
		r.add(CheckUnexpected, nil, v, fmt.Sprintf("value %d is in the final set on %s but was never written", v, primary))
	}
}

// checkReads: values that appear in reads without a write that could have
// produced them, values seen and later gone, and phantom replica reads.
func checkReads(ops []Op, writes map[int64]*Op, final map[int64]bool, r *Report) {
	type seenAt struct {
		at time.Duration
		op int
	}
	seen := map[int64]seenAt{} // earliest observation of each value
	note := func(v int64, at time.Duration, op int) {
		if s, ok := seen[v]; !ok || at < s.at {
			seen[v] = seenAt{at, op}
		}
	}
	var reads []*Op
	reported := map[int64]bool{} // unexpected values already reported
	for i := range ops {
		op := &ops[i]
		if op.Result != OK {
			continue
		}
		switch op.Kind {
		case Write:
			note(op.Value, op.Complete, op.ID)
		case PrimaryRead, ReplicaRead:
			for _, v := range op.Values {
				w := writes[v]
				if (w == nil || w.Result == Fail || w.Invoke > op.Complete) && !reported[v] && (final == nil || !final[v] || w != nil) {
					why := "was never written"
					switch {
					case w != nil && w.Result == Fail:
						why = fmt.Sprintf("whose write (op %d) failed: %s", w.ID, w.Err)
					case w != nil:
						why = fmt.Sprintf("whose write (op %d) was sent only at %s", w.ID, w.Invoke.Round(time.Millisecond))
					}
					r.add(CheckUnexpected, []int{op.ID}, v, fmt.Sprintf("%s op %d on %s returned value %d, %s",
						op.Kind, op.ID, op.Stamp.Node, v, why))
					reported[v] = true
				}
				if op.Kind == PrimaryRead {
					note(v, op.Complete, op.ID)
				} else if final != nil && !final[v] && !reported[v] {
					r.add(CheckPhantom, []int{op.ID}, v, fmt.Sprintf("replica read op %d on %s returned value %d, which is not in the final set",
						op.ID, op.Stamp.Node, v))
					reported[v] = true
				}
			}
			if op.Kind == PrimaryRead {
				reads = append(reads, op)
			}
		}
	}
	// Every primary read that began after a value was first seen must
	// contain it.
	vals := make([]int64, 0, len(seen))
	for v := range seen {
		vals = append(vals, v)
	}
	sort.Slice(vals, func(i, j int) bool { return seen[vals[i]].at < seen[vals[j]].at })
	gone := map[int64]bool{}
	sort.SliceStable(reads, func(i, j int) bool { return reads[i].Invoke < reads[j].Invoke })
	for _, rd := range reads {
		for _, v := range vals {
			s := seen[v]
			if s.at >= rd.Invoke {
				break
			}
			if gone[v] {
				continue
			}
			if _, ok := slices.BinarySearch(rd.Values, v); !ok {
				gone[v] = true
				r.add(CheckDisappeared, []int{s.op, rd.ID}, v, fmt.Sprintf("value %d, seen by op %d at %s, is missing from primary read op %d on %s begun at %s",
					v, s.op, s.at.Round(time.Millisecond), rd.ID, rd.Stamp.Node, rd.Invoke.Round(time.Millisecond)))
			}
		}
	}
	if final == nil {
		return
	}
	// A value only reads saw (its write not acknowledged) must survive too;
	// acknowledged writes missing from the final set are already lost.
	for _, v := range vals {
		// A failed or never-written value in a read is already unexpected.
		if w := writes[v]; gone[v] || final[v] || w == nil || w.Result != Info {
			continue
		}
		s := seen[v]
		r.add(CheckDisappeared, []int{s.op}, v, fmt.Sprintf("value %d, seen by primary read op %d at %s (its write indeterminate), is missing from the final set",
			v, s.op, s.at.Round(time.Millisecond)))
	}
}

// checkWriters: the single-writer checks, from acknowledged writes and
// their server stamps only.
func checkWriters(ops []Op, r *Report) {
	owner := map[int64]*Op{} // timeline -> first OK write seen on it
	first := map[int64]*Op{} // timeline -> OK write completed first
	last := map[int64]*Op{}  // timeline -> OK write completed last
	lastTL := map[int]*Op{}  // process -> its last OK write
	var ok []*Op
	for i := range ops {
		op := &ops[i]
		if op.Kind != Write || op.Result != OK {
			continue
		}
		ok = append(ok, op)
		tl := op.Stamp.Timeline
		if o, seen := owner[tl]; !seen {
			owner[tl] = op
		} else if o.Stamp.Node != op.Stamp.Node {
			r.add(CheckTwoWriters, []int{o.ID, op.ID}, op.Value, fmt.Sprintf("timeline %d acknowledged writes on two nodes: %s (op %d) and %s (op %d): two promotions",
				tl, o.Stamp.Node, o.ID, op.Stamp.Node, op.ID))
			owner[tl] = op // report each change of owner once
		}
		if f := first[tl]; f == nil || op.Complete < f.Complete {
			first[tl] = op
		}
		if l := last[tl]; l == nil || op.Complete > l.Complete {
			last[tl] = op
		}
		if p := lastTL[op.Process]; p != nil && tl < p.Stamp.Timeline {
			r.add(CheckTwoWriters, []int{p.ID, op.ID}, op.Value, fmt.Sprintf("process %d wrote on timeline %d (op %d, %s) after timeline %d (op %d, %s)",
				op.Process, tl, op.ID, op.Stamp.Node, p.Stamp.Timeline, p.ID, p.Stamp.Node))
		}
		lastTL[op.Process] = op
	}
	tls := make([]int64, 0, len(first))
	for tl := range first {
		tls = append(tls, tl)
	}
	slices.Sort(tls)
	for i := 1; i < len(tls); i++ {
		r.Stats.Gaps = append(r.Stats.Gaps, Gap{From: tls[i-1], To: tls[i], Last: last[tls[i-1]].Complete, First: first[tls[i]].Complete})
	}
	// Once a newer timeline acknowledged a write, no write sent afterwards
	// may be acknowledged on an older one. One violation per pair of
	// timelines, with the count and the longest overlap.
	type pair struct{ old, new int64 }
	type agg struct {
		n       int
		firstOp *Op
		overlap time.Duration
	}
	found := map[pair]*agg{}
	var order []pair
	for _, op := range ok {
		for _, tl := range tls {
			f := first[tl]
			if tl <= op.Stamp.Timeline || op.Invoke <= f.Complete {
				continue
			}
			k := pair{op.Stamp.Timeline, tl}
			a := found[k]
			if a == nil {
				a = &agg{firstOp: op}
				found[k] = a
				order = append(order, k)
			}
			a.n++
			a.overlap = max(a.overlap, op.Complete-f.Complete)
		}
	}
	for _, k := range order {
		a := found[k]
		f := first[k.new]
		r.add(CheckTwoWriters, []int{f.ID, a.firstOp.ID}, a.firstOp.Value, fmt.Sprintf("%d writes acknowledged on %s timeline %d were sent after %s acknowledged op %d on timeline %d at %s (first: op %d sent at %s; overlap up to %s)",
			a.n, a.firstOp.Stamp.Node, k.old, f.Stamp.Node, f.ID, k.new, f.Complete.Round(time.Millisecond), a.firstOp.ID,
			a.firstOp.Invoke.Round(time.Millisecond), a.overlap.Round(time.Millisecond)))
		r.Stats.MaxOverlap = max(r.Stats.MaxOverlap, a.overlap)
	}
}

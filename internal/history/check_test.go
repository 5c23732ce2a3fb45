package history_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/history"
)

// b builds a hand-written history; times are in milliseconds.
type b struct{ ops []history.Op }

func (h *b) w(proc int, v int64, invoke, complete int, res history.Result, node string, tl int64) *b {
	h.ops = append(h.ops, history.Op{ID: len(h.ops) + 1, Process: proc, Kind: history.Write, Value: v,
		Invoke: time.Duration(invoke) * time.Millisecond, Complete: time.Duration(complete) * time.Millisecond, Result: res,
		Stamp: history.Stamp{Node: node, Timeline: tl, LSN: uint64(v) * 100}})
	return h
}

func (h *b) r(kind history.Kind, proc int, invoke, complete int, node string, vals ...int64) *b {
	h.ops = append(h.ops, history.Op{ID: len(h.ops) + 1, Process: proc, Kind: kind, Values: vals,
		Invoke: time.Duration(invoke) * time.Millisecond, Complete: time.Duration(complete) * time.Millisecond, Result: history.OK,
		Stamp: history.Stamp{Node: node}})
	return h
}

// converged is a healthy final state: node2 primary on tl, node1 and node3
// streaming replicas, all with vals.
func converged(tl int64, vals ...int64) history.Final {
	return history.Final{Leader: "node2", Nodes: []history.NodeState{
		{Name: "node1", InRecovery: true, Streaming: true, Timeline: tl, Values: vals},
		{Name: "node2", Timeline: tl, Values: vals},
		{Name: "node3", InRecovery: true, Streaming: true, Timeline: tl, Values: vals},
	}}
}

const (
	ok   = history.OK
	fail = history.Fail
	info = history.Info
	pr   = history.PrimaryRead
	rr   = history.ReplicaRead
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name  string
		ops   []history.Op
		final history.Final
		want  map[history.CheckName]int
	}{
		{"empty history, converged", nil, converged(1), nil},
		{"one primary, all acknowledged", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).w(1, 2, 10, 15, ok, "node2", 1).
			r(pr, 2, 16, 18, "node2", 1, 2).ops, converged(1, 1, 2), nil},
		{"clean failover with a write gap", (&b{}).w(1, 1, 0, 5, ok, "node1", 1).w(1, 2, 10, 15, fail, "", 0).
			w(1, 3, 30, 35, ok, "node2", 2).r(pr, 2, 40, 42, "node2", 1, 3).ops, converged(2, 1, 3), nil},
		{"indeterminate write present", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).w(1, 2, 10, 15, info, "node2", 1).
			w(2, 3, 20, 25, ok, "node2", 1).ops, converged(1, 1, 2, 3), nil},
		{"indeterminate write absent", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).w(1, 2, 10, 15, info, "node2", 1).
			w(2, 3, 20, 25, ok, "node2", 1).ops, converged(1, 1, 3), nil},
		{"indeterminate write read, then present", (&b{}).w(1, 1, 0, 5, info, "node2", 1).r(pr, 2, 6, 8, "node2", 1).
			r(pr, 2, 9, 11, "node2", 1).ops, converged(1, 1), nil},
		{"old write in flight when the new timeline acked: not witnessed", (&b{}).w(1, 1, 30, 50, ok, "node1", 1).
			w(2, 2, 32, 35, ok, "node2", 2).ops, converged(2, 1, 2), nil},
		{"crash restart in place: same node, same timeline", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).
			w(1, 2, 500, 505, ok, "node2", 1).ops, converged(1, 1, 2), nil},
		{"replica read of an in-flight write", (&b{}).w(1, 1, 0, 50, ok, "node2", 1).r(rr, 2, 10, 20, "node1", 1).ops,
			converged(1, 1), nil},
		{"read concurrent with a write may miss it", (&b{}).w(1, 1, 0, 50, ok, "node2", 1).r(pr, 2, 10, 60, "node2").
			r(pr, 2, 61, 62, "node2", 1).ops, converged(1, 1), nil},

		{"lost acknowledged write", (&b{}).w(1, 1, 0, 5, ok, "node1", 1).w(1, 2, 10, 15, ok, "node1", 1).
			w(2, 3, 30, 35, ok, "node2", 2).ops, converged(2, 1, 3),
			map[history.CheckName]int{history.CheckLost: 1}},
		{"failed write present", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).w(1, 2, 10, 15, fail, "", 0).ops,
			converged(1, 1, 2), map[history.CheckName]int{history.CheckUnexpected: 1}},
		{"value never written present", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).ops, converged(1, 1, 99),
			map[history.CheckName]int{history.CheckUnexpected: 1}},
		{"read returns a failed write", (&b{}).w(1, 1, 0, 5, fail, "", 0).r(pr, 2, 6, 8, "node2", 1).ops,
			converged(1), map[history.CheckName]int{history.CheckUnexpected: 1}},
		{"read returns a value before its write was sent", (&b{}).r(pr, 2, 0, 2, "node2", 1).w(1, 1, 5, 8, ok, "node2", 1).ops,
			converged(1, 1), map[history.CheckName]int{history.CheckUnexpected: 1}},
		{"indeterminate write read, then gone from a later read", (&b{}).w(1, 1, 0, 5, info, "node1", 1).
			r(pr, 2, 6, 8, "node1", 1).r(pr, 2, 40, 42, "node2").ops, converged(2),
			map[history.CheckName]int{history.CheckDisappeared: 1}},
		{"indeterminate write read, then gone from the final set", (&b{}).w(1, 1, 0, 5, info, "node1", 1).
			r(pr, 2, 6, 8, "node1", 1).ops, converged(2),
			map[history.CheckName]int{history.CheckDisappeared: 1}},
		{"acknowledged write gone from a later read, back in the final set", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).
			r(pr, 2, 10, 12, "node3").ops, converged(1, 1),
			map[history.CheckName]int{history.CheckDisappeared: 1}},
		{"phantom replica read", (&b{}).w(1, 1, 0, 5, info, "node1", 1).r(rr, 2, 6, 8, "node3", 1).ops, converged(2),
			map[history.CheckName]int{history.CheckPhantom: 1}},
		{"old timeline acknowledges a write sent after the new timeline acked one", (&b{}).w(1, 1, 0, 5, ok, "node1", 1).
			w(2, 2, 30, 35, ok, "node2", 2).w(1, 3, 40, 45, ok, "node1", 1).w(1, 4, 50, 55, ok, "node1", 1).ops,
			converged(2, 1, 2, 3, 4), map[history.CheckName]int{history.CheckTwoWriters: 1}},
		{"two nodes on one timeline", (&b{}).w(1, 1, 0, 5, ok, "node1", 1).w(2, 2, 10, 15, ok, "node2", 1).ops,
			converged(1, 1, 2), map[history.CheckName]int{history.CheckTwoWriters: 1}},
		{"one process goes back a timeline (also a witnessed overlap)", (&b{}).w(1, 1, 0, 5, ok, "node2", 2).w(1, 2, 10, 15, ok, "node1", 1).ops,
			converged(2, 1, 2), map[history.CheckName]int{history.CheckTwoWriters: 2}},
		{"replica on another timeline and missing rows", (&b{}).w(1, 1, 0, 5, ok, "node2", 2).ops,
			history.Final{Leader: "node2", Nodes: []history.NodeState{
				{Name: "node1", InRecovery: true, Streaming: true, Timeline: 1},
				{Name: "node2", Timeline: 2, Values: []int64{1}},
			}}, map[history.CheckName]int{history.CheckConvergence: 2}},
		{"two primaries after healing", (&b{}).w(1, 1, 0, 5, ok, "node2", 2).ops,
			history.Final{Leader: "node2", Nodes: []history.NodeState{
				{Name: "node1", Timeline: 1, Values: []int64{1}},
				{Name: "node2", Timeline: 2, Values: []int64{1}},
			}}, map[history.CheckName]int{history.CheckConvergence: 2}},
		{"leader key names a replica; replica not streaming; node unreadable", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).ops,
			history.Final{Leader: "node1", Nodes: []history.NodeState{
				{Name: "node1", InRecovery: true, Timeline: 1, Values: []int64{1}},
				{Name: "node2", Timeline: 1, Values: []int64{1}},
				{Name: "node3", Err: "connection refused"},
			}}, map[history.CheckName]int{history.CheckConvergence: 3}},
		{"no primary: lost writes still checked against the leader's node", (&b{}).w(1, 1, 0, 5, ok, "node2", 1).ops,
			history.Final{Leader: "node2", Nodes: []history.NodeState{{Name: "node2", InRecovery: true, Timeline: 1}}},
			map[history.CheckName]int{history.CheckConvergence: 1, history.CheckLost: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := history.Check(tc.ops, tc.final)
			want := tc.want
			if want == nil {
				want = map[history.CheckName]int{}
			}
			require.Equal(t, want, r.Count(), "violations: %v", r.Violations)
		})
	}
}

func TestCheckStats(t *testing.T) {
	ops := (&b{}).w(1, 1, 0, 5, ok, "node1", 1).w(1, 2, 10, 15, ok, "node1", 1).w(2, 3, 12, 16, info, "node1", 1).
		w(3, 4, 14, 17, info, "node1", 1).w(1, 5, 20, 21, fail, "", 0).w(1, 6, 300, 320, ok, "node2", 2).
		w(1, 7, 330, 340, ok, "node1", 1).ops
	r := history.Check(ops, converged(2, 1, 3, 6, 7))
	s := r.Stats
	require.Equal(t, 4, s.WritesOK)
	require.Equal(t, 1, s.WritesFail)
	require.Equal(t, 2, s.WritesInfo)
	require.Equal(t, 1, s.InfoPresent)
	require.Equal(t, 1, s.InfoAbsent)
	require.Equal(t, uint64(200), s.LostLSNMin)
	require.Equal(t, uint64(200), s.LostLSNMax)
	require.Equal(t, []history.Gap{{From: 1, To: 2, Last: 340 * time.Millisecond, First: 320 * time.Millisecond}}, s.Gaps)
	require.Equal(t, 20*time.Millisecond, s.MaxOverlap)
	require.Len(t, r.Of(history.CheckLost), 1)
	require.Len(t, r.Of(history.CheckTwoWriters), 2, "the tl1 write after tl2's ack, and process 1 going back to tl1: %v", r.Violations)
	require.Contains(t, r.Summary(), "lost=1")
	require.Contains(t, r.Summary(), "two-writers=2")
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	ops := (&b{}).w(1, 1, 0, 5, info, "node1", 1).r(pr, 2, 6, 8, "node1", 1).ops
	require.NoError(t, history.WriteJSON(&buf, ops))
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var m map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &m))
	require.Equal(t, "info", m["result"])
	require.Equal(t, "write", m["kind"])
}

func TestLSN(t *testing.T) {
	l, err := history.ParseLSN("1/2A0")
	require.NoError(t, err)
	require.Equal(t, uint64(1)<<32|0x2A0, l)
	require.Equal(t, "1/2A0", history.FormatLSN(l))
	for _, bad := range []string{"", "12", "x/1", "1/y", "100000000/0"} {
		_, err := history.ParseLSN(bad)
		require.Error(t, err, bad)
	}
}

func TestWorkloadValidation(t *testing.T) {
	_, err := history.Workload{}.Start(history.NewHistory())
	require.ErrorContains(t, err, "ConnString is required")
	_, err = history.Workload{ConnString: "host=x", Table: "t; drop"}.Start(history.NewHistory())
	require.ErrorContains(t, err, "table name")
	_, err = history.Workload{ConnString: "host=x", Writers: -1}.Start(history.NewHistory())
	require.ErrorContains(t, err, "negative")
	_, err = history.Workload{ConnString: "port=notaport"}.Start(history.NewHistory())
	require.ErrorContains(t, err, "connection string")
}

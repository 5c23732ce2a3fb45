package history_test

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/internal/history"
)

// A failover in async mode: node1 acknowledged write 2 but it never reached
// node2, which was promoted; then node1, not yet fenced, acknowledged write
// 4 after node2 had acknowledged write 3.
func ExampleCheck() {
	ms := time.Millisecond
	ops := []history.Op{
		{ID: 1, Process: 1, Kind: history.Write, Value: 1, Invoke: 0, Complete: 5 * ms, Result: history.OK,
			Stamp: history.Stamp{Node: "node1", Timeline: 1, LSN: 100}},
		{ID: 2, Process: 1, Kind: history.Write, Value: 2, Invoke: 10 * ms, Complete: 15 * ms, Result: history.OK,
			Stamp: history.Stamp{Node: "node1", Timeline: 1, LSN: 200}},
		{ID: 3, Process: 2, Kind: history.Write, Value: 3, Invoke: 40 * ms, Complete: 45 * ms, Result: history.OK,
			Stamp: history.Stamp{Node: "node2", Timeline: 2, LSN: 300}},
		{ID: 4, Process: 1, Kind: history.Write, Value: 4, Invoke: 50 * ms, Complete: 55 * ms, Result: history.OK,
			Stamp: history.Stamp{Node: "node1", Timeline: 1, LSN: 400}},
	}
	final := history.Final{Leader: "node2", Nodes: []history.NodeState{
		{Name: "node1", InRecovery: true, Streaming: true, Timeline: 2, Values: []int64{1, 3}},
		{Name: "node2", Timeline: 2, Values: []int64{1, 3}},
	}}
	r := history.Check(ops, final)
	for _, v := range r.Violations {
		fmt.Println(v.Check, v.Ops)
	}
	// Output:
	// lost [2]
	// lost [4]
	// two-writers [3 4]
}

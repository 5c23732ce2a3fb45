package replication_test

import (
	"fmt"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/replication"
)

// A replica's slots in a three-node cluster whose node3 left: one per other
// member, the retained one of node3, and a permanent slot from /config, then
// what to do given the slots it has.
func ExampleDesiredSlots() {
	pos := int64(0x3000000)
	cluster := &dcs.Cluster{
		Leader: &dcs.Leader{Name: "node1"},
		Members: []dcs.Member{
			{Name: "node1", Data: dcs.MemberData{Role: dcs.RolePrimary, XLogLocation: &pos}},
			{Name: "node-2", Data: dcs.MemberData{Role: dcs.RoleReplica, XLogLocation: &pos}},
		},
		Status: dcs.Status{Optime: pos, Slots: map[string]int64{"node1": pos, "node_2": pos, "node3": 0x2000000, "backup": 0x1000000},
			RetainSlots: []string{"node1", "node3", "node_2"}},
	}
	cfg := dcs.ParseDynamicConfig(map[string]any{"slots": map[string]any{"backup": map[string]any{"type": "physical"}}})
	want := replication.DesiredSlots(replication.SlotsInput{
		Cluster: cluster, Name: "node-2", Role: dcs.RoleReplica, Config: cfg, ServerVersion: 150000,
	})
	for _, name := range want.Names() {
		s := want.Slots[name]
		fmt.Printf("%s member=%q permanent=%v retained=%v advance-to=%s\n", name, s.Member, s.Permanent, s.Retained, pg.LSN(s.LSN))
	}
	have := []pg.ReplicationSlot{
		{Name: "node1", Type: "physical", RestartLSN: 0x2800000, WALStatus: "reserved"},
		{Name: "old", Type: "physical", RestartLSN: 0x100000, WALStatus: "reserved"},
	}
	for _, a := range replication.PlanSlots(replication.PlanInput{Desired: want, Existing: have, ServerVersion: 150000}) {
		fmt.Println(a)
	}
	// Output:
	// backup member="" permanent=true retained=false advance-to=0/1000000
	// node1 member="node1" permanent=false retained=false advance-to=0/3000000
	// node3 member="" permanent=false retained=true advance-to=0/0
	// drop old (not a slot of this cluster)
	// create backup (permanent)
	// create node3 (retained for an absent member)
	// advance node1 to 0/3000000
}

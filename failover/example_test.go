package failover_test

import (
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// The primary node1 died and its leader key expired. node2, a replica, asks
// what to do: first it is told to probe its peers, then, seeing that it is
// the most advanced live member, to race for the leader key. Once the key is
// on its lease it is told to promote.
func ExampleDecide() {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	member := func(name string) dcs.Member {
		return dcs.Member{Name: name, Data: dcs.MemberData{
			ConnURL: "postgres://" + name + ":5432/postgres", APIURL: "http://" + name + ":8008/patroni",
			State: "running", Role: dcs.RoleReplica,
		}}
	}
	cluster := &dcs.Cluster{
		Revision:   120,
		Initialize: &dcs.Initialize{SysID: "7300000000000000001"},
		Config:     &dcs.Config{Data: map[string]any{"ttl": 30}},
		Members:    []dcs.Member{member("node2"), member("node3")},
		Status:     dcs.Status{Optime: 0x3000060, ModRevision: 110},
	}
	in := failover.Input{
		Cluster:      cluster,
		DCSReachable: true,
		Config:       dcs.ParseDynamicConfig(nil), // Patroni's defaults
		Local: failover.Local{
			Name: "node2", LeaseID: 7, SysID: "7300000000000000001",
			Running: true, State: "running", Role: dcs.RoleReplica, InRecovery: true,
			Timeline: 1, ReceiveLSN: 0x3000100, ReplayLSN: 0x3000100, Upstream: "node1",
		},
		Now: now,
	}

	d := failover.Decide(in)
	fmt.Println(d.Action, len(d.Probe), "peers")

	// The caller probes node3 (GET /patroni) and asks again.
	in.Peers = []failover.Peer{{Name: "node3", Reachable: true, Role: "replica", State: "running",
		InRecovery: true, ReceivedLocation: 0x3000080, ReplayedLocation: 0x3000080, Timeline: 1}}
	d = failover.Decide(in)
	fmt.Println(d)

	// The atomic create succeeded: the key is on node2's lease.
	cluster.Leader = &dcs.Leader{Name: "node2", CreateRevision: 121, ModRevision: 121, Lease: 7, Member: member("node2")}
	in.Peers, in.Local.LeaderValid, in.Local.Memory = nil, true, d.Memory
	fmt.Println(failover.Decide(in))
	// Output:
	// probe_peers 1 peers
	// acquire_leader target=node2: acquiring the leader lock: I am the healthiest node (position 0/3000100)
	// promote target=node2: promoting self to leader because I had the session lock
}

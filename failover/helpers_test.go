package failover_test

import (
	"encoding/json"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// Builders shared by the table, scenario and property tests.

const sysID = "7300000000000000001"

// pos is a WAL position in the middle of the second 4 GB segment range.
const pos = int64(0x5000000)

// mb is one maximum_lag_on_failover (Patroni's default 1 MiB).
const mb = int64(1 << 20)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// leaseOf gives every node its own lease id.
func leaseOf(name string) int64 {
	var h int64 = 100
	for _, c := range name {
		h = h*31 + int64(c)
	}
	return h % 100000
}

func member(name, role string, p int64) dcs.Member {
	x := p
	return dcs.Member{Name: name, Lease: leaseOf(name), ModRevision: 20, Data: dcs.MemberData{
		ConnURL: "postgres://" + name + ":5432/postgres", APIURL: "http://" + name + ":8008/patroni",
		State: failover.StateRunning, Role: role, XLogLocation: &x, Timeline: 1,
	}}
}

// cluster is a healthy three-node cluster led by node1, whose tenure began
// at revision 10; /status was written at revision 50.
func cluster() *dcs.Cluster {
	c := &dcs.Cluster{
		Revision:   60,
		Initialize: &dcs.Initialize{SysID: sysID, ModRevision: 2},
		Config:     &dcs.Config{Data: map[string]any{"ttl": json.Number("30")}, ModRevision: 3},
		Members: []dcs.Member{
			member("node1", dcs.RolePrimary, pos),
			member("node2", dcs.RoleReplica, pos),
			member("node3", dcs.RoleReplica, pos),
		},
		History: &dcs.History{Valid: true, ModRevision: 4},
		Status:  dcs.Status{Optime: pos, ModRevision: 50},
	}
	setLeader(c, "node1", 10)
	return c
}

// setLeader puts the leader key on name's lease, created at rev.
func setLeader(c *dcs.Cluster, name string, rev int64) {
	m, ok := c.Member(name)
	if !ok {
		m = dcs.Member{Name: name}
	}
	c.Leader = &dcs.Leader{Name: name, CreateRevision: rev, ModRevision: rev, Lease: leaseOf(name), Member: m}
}

// unlocked removes the leader key and node1's member key (its lease
// expired).
func unlocked(c *dcs.Cluster) *dcs.Cluster {
	c.Leader = nil
	var ms []dcs.Member
	for _, m := range c.Members {
		if m.Name != "node1" {
			ms = append(ms, m)
		}
	}
	c.Members = ms
	return c
}

func setMember(c *dcs.Cluster, name string, f func(*dcs.Member)) {
	for i := range c.Members {
		if c.Members[i].Name == name {
			f(&c.Members[i])
		}
	}
	if c.Leader != nil && c.Leader.Name == name {
		c.Leader.Member, _ = c.Member(name)
	}
}

func replica(name string, p int64) failover.Local {
	return failover.Local{
		Name: name, LeaseID: leaseOf(name), SysID: sysID, BootstrapAllowed: true,
		Running: true, State: failover.StateRunning, Role: dcs.RoleReplica, InRecovery: true,
		Timeline: 1, ReceiveLSN: p, ReplayLSN: p, Upstream: "node1",
		ControlState: failover.ControlInArchiveRecovery, StandbySignal: true,
	}
}

func primary(name string, p int64) failover.Local {
	return failover.Local{
		Name: name, LeaseID: leaseOf(name), LeaderValid: true, SysID: sysID, BootstrapAllowed: true,
		Running: true, State: failover.StateRunning, Role: dcs.RolePrimary,
		Timeline: 1, FlushLSN: p, ControlState: failover.ControlInProduction,
	}
}

// crashed is a primary whose postmaster died.
func crashed(name string, p int64) failover.Local {
	l := primary(name, p)
	l.Running, l.State = false, failover.StateCrashed
	return l
}

// stopped is a cleanly stopped replica.
func stopped(name string) failover.Local {
	l := replica(name, 0)
	l.Running, l.State, l.ControlState, l.Upstream = false, failover.StateStopped, failover.ControlShutDownInRecovery, ""
	return l
}

func empty(name string) failover.Local {
	return failover.Local{Name: name, LeaseID: leaseOf(name), BootstrapAllowed: true, DataDirEmpty: true, State: failover.StateStopped, Role: dcs.RoleUninitialized}
}

func peer(name string, p int64) failover.Peer {
	return failover.Peer{Name: name, Reachable: true, Role: dcs.RoleReplica, State: failover.StateRunning,
		InRecovery: true, ReceivedLocation: p, ReplayedLocation: p, Timeline: 1}
}

func primaryPeer(name string, p int64) failover.Peer {
	return failover.Peer{Name: name, Reachable: true, Role: dcs.RolePrimary, State: failover.StateRunning, Location: p, Timeline: 1}
}

func deadPeer(name string) failover.Peer {
	return failover.Peer{Name: name, Err: "connection refused"}
}

func input(c *dcs.Cluster, l failover.Local, peers ...failover.Peer) failover.Input {
	in := failover.Input{Cluster: c, DCSReachable: true, Config: c.Config.Dynamic(), Local: l, Now: t0}
	if peers != nil {
		in.Peers = peers
	}
	return in
}

// probed is input with an empty (non-nil) peer list.
func probed(c *dcs.Cluster, l failover.Local, peers ...failover.Peer) failover.Input {
	in := input(c, l)
	in.Peers = append([]failover.Peer{}, peers...)
	return in
}

// with applies modifications to an Input.
func with(in failover.Input, mods ...func(*failover.Input)) failover.Input {
	for _, m := range mods {
		m(&in)
	}
	return in
}

func cfg(kv ...any) func(*failover.Input) {
	return func(in *failover.Input) {
		data := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			data[kv[i].(string)] = kv[i+1]
		}
		in.Config = dcs.ParseDynamicConfig(data)
	}
}

func ptr[T any](v T) *T { return &v }

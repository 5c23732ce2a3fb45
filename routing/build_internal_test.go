package routing

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// buildTopology is the pure core of the router; these tests drive it
// with explicit views, probes and times.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func dcsView() *View {
	return &View{
		Leader: "n1", LeaderRevision: 7, PrimaryLSN: 1000, Revision: 42,
		Nodes: []Node{
			{Name: "n3", Addr: "h3:5432", Role: RoleReplica, MemberRole: "replica", State: "running", ReplicationState: "streaming", LSN: 100},
			{Name: "n1", Addr: "h1:5432", Role: RolePrimary, MemberRole: "primary", State: "running", LSN: 1000, Timeline: 3},
			{Name: "n2", Addr: "h2:5432", Role: RoleReplica, MemberRole: "replica", State: "running", ReplicationState: "streaming", LSN: 900},
			{Name: "n4", Addr: "h4:5432", Role: RoleReplica, MemberRole: "replica", State: "running", ReplicationState: "streaming", LSN: 1000, NoLoadBalance: true},
			{Name: "n5", Addr: "h5:5432", Role: RoleReplica, MemberRole: "replica", State: "starting", LSN: 1000},
			{Name: "n6", Addr: "h6:5432", Role: RoleReplica, MemberRole: "replica", State: "running", ReplicationState: "in archive recovery", LSN: 1000},
			{Name: "n7", Role: RoleReplica, MemberRole: "replica", State: "running", LSN: 1000},
		},
	}
}

func names(ns []Node) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func TestBuildFromDCSView(t *testing.T) {
	top := buildTopology(buildInput{view: dcsView(), now: t0, probeTTL: time.Second})
	require.Equal(t, Epoch{Leader: "n1", Revision: 7, Timeline: 3}, top.Epoch)
	require.Equal(t, []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}, names(top.Nodes), "sorted by name")
	p, ok := top.Primary()
	require.True(t, ok)
	require.Equal(t, "n1", p.Name)
	require.Equal(t, LSN(1000), top.PrimaryLSN)
	n2, _ := top.Node("n2")
	require.Equal(t, int64(100), n2.Lag)
	n3, _ := top.Node("n3")
	require.Equal(t, int64(900), n3.Lag)

	// The lag bound, noloadbalance, state, replication state and a missing
	// address all exclude a node.
	require.Equal(t, []string{"n2"}, names(top.Replicas(500)))
	require.Equal(t, []string{"n2", "n3"}, names(top.Replicas(900)))
	require.Equal(t, []string{"n2", "n3"}, names(top.Replicas(-1)))
	require.Empty(t, top.Replicas(99))
	require.Empty(t, top.Conflicts)
}

func TestBuildProbesMeasureAgainstCurrentPosition(t *testing.T) {
	probes := map[string]probeResult{
		// The primary is far ahead of what it published.
		"n1": {addr: "h1:5432", at: t0, lsn: 5000, timeline: 3, latency: time.Millisecond},
		"n2": {addr: "h2:5432", at: t0, inRecovery: true, lsn: 4950, walRecv: "streaming", latency: 2 * time.Millisecond},
		// n3 caught up, but the probe is stale: ignored.
		"n3": {addr: "h3:5432", at: t0.Add(-time.Minute), inRecovery: true, lsn: 5000, walRecv: "streaming"},
		// n6's probe failed.
		"n6": {addr: "h6:5432", at: t0, err: errors.New("connection refused")},
	}
	top := buildTopology(buildInput{view: dcsView(), probes: probes, now: t0, probeTTL: time.Second})
	require.Equal(t, LSN(5000), top.PrimaryLSN, "the probed current position, not the published optime")
	n2, _ := top.Node("n2")
	require.True(t, n2.Probed)
	require.Equal(t, int64(50), n2.Lag)
	require.Equal(t, 2*time.Millisecond, n2.Latency)
	n3, _ := top.Node("n3")
	require.False(t, n3.Probed)
	require.Equal(t, int64(4900), n3.Lag, "stale probe ignored: the published replay position counts")
	n6, _ := top.Node("n6")
	require.Equal(t, "unreachable", n6.State)
	require.False(t, Readable(n6, -1))
	require.Equal(t, []string{"n2"}, names(top.Replicas(100)))

	// A probe of another address (the member moved) does not count.
	probes["n2"] = probeResult{addr: "elsewhere:5432", at: t0, inRecovery: true, lsn: 5000}
	top = buildTopology(buildInput{view: dcsView(), probes: probes, now: t0, probeTTL: time.Second})
	n2, _ = top.Node("n2")
	require.False(t, n2.Probed)
}

func TestBuildWritableNonLeaderIsAConflict(t *testing.T) {
	v := dcsView()
	probes := map[string]probeResult{
		"n2": {addr: "h2:5432", at: t0, inRecovery: false, lsn: 2000},
	}
	// A probe from before the tenure began (the old primary before a
	// switchover) is no conflict, but the node still gets no reads.
	top := buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second, epochSince: t0.Add(time.Millisecond)})
	require.Empty(t, top.Conflicts)
	n2, _ := top.Node("n2")
	require.Equal(t, RoleUnknown, n2.Role)
	require.NotContains(t, names(top.Replicas(-1)), "n2")

	top = buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second, epochSince: t0})
	require.Len(t, top.Conflicts, 1)
	require.Equal(t, "n2", top.Conflicts[0].Node)
	require.Equal(t, "n1", top.Conflicts[0].Epoch.Leader)
	p, _ := top.Primary()
	require.Equal(t, "n1", p.Name, "the DCS leader decides")

	// Without probes, a member publishing a primary role while another
	// leads is a conflict too.
	v = dcsView()
	v.Nodes[2].MemberRole = "master"
	top = buildTopology(buildInput{view: v, now: t0, probeTTL: time.Second})
	require.Len(t, top.Conflicts, 1)
	require.Equal(t, "n2", top.Conflicts[0].Node)
}

func TestBuildLeaderWithoutAddressOrInRecovery(t *testing.T) {
	v := dcsView()
	v.Nodes[1].Addr = ""
	top := buildTopology(buildInput{view: v, now: t0, probeTTL: time.Second})
	_, ok := top.Primary()
	require.False(t, ok, "no address: no primary to connect to")
	require.Equal(t, "n1", top.Epoch.Leader)

	// A leader still promoting (in recovery) stays the primary; lag is
	// measured against the larger of its position and the published one.
	v = dcsView()
	probes := map[string]probeResult{"n1": {addr: "h1:5432", at: t0, inRecovery: true, lsn: 800}}
	top = buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second})
	p, ok := top.Primary()
	require.True(t, ok)
	require.Equal(t, "n1", p.Name)
	require.Equal(t, LSN(1000), top.PrimaryLSN)

	// No leader at all.
	v = dcsView()
	v.Leader, v.LeaderRevision = "", 0
	top = buildTopology(buildInput{view: v, now: t0, probeTTL: time.Second})
	require.True(t, top.Epoch.IsZero())
	_, ok = top.Primary()
	require.False(t, ok)
	n1, _ := top.Node("n1")
	require.Equal(t, RoleUnknown, n1.Role)
}

func hostsView(addrs ...string) *View {
	v := &View{RolesByProbe: true}
	for _, a := range addrs {
		v.Nodes = append(v.Nodes, Node{Name: a, Addr: a})
	}
	return v
}

func TestBuildHostsRolesByProbe(t *testing.T) {
	v := hostsView("a:1", "b:1", "c:1")
	top := buildTopology(buildInput{view: v, now: t0, probeTTL: time.Second})
	require.True(t, top.Epoch.IsZero(), "nothing probed yet")
	require.Empty(t, top.Replicas(-1))

	probes := map[string]probeResult{
		"a:1": {addr: "a:1", at: t0, lsn: 500, timeline: 2},
		"b:1": {addr: "b:1", at: t0, inRecovery: true, lsn: 450, walRecv: "streaming"},
		"c:1": {addr: "c:1", at: t0, err: errors.New("timeout")},
	}
	top = buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second})
	require.Equal(t, Epoch{Leader: "a:1", Timeline: 2}, top.Epoch)
	require.Equal(t, []string{"b:1"}, names(top.Replicas(100)))
	b, _ := top.Node("b:1")
	require.Equal(t, int64(50), b.Lag)

	// Two writable hosts: the higher timeline wins, the other is a conflict.
	probes["c:1"] = probeResult{addr: "c:1", at: t0, lsn: 10, timeline: 1}
	top = buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second})
	require.Equal(t, "a:1", top.Epoch.Leader)
	require.Len(t, top.Conflicts, 1)
	require.Equal(t, "c:1", top.Conflicts[0].Node)

	// Same timeline: nobody gets writes.
	probes["c:1"] = probeResult{addr: "c:1", at: t0, lsn: 10, timeline: 2}
	top = buildTopology(buildInput{view: v, probes: probes, now: t0, probeTTL: time.Second})
	require.True(t, top.Epoch.IsZero())
	require.Len(t, top.Conflicts, 2)
}

func TestBuildHostsRoleSurvivesAFailedProbe(t *testing.T) {
	v := hostsView("a:1", "b:1")
	ok := probeResult{addr: "a:1", at: t0, lsn: 500, timeline: 2}
	probes := map[string]probeResult{
		"a:1": {addr: "a:1", at: t0.Add(time.Second), err: errors.New("timeout"), lastOK: &ok},
		"b:1": {addr: "b:1", at: t0.Add(time.Second), inRecovery: true, lsn: 500, walRecv: "streaming"},
	}
	top := buildTopology(buildInput{view: v, probes: probes, now: t0.Add(time.Second), probeTTL: 2 * time.Second})
	require.Equal(t, Epoch{Leader: "a:1", Timeline: 2}, top.Epoch, "one failed probe does not end the tenure")
	a, _ := top.Node("a:1")
	require.NotEmpty(t, a.Problem)

	// Another host answering as writable takes over at once, with no
	// conflict: the silent one was writable only as last seen.
	probes["b:1"] = probeResult{addr: "b:1", at: t0.Add(time.Second), lsn: 600, timeline: 3}
	top = buildTopology(buildInput{view: v, probes: probes, now: t0.Add(time.Second), probeTTL: 2 * time.Second})
	require.Equal(t, "b:1", top.Epoch.Leader)
	require.Empty(t, top.Conflicts)
	probes["b:1"] = probeResult{addr: "b:1", at: t0.Add(time.Second), inRecovery: true, lsn: 500, walRecv: "streaming"}

	// Failing for longer than the probe TTL does.
	top = buildTopology(buildInput{view: v, probes: probes, now: t0.Add(3 * time.Second), probeTTL: 2 * time.Second})
	require.True(t, top.Epoch.IsZero())
}

func TestEpochSameTenure(t *testing.T) {
	a := Epoch{Leader: "n1", Revision: 5, Timeline: 2}
	require.True(t, a.SameTenure(Epoch{Leader: "n1", Revision: 5, Timeline: 3}), "a promotion within the tenure")
	require.False(t, a.SameTenure(Epoch{Leader: "n1", Revision: 9, Timeline: 2}), "the key was created anew")
	require.False(t, a.SameTenure(Epoch{Leader: "n2", Revision: 5, Timeline: 2}))
	require.False(t, a.SameTenure(Epoch{}))
	h := Epoch{Leader: "a:1", Timeline: 2}
	require.True(t, h.SameTenure(Epoch{Leader: "a:1", Timeline: 2}))
	require.False(t, h.SameTenure(Epoch{Leader: "a:1", Timeline: 3}), "no revision: the timeline identifies the tenure")
}

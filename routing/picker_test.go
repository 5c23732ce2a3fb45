package routing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/routing"
)

func topo() *routing.Topology {
	return &routing.Topology{
		Epoch:      routing.Epoch{Leader: "p"},
		PrimaryLSN: 1000,
		Nodes: []routing.Node{
			{Name: "a", Addr: "a:1", Role: routing.RoleReplica, State: "running", ReplicationState: "streaming", Lag: 300, Latency: 3 * time.Millisecond},
			{Name: "b", Addr: "b:1", Role: routing.RoleReplica, State: "running", ReplicationState: "streaming", Lag: 10, Latency: 5 * time.Millisecond},
			{Name: "c", Addr: "c:1", Role: routing.RoleReplica, State: "running", ReplicationState: "streaming", Lag: 10, Latency: 1 * time.Millisecond},
			{Name: "d", Addr: "d:1", Role: routing.RoleReplica, State: "running", Lag: 0, NoLoadBalance: true},
			{Name: "p", Addr: "p:1", Role: routing.RolePrimary, State: "running"},
		},
	}
}

func pick(p routing.Picker, t *routing.Topology, c routing.Criterion, maxLag int64, n int) []string {
	var out []string
	for range n {
		out = append(out, t.Candidates(c, maxLag, p)[0].Name)
	}
	return out
}

func TestPickers(t *testing.T) {
	top := topo()
	require.Equal(t, []string{"a", "b", "c", "a"}, pick(routing.RoundRobin(), top, routing.Standby, 500, 4))
	require.Equal(t, []string{"b", "c", "b"}, pick(routing.LeastLag(), top, routing.Standby, 500, 3), "ties taken in turn")
	require.Equal(t, []string{"c", "c"}, pick(routing.LowestLatency(), top, routing.Standby, 500, 2))
	// The fallbacks follow the picker's order.
	require.Equal(t, []string{"c", "a", "b"}, namesOf(top.Candidates(routing.Standby, 500, routing.LowestLatency())))
	require.Equal(t, []string{"b", "c", "a"}, namesOf(top.Candidates(routing.Standby, 500, routing.LeastLag()))[:3])
}

func namesOf(ns []routing.Node) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func TestCandidatesByCriterion(t *testing.T) {
	top := topo()
	lat := routing.LowestLatency()
	require.Equal(t, []string{"p"}, namesOf(top.Candidates(routing.Primary, 20, lat)))
	require.Equal(t, []string{"c", "b"}, namesOf(top.Candidates(routing.Standby, 20, lat)))
	require.Equal(t, []string{"c", "b", "p"}, namesOf(top.Candidates(routing.PreferStandby, 20, lat)))
	require.Equal(t, []string{"p", "c", "b"}, namesOf(top.Candidates(routing.PreferPrimary, 20, lat)))
	require.Equal(t, []string{"c", "b", "p"}, namesOf(top.Candidates(routing.Alive, 20, lat)), "the primary has no probed latency here")
	require.Empty(t, top.Candidates(routing.Standby, 5, lat), "nobody within 5 bytes")
	require.Equal(t, []string{"p"}, namesOf(top.Candidates(routing.PreferStandby, 5, lat)), "fallback to the primary")

	// Never a noloadbalance node, whatever the bound.
	for _, c := range []routing.Criterion{routing.Standby, routing.PreferStandby, routing.Alive, routing.PreferPrimary} {
		require.NotContains(t, namesOf(top.Candidates(c, -1, routing.RoundRobin())), "d", c.String())
	}
	// No primary: Primary has no candidate, reads still do.
	top.Epoch = routing.Epoch{}
	top.Nodes[4].Role = routing.RoleUnknown
	require.Empty(t, top.Candidates(routing.Primary, 20, lat))
	require.Equal(t, []string{"c", "b"}, namesOf(top.Candidates(routing.PreferStandby, 20, lat)))
}

func TestLSN(t *testing.T) {
	l, err := routing.ParseLSN("16/B374D848")
	require.NoError(t, err)
	require.Equal(t, routing.LSN(0x16B374D848), l)
	require.Equal(t, "16/B374D848", l.String())
	b, err := l.MarshalText()
	require.NoError(t, err)
	var back routing.LSN
	require.NoError(t, back.UnmarshalText(b))
	require.Equal(t, l, back)
	require.Equal(t, "unknown", routing.LSNUnknown.String())
	u, err := routing.ParseLSN("unknown")
	require.NoError(t, err)
	require.Equal(t, routing.LSNUnknown, u)
	for _, bad := range []string{"16", "x/1", "1/y", "100000000/0"} {
		_, err := routing.ParseLSN(bad)
		require.Error(t, err, bad)
	}
}

func TestSafeToRetry(t *testing.T) {
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code} }
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"nil":                 {nil, false},
		"read-only":           {pgErr("25006"), true},
		"admin shutdown":      {fmt.Errorf("wrapped: %w", pgErr("57P01")), true},
		"crash shutdown":      {pgErr("57P02"), true},
		"cannot connect now":  {pgErr("57P03"), true},
		"connection failure":  {pgErr("08006"), true},
		"too many conns":      {pgErr("53300"), true},
		"unique violation":    {pgErr("23505"), false},
		"serialization":       {pgErr("40001"), false},
		"auth":                {&routing.NodeError{Node: "n", Op: "acquire", Err: pgErr("28P01")}, false},
		"fenced":              {fmt.Errorf("x: %w", routing.ErrFenced), true},
		"not primary":         {routing.ErrNotPrimary, true},
		"eof":                 {fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		"conn closed":         {pgconn.ErrConnClosed, true},
		"ambiguous":           {fmt.Errorf("%w: %w", routing.ErrAmbiguousCommit, io.EOF), false},
		"closed router":       {routing.ErrClosed, false},
		"ctx":                 {fmt.Errorf("%w: %w", routing.ErrNoPrimary, context.DeadlineExceeded), false},
		"application's error": {errors.New("out of stock"), false},
	} {
		require.Equal(t, tc.want, routing.SafeToRetry(tc.err), name)
	}
}

func TestViewFromCluster(t *testing.T) {
	pos := func(v int64) *int64 { return &v }
	c := &dcs.Cluster{
		Revision: 9,
		Leader:   &dcs.Leader{Name: "n1", CreateRevision: 4},
		Members: []dcs.Member{
			{Name: "n1", Data: dcs.MemberData{ConnURL: "postgres://10.0.0.1:6432/postgres", Role: "primary", State: "running", XLogLocation: pos(5000), Timeline: 2}},
			{Name: "n2", Data: dcs.MemberData{ConnURL: "postgres://10.0.0.2/postgres", Role: "replica", State: "running", XLogLocation: pos(4900), ReplayLSN: pos(4800), ReplicationState: "streaming", Tags: dcs.Tags{"noloadbalance": true}}},
			{Name: "n3", Data: dcs.MemberData{ConnURL: "postgres://[::1]:5433/postgres", Role: "replica", State: "running", XLogLocation: pos(4000)}},
			{Name: "n4", Data: dcs.MemberData{Role: "demoted", State: "stopped"}},
		},
		Failover: &dcs.Failover{Leader: "n1", Candidate: "n2", ModRevision: 8},
		Status:   dcs.Status{Optime: 4500},
	}
	v := routing.ViewFromCluster(c)
	require.Equal(t, "n1", v.Leader)
	require.Equal(t, int64(4), v.LeaderRevision)
	require.Equal(t, routing.LSN(5000), v.PrimaryLSN)
	require.Equal(t, &routing.Switchover{From: "n1", To: "n2", Revision: 8}, v.Switchover)
	require.Len(t, v.Nodes, 4)
	require.Equal(t, "10.0.0.1:6432", v.Nodes[0].Addr)
	require.Equal(t, routing.RolePrimary, v.Nodes[0].Role)
	require.Equal(t, "10.0.0.2:5432", v.Nodes[1].Addr)
	require.Equal(t, routing.LSN(4800), v.Nodes[1].LSN, "replay_lsn when published")
	require.True(t, v.Nodes[1].NoLoadBalance)
	require.Equal(t, "[::1]:5433", v.Nodes[2].Addr)
	require.Equal(t, routing.LSN(4000), v.Nodes[2].LSN, "else xlog_location")
	require.Equal(t, routing.RoleUnknown, v.Nodes[3].Role)
	require.Equal(t, "", v.Nodes[3].Addr)

	// A failover request (no leader named) is no switchover.
	c.Failover = &dcs.Failover{Candidate: "n2"}
	require.Nil(t, routing.ViewFromCluster(c).Switchover)
	// A leader key without a member key: the leader is known but unreachable.
	c.Leader = &dcs.Leader{Name: "gone", CreateRevision: 11}
	v = routing.ViewFromCluster(c)
	top := &routing.Topology{}
	_ = top
	require.Equal(t, "gone", v.Leader)
	require.Equal(t, "gone", v.Nodes[len(v.Nodes)-1].Name)
}

func TestConfigValidate(t *testing.T) {
	err := routing.Config{}.Validate()
	require.ErrorContains(t, err, "Source is required")
	require.ErrorContains(t, err, "ConnString and PoolConfig is required")

	err = routing.Config{Source: routing.FromHosts("a:1", "a:1", "b:0"), ConnString: "user=x", ProbeInterval: -1}.Validate()
	require.ErrorContains(t, err, "listed twice")
	require.ErrorContains(t, err, "invalid port")
	require.ErrorContains(t, err, "FromHosts needs probes")

	err = routing.Config{Source: routing.FromHosts("a"), ConnString: "user=x", RetryInterval: time.Second, MaxRetryInterval: time.Millisecond, Fallback: 9}.Validate()
	require.ErrorContains(t, err, "exceeds MaxRetryInterval")
	require.ErrorContains(t, err, "invalid Fallback")

	require.NoError(t, routing.Config{Source: routing.FromHosts("a", "b:6432", "[::1]:5432"), ConnString: "user=x"}.Validate())
	require.ErrorContains(t, routing.Config{Source: routing.FromDCS(nil), ConnString: "user=x"}.Validate(), "reader is nil")
	_, err = routing.New(context.Background(), routing.Config{})
	require.Error(t, err)
}

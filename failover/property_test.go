package failover_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// The property tests draw inputs from a seeded generator (math/rand in the
// test only; Decide itself uses no randomness). A failure prints the seed
// and the iteration, so it can be replayed.

const iterations = 10000

var names = []string{"node1", "node2", "node3", "node4"}

type gen struct {
	r       *rand.Rand
	garbage bool // also produce values a sane caller never would
}

func newGen(seed uint64, garbage bool) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), garbage: garbage}
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }
func (g *gen) pick(xs ...string) string {
	return xs[g.r.IntN(len(xs))]
}

func (g *gen) name() string {
	if g.garbage && g.chance(0.05) {
		return ""
	}
	return names[g.r.IntN(len(names))]
}

// lsnNear returns positions clustered around pos, so lags around the
// 1 MiB bound are common.
func (g *gen) lsnNear() int64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		if g.garbage {
			return -g.r.Int64N(1 << 30)
		}
		return pos
	default:
		return pos + g.r.Int64N(4*mb) - 2*mb
	}
}

func (g *gen) tags() dcs.Tags {
	if !g.chance(0.3) {
		return nil
	}
	t := dcs.Tags{}
	if g.chance(0.3) {
		t["nofailover"] = g.chance(0.5)
	}
	if g.chance(0.4) {
		t["failover_priority"] = int64(g.r.IntN(4))
	}
	if g.chance(0.2) {
		t["clonefrom"] = true
	}
	if g.chance(0.1) {
		t["replicatefrom"] = g.name()
	}
	if g.garbage && g.chance(0.2) {
		t["nofailover"] = g.pick("maybe", "on", "", "1")
		t["failover_priority"] = map[string]any{"x": 1}
	}
	return t
}

func (g *gen) memberData() dcs.MemberData {
	d := dcs.MemberData{State: g.pick(failover.StateRunning, failover.StateStarting, failover.StateStopped, ""),
		Role: g.pick(dcs.RolePrimary, dcs.RoleReplica, dcs.RoleMaster, ""), Tags: g.tags(), Timeline: int64(g.r.IntN(4))}
	if !g.garbage || g.chance(0.8) {
		d.ConnURL, d.APIURL = "postgres://x:5432/postgres", "http://x:8008/patroni"
	}
	if g.chance(0.7) {
		p := g.lsnNear()
		d.XLogLocation = &p
	}
	if g.chance(0.1) {
		d.CheckpointAfterPromote = ptr(false)
	}
	return d
}

func (g *gen) cluster() *dcs.Cluster {
	if g.garbage && g.chance(0.05) {
		return nil
	}
	c := &dcs.Cluster{Revision: 100}
	if g.chance(0.85) {
		c.Initialize = &dcs.Initialize{SysID: sysID, ModRevision: 2}
		if g.chance(0.05) {
			c.Initialize.SysID = g.pick("", "7399999999999999999", "abc")
		}
	}
	if g.chance(0.8) {
		c.Config = &dcs.Config{Data: map[string]any{"ttl": int64(30)}, ModRevision: 3}
	}
	for _, n := range names {
		if g.chance(0.75) {
			c.Members = append(c.Members, dcs.Member{Name: n, Lease: leaseOf(n), ModRevision: int64(g.r.IntN(100)), Data: g.memberData()})
		}
	}
	if g.garbage && g.chance(0.1) {
		c.Members = append(c.Members, dcs.Member{}) // a member with nothing
	}
	if g.chance(0.6) {
		ln := g.name()
		lease := leaseOf(ln)
		if g.chance(0.1) {
			lease = 4242
		}
		c.Leader = &dcs.Leader{Name: ln, CreateRevision: int64(10 + g.r.IntN(80)), ModRevision: 90, Lease: lease}
		if m, ok := c.Member(ln); ok && g.chance(0.9) {
			c.Leader.Member = m
		} else {
			c.Leader.Member = dcs.Member{Name: ln}
		}
	}
	if g.chance(0.3) {
		f := &dcs.Failover{ModRevision: int64(g.r.IntN(100))}
		if g.chance(0.5) {
			f.Leader = g.name()
		}
		if g.chance(0.7) {
			f.Candidate = g.name()
		}
		if g.chance(0.2) {
			f.ScheduledAt = t0.Add(time.Duration(g.r.IntN(120)-60) * time.Second)
		}
		c.Failover = f
	}
	if g.chance(0.7) {
		c.History = &dcs.History{Valid: !g.garbage || g.chance(0.9), ModRevision: 4}
		for i := range g.r.IntN(3) {
			c.History.Lines = append(c.History.Lines, dcs.HistoryLine{Timeline: int64(i + 1), LSN: g.lsnNear()})
		}
	}
	if g.chance(0.8) {
		c.Status = dcs.Status{Optime: g.lsnNear(), ModRevision: int64(g.r.IntN(100))}
	}
	return c
}

func (g *gen) local(name string) failover.Local {
	l := failover.Local{
		Name: name, LeaseID: leaseOf(name), LeaderValid: g.chance(0.6), Tags: g.tags(),
		BootstrapAllowed: g.chance(0.8), CanRewind: g.chance(0.4), RemoveDataOnDivergence: g.chance(0.2),
		RemoveDataOnRewindFailure: g.chance(0.1), WatchdogFailed: g.chance(0.05),
		DataDirEmpty: g.chance(0.1), SysID: sysID, Running: g.chance(0.8),
		State:      g.pick(failover.StateRunning, failover.StateRunning, failover.StateStarting, failover.StateCrashed, failover.StateStopped, failover.StateStartFailed),
		Role:       g.pick(dcs.RolePrimary, dcs.RoleReplica, dcs.RoleDemoted, ""),
		InRecovery: g.chance(0.7), Timeline: int64(g.r.IntN(4)),
		FlushLSN: g.lsnNear(), ReceiveLSN: g.lsnNear(), ReplayLSN: g.lsnNear(),
		Upstream:      g.pick("node1", "node2", ""),
		ControlState:  g.pick(failover.ControlInProduction, failover.ControlShutDown, failover.ControlShutDownInRecovery, failover.ControlInArchiveRecovery, failover.ControlInCrashRecovery, ""),
		StandbySignal: g.chance(0.5), BackupLabel: g.chance(0.05),
		Divergence: failover.Divergence(g.r.IntN(4)),
	}
	if g.chance(0.1) {
		l.LeaseID = int64(g.r.IntN(3))
	}
	if g.chance(0.1) {
		l.SysID = g.pick("", "7399999999999999999")
	}
	if g.chance(0.15) {
		l.Async = failover.Action(g.r.IntN(len(failover.Actions())))
	}
	if g.chance(0.1) {
		l.Result = &failover.Result{Action: failover.Action(g.r.IntN(len(failover.Actions()))), Err: g.pick("", "boom")}
	}
	if g.chance(0.5) {
		ln := g.name()
		l.Memory.LastLeader = failover.LeaderToken{Name: ln, CreateRevision: int64(g.r.IntN(100)), Lease: leaseOf(ln), APIURL: "http://x:8008/patroni"}
	}
	if g.chance(0.2) {
		l.Memory.CrashedAt = t0.Add(-time.Duration(g.r.IntN(600)) * time.Second)
	}
	if g.chance(0.1) {
		l.Memory.SkipRaceUntil = t0.Add(time.Duration(g.r.IntN(60)-30) * time.Second)
	}
	l.Memory.Rewind = failover.RewindState(g.r.IntN(6))
	if g.garbage && g.chance(0.05) {
		l.Async = failover.Action(99)
		l.Divergence = failover.Divergence(-3)
	}
	return l
}

func (g *gen) peers(me string) []failover.Peer {
	if g.chance(0.3) {
		return nil
	}
	ps := []failover.Peer{}
	for _, n := range names {
		if n == me || g.chance(0.2) {
			continue
		}
		p := failover.Peer{Name: n, Reachable: g.chance(0.85), Role: g.pick(dcs.RoleReplica, dcs.RolePrimary),
			State: failover.StateRunning, InRecovery: g.chance(0.85), Location: g.lsnNear(),
			ReceivedLocation: g.lsnNear(), ReplayedLocation: g.lsnNear(), Timeline: int64(g.r.IntN(4)),
			Tags: g.tags(), WatchdogFailed: g.chance(0.05)}
		if !p.Reachable {
			p.Err = "timeout"
		}
		ps = append(ps, p)
	}
	return ps
}

func (g *gen) config() dcs.DynamicConfig {
	if g.garbage && g.chance(0.05) {
		return dcs.DynamicConfig{} // zero: ttl 0, no defaults
	}
	data := map[string]any{}
	if g.chance(0.3) {
		data["primary_start_timeout"] = int64(g.pick3(0, 30, 300))
	}
	if g.chance(0.2) {
		data["check_timeline"] = true
	}
	if g.chance(0.05) {
		data["synchronous_mode"] = true
	}
	if g.chance(0.03) {
		data["pause"] = true
	}
	return dcs.ParseDynamicConfig(data)
}

func (g *gen) pick3(a, b, c int) int { return []int{a, b, c}[g.r.IntN(3)] }

func (g *gen) input() failover.Input {
	me := g.name()
	in := failover.Input{Cluster: g.cluster(), DCSReachable: g.chance(0.9), Config: g.config(), Local: g.local(me), Peers: g.peers(me), Now: t0}
	if g.garbage && g.chance(0.05) {
		in.Now = time.Time{}
	}
	return in
}

// refPosition recomputes the documented lag reference independently.
func refPosition(in failover.Input) int64 {
	l := in.Local
	ref := l.Position()
	for _, p := range in.Peers {
		if p.Name != l.Name && p.Reachable && p.Err == "" && p.Position() > ref {
			ref = p.Position()
		}
	}
	last := l.Memory.LastLeader
	if c := in.Cluster; c.Leader != nil && c.Leader.Name != "" && c.Leader.Name != l.Name {
		last = failover.LeaderToken{Name: c.Leader.Name, CreateRevision: c.Leader.CreateRevision}
	}
	st := in.Cluster.Status
	stale := last.CreateRevision > 0 && st.ModRevision > 0 && st.ModRevision < last.CreateRevision
	if !stale && st.Optime > ref {
		ref = st.Optime
	}
	return ref
}

func holdsValidKey(in failover.Input) bool {
	c := in.Cluster
	return c != nil && in.DCSReachable && c.Leader != nil && c.Leader.Name == in.Local.Name && in.Local.Name != "" &&
		in.Local.LeaseID != 0 && c.Leader.Lease == in.Local.LeaseID && in.Local.LeaderValid
}

// TestPropertyOnePromoterPerToken: for one snapshot, whatever each member
// believes about itself, at most one member decides Promote, and it is the
// one whose name and lease the leader key carries.
func TestPropertyOnePromoterPerToken(t *testing.T) {
	t.Parallel()
	g := newGen(1, false)
	for i := range iterations / 2 {
		c := g.cluster()
		if c == nil || c.Leader == nil {
			continue
		}
		var promoters []string
		// Every member, plus an impostor with the leader's name on another
		// lease (an earlier run of that node).
		var locals []failover.Local
		for _, n := range names {
			locals = append(locals, g.local(n))
		}
		imp := g.local(c.Leader.Name)
		imp.LeaseID = c.Leader.Lease + 1
		locals = append(locals, imp)
		for _, l := range locals {
			in := failover.Input{Cluster: c, DCSReachable: true, Config: g.config(), Local: l, Peers: g.peers(l.Name), Now: t0}
			d := failover.Decide(in)
			if d.Action == failover.ActionPromote {
				require.True(t, holdsValidKey(in), "seed 1 iteration %d: %s promoted without holding a valid key: %s", i, l.Name, d)
				promoters = append(promoters, fmt.Sprintf("%s/%d", l.Name, l.LeaseID))
			}
		}
		require.LessOrEqual(t, len(promoters), 1, "seed 1 iteration %d: token %d/%d promoted by %v", i, c.Leader.CreateRevision, c.Leader.Lease, promoters)
	}
}

// TestPropertyLagBound: no AcquireLeader or Promote by a member further
// than maximum_lag_on_failover behind the reference position, unless an
// operator's failover (a /failover naming no leader) names that member.
func TestPropertyLagBound(t *testing.T) {
	t.Parallel()
	g := newGen(2, false)
	checked := 0
	for i := range iterations {
		in := g.input()
		d := failover.Decide(in)
		if d.Action != failover.ActionAcquireLeader && d.Action != failover.ActionPromote {
			continue
		}
		if f := in.Cluster.Failover; !f.IsEmpty() && f.Leader == "" && f.Candidate == in.Local.Name {
			continue // an operator's failover naming this member overrides the bound
		}
		checked++
		lag := refPosition(in) - in.Local.Position()
		require.LessOrEqual(t, lag, in.Config.MaximumLagOnFailover, "seed 2 iteration %d: %s past the lag bound: %s", i, in.Local.Name, d)
	}
	require.Greater(t, checked, 100, "the generator rarely reaches a race; the property is not exercised")
}

// TestPropertyDeterministic: equal inputs give equal decisions, and Decide
// does not modify its input.
func TestPropertyDeterministic(t *testing.T) {
	t.Parallel()
	for i := range iterations / 5 {
		seed := uint64(1000 + i)
		a, b := newGen(seed, true).input(), newGen(seed, true).input()
		require.True(t, reflect.DeepEqual(a, b), "the generator is not deterministic")
		d1, d2 := failover.Decide(a), failover.Decide(a)
		require.True(t, reflect.DeepEqual(d1, d2), "seed %d: two calls differ:\n%s\n%s", seed, d1, d2)
		d3 := failover.Decide(b)
		require.True(t, reflect.DeepEqual(d1, d3), "seed %d: equal inputs differ:\n%s\n%s", seed, d1, d3)
		require.True(t, reflect.DeepEqual(a, b), "seed %d: Decide modified its input", seed)
	}
}

// TestPropertyInvariants: on any input, including garbage, Decide does not
// panic and its decisions respect the basic safety rules.
func TestPropertyInvariants(t *testing.T) {
	t.Parallel()
	g := newGen(3, true)
	for i := range iterations {
		in := g.input()
		var d failover.Decision
		require.NotPanics(t, func() { d = failover.Decide(in) }, "seed 3 iteration %d", i)
		msg := fmt.Sprintf("seed 3 iteration %d: %s", i, d)
		require.NotEmpty(t, d.Reason, msg)
		require.Equal(t, d.Action == failover.ActionDemote, d.DemoteMode != failover.DemoteNone, msg)
		switch d.Action {
		case failover.ActionPromote, failover.ActionRestartPrimary, failover.ActionRefreshLeader, failover.ActionClearFailover:
			require.True(t, holdsValidKey(in), "leader action without a valid key: %s", msg)
		case failover.ActionAcquireLeader:
			require.True(t, in.DCSReachable && in.Cluster != nil && !in.Cluster.IsLocked(), msg)
			require.NotEqual(t, "", in.Local.Name, msg)
		case failover.ActionProbePeers:
			require.Nil(t, in.Peers, msg)
			require.NotEmpty(t, d.Probe, msg)
			require.Equal(t, in.Local.Memory, d.Memory, msg)
		case failover.ActionBootstrap:
			require.True(t, in.Cluster != nil && !in.Cluster.IsLocked() && in.Cluster.Initialize == nil, msg)
		}
		if d.Action == failover.ActionPromote || d.Action == failover.ActionAcquireLeader {
			require.False(t, in.Config.Pause, msg)
		}
		require.NotPanics(t, func() { failover.FailoverPossible(in, g.name(), g.lsnNear()) }, "seed 3 iteration %d", i)
		require.NotPanics(t, func() {
			_ = failover.ValidateSwitchover(in.Cluster, in.Config, failover.SwitchoverRequest{Leader: g.name(), Candidate: g.name(), Failover: g.chance(0.5)}, in.Peers, in.Now)
		}, "seed 3 iteration %d", i)
	}
}

// TestPropertyTwoPhase: answering a probe request and deciding again never
// asks for the same probe twice, and the second decision depends only on
// the input (Memory of a probe decision is the input's).
func TestPropertyTwoPhase(t *testing.T) {
	t.Parallel()
	g := newGen(4, false)
	for i := range iterations / 2 {
		in := g.input()
		in.Peers = nil
		d := failover.Decide(in)
		if d.Action != failover.ActionProbePeers {
			continue
		}
		in.Peers = g.peers(in.Local.Name)
		if in.Peers == nil {
			in.Peers = []failover.Peer{}
		}
		d2 := failover.Decide(in)
		require.NotEqual(t, failover.ActionProbePeers, d2.Action, "seed 4 iteration %d: probed twice: %s", i, d2)
		in.Local.Memory = d.Memory
		require.Equal(t, d2, failover.Decide(in), "seed 4 iteration %d", i)
	}
}

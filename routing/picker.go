package routing

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// Picker chooses among the nodes eligible for a read, like hasql's
// NodePicker. Both methods are pure functions of their arguments (a picker
// may keep a counter for round-robin); the router calls them concurrently.
type Picker interface {
	// PickNode returns the node to use among nodes, which is never empty and
	// holds only eligible nodes, sorted by name.
	PickNode(nodes []Node) Node
	// CompareNodes orders two eligible nodes by preference (negative: a
	// first). The router tries the others in this order when the picked
	// node cannot be reached.
	CompareNodes(a, b Node) int
}

// RoundRobin returns a Picker that takes the eligible nodes in turn. It is
// the default.
func RoundRobin() Picker { return &roundRobin{} }

type roundRobin struct{ n atomic.Uint64 }

func (p *roundRobin) PickNode(nodes []Node) Node {
	return nodes[(p.n.Add(1)-1)%uint64(len(nodes))]
}

func (p *roundRobin) CompareNodes(a, b Node) int { return cmp.Compare(a.Name, b.Name) }

// LeastLag returns a Picker that takes the replica with the least lag,
// taking tied ones in turn.
func LeastLag() Picker { return &leastLag{} }

type leastLag struct{ n atomic.Uint64 }

func lagKey(n Node) int64 {
	if n.Role == RolePrimary {
		return 0
	}
	if n.Lag < 0 {
		return 1<<63 - 1
	}
	return n.Lag
}

func (p *leastLag) PickNode(nodes []Node) Node {
	return pickMin(nodes, &p.n, func(n Node) int64 { return lagKey(n) })
}

func (p *leastLag) CompareNodes(a, b Node) int {
	return cmp.Or(cmp.Compare(lagKey(a), lagKey(b)), cmp.Compare(a.Name, b.Name))
}

// LowestLatency returns a Picker that takes the node whose last probe
// answered fastest, taking tied ones in turn. Nodes without a probed latency
// come last; when no node has one it behaves as RoundRobin.
func LowestLatency() Picker { return &lowestLatency{} }

type lowestLatency struct{ n atomic.Uint64 }

func latencyKey(n Node) int64 {
	if n.Latency <= 0 {
		return 1<<63 - 1
	}
	return int64(n.Latency)
}

func (p *lowestLatency) PickNode(nodes []Node) Node {
	return pickMin(nodes, &p.n, latencyKey)
}

func (p *lowestLatency) CompareNodes(a, b Node) int {
	return cmp.Or(cmp.Compare(latencyKey(a), latencyKey(b)), cmp.Compare(a.Name, b.Name))
}

// pickMin returns one of the nodes with the smallest key, in turn.
func pickMin(nodes []Node, counter *atomic.Uint64, key func(Node) int64) Node {
	best := key(nodes[0])
	for _, n := range nodes[1:] {
		best = min(best, key(n))
	}
	var tied []Node
	for _, n := range nodes {
		if key(n) == best {
			tied = append(tied, n)
		}
	}
	if len(tied) == 1 {
		return tied[0]
	}
	return tied[(counter.Add(1)-1)%uint64(len(tied))]
}

// order returns candidates with the picked node first and the others in
// the picker's preference order. It is pure apart from the picker's
// counter.
func order(p Picker, candidates []Node) []Node {
	if len(candidates) == 0 {
		return nil
	}
	first := p.PickNode(candidates)
	out := make([]Node, 0, len(candidates))
	out = append(out, first)
	rest := make([]Node, 0, len(candidates)-1)
	for _, n := range candidates {
		if n.Name != first.Name {
			rest = append(rest, n)
		}
	}
	slices.SortStableFunc(rest, p.CompareNodes)
	return append(out, rest...)
}

// Criterion says which nodes an acquisition may use, in hasql's
// vocabulary.
type Criterion int

// Criteria.
const (
	// Primary: the primary only.
	Primary Criterion = iota + 1
	// Standby: a replica within the lag bound only.
	Standby
	// PreferStandby: a replica within the lag bound, else the primary.
	PreferStandby
	// PreferPrimary: the primary, else a replica within the lag bound.
	PreferPrimary
	// Alive: any of them, the picker choosing among the replicas within the
	// lag bound and the primary alike.
	Alive
)

// String returns the criterion's name.
func (c Criterion) String() string {
	switch c {
	case Primary:
		return "primary"
	case Standby:
		return "standby"
	case PreferStandby:
		return "prefer-standby"
	case PreferPrimary:
		return "prefer-primary"
	case Alive:
		return "alive"
	}
	return "invalid"
}

// Candidates returns the nodes an acquisition under c would try, in order:
// the picker's choice first, then the fallbacks. maxLag bounds replica lag in
// bytes (negative: no bound). It does not wait and does no I/O; an empty
// result means the acquisition would wait for the topology to change.
func (t *Topology) Candidates(c Criterion, maxLag int64, p Picker) []Node {
	primary, hasPrimary := t.Primary()
	var ps []Node
	if hasPrimary {
		ps = []Node{primary}
	}
	switch c {
	case Primary:
		return ps
	case Standby:
		return order(p, t.Replicas(maxLag))
	case PreferStandby:
		return append(order(p, t.Replicas(maxLag)), ps...)
	case PreferPrimary:
		return append(ps, order(p, t.Replicas(maxLag))...)
	case Alive:
		all := append(t.Replicas(maxLag), ps...)
		slices.SortFunc(all, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
		return order(p, all)
	}
	return nil
}

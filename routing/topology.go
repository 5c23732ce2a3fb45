package routing

import (
	"cmp"
	"slices"
	"time"

	"github.com/pgha/pgha/dcs"
)

// Role is what the router treats a node as.
type Role int8

// Node roles.
const (
	// RoleUnknown: neither the source nor a probe says the node may serve
	// (not yet probed, unreachable, demoted, starting, or writable without
	// being the leader). It gets no traffic.
	RoleUnknown Role = iota
	// RolePrimary: the node writes go to (the DCS leader, or the one
	// writable host).
	RolePrimary
	// RoleReplica: a standby that may serve reads within the lag bound.
	RoleReplica
)

// String returns "unknown", "primary" or "replica".
func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return "unknown"
}

// Node is one member of the cluster as the router sees it, in a Topology.
type Node struct {
	// Name is the member name (FromDCS) or "host:port" (FromHosts).
	Name string
	// Addr is the host:port the router connects to ("" when the member
	// published no conn_url; such a node gets no traffic).
	Addr string
	// Role is the role the router gives the node.
	Role Role
	// MemberRole is the role the member publishes in the DCS ("primary",
	// "replica", "demoted", ...); "" for FromHosts.
	MemberRole string
	// State is the member's state ("running", "starting", ...), or
	// "unreachable" when the last probe failed. FromHosts reports "running"
	// for a node that answers.
	State string
	// ReplicationState is "streaming" for a replica whose WAL receiver is
	// streaming, "" when unknown.
	ReplicationState string
	// Timeline is the node's timeline (0 when unknown).
	Timeline int64
	// LSN is the primary's current WAL position or a replica's replay
	// position (0 when unknown).
	LSN LSN
	// Lag is how many bytes a replica's LSN is behind Topology.PrimaryLSN,
	// -1 when either is unknown, 0 for the primary.
	Lag int64
	// Latency is the round trip of the last probe (0 when not probed).
	Latency time.Duration
	// NoLoadBalance reports the member's noloadbalance tag: it never serves
	// reads.
	NoLoadBalance bool
	// Probed is true when Role, LSN, Latency and ReplicationState come from
	// a probe of the server itself, fresh when the topology was built.
	Probed bool
	// Problem says why the node is not usable ("" when it is), e.g. the
	// last probe's error.
	Problem string
	// Tags are the member's tags (nil for FromHosts).
	Tags dcs.Tags
}

// Epoch identifies a primary's tenure: the leader's name, the leader key's
// create revision (which changes every time the key is created anew) and
// the timeline. The router tags its primary pool with the Epoch it was
// created for and fences that pool when the epoch ends.
type Epoch struct {
	// Leader is the primary's name ("" when there is no primary).
	Leader string
	// Revision is the leader key's create revision (FromDCS); 0 for sources
	// without one.
	Revision int64
	// Timeline is the primary's timeline as last seen (0 when unknown).
	Timeline int64
}

// IsZero reports whether the epoch names no primary.
func (e Epoch) IsZero() bool { return e.Leader == "" }

// SameTenure reports whether e and o are the same tenure of the same
// primary. With a revision (FromDCS) the leader's name and the leader key's
// create revision decide, so a timeline switch of a leader that promoted
// within its tenure is not a new epoch. Without one (FromHosts) the timeline
// takes its place: a host that is primary again on a new timeline was
// demoted and promoted in between.
func (e Epoch) SameTenure(o Epoch) bool {
	if e.Leader != o.Leader || e.Revision != o.Revision {
		return false
	}
	if e.Revision == 0 && e.Timeline != o.Timeline {
		return false
	}
	return true
}

// Switchover is a planned switchover named in the DCS (/failover with the
// current leader set).
type Switchover struct {
	// From is the leader the request names.
	From string
	// To is the candidate ("" for any healthy member).
	To string
	// ScheduledAt is when the switchover is due (zero: now).
	ScheduledAt time.Time
	// Revision identifies the request (the key's mod revision).
	Revision int64
}

// Conflict is a node acting as a primary that the router does not send
// writes to: a writable member that is not the DCS leader, or, for
// FromHosts, a second writable host. It is reported through
// Hooks.OnConflict and counted in Stats.Conflicts.
type Conflict struct {
	// Node is the member that claims or acts as primary.
	Node string
	// Epoch is the tenure the router follows (its Leader gets the writes; ""
	// when the router could not choose).
	Epoch Epoch
	// Reason says what was seen.
	Reason string
}

// Topology is an immutable snapshot of the cluster as the router sees it:
// the source's view merged with the router's probes. Routing decisions are
// pure functions of it. Never modify a Topology you got from the router.
type Topology struct {
	// Epoch is the current primary's tenure (zero Leader: no primary).
	Epoch Epoch
	// Nodes are every known member, sorted by name.
	Nodes []Node
	// PrimaryLSN is the primary's position that replica lag is measured
	// against: the primary's probed current position, else what the
	// source publishes (the leader's xlog_location, /status optime).
	PrimaryLSN LSN
	// Switchover is the pending planned switchover, nil when none.
	Switchover *Switchover
	// Holding is true while the router holds new write acquisitions for a
	// planned switchover.
	Holding bool
	// Conflicts lists nodes acting as primary besides the one followed.
	Conflicts []Conflict
	// Revision is the source's revision of the view (the DCS revision).
	Revision int64
	// Taken is when the snapshot was built (local clock).
	Taken time.Time
}

// Primary returns the node writes go to, if there is one.
func (t *Topology) Primary() (Node, bool) {
	if t == nil || t.Epoch.Leader == "" {
		return Node{}, false
	}
	n, ok := t.Node(t.Epoch.Leader)
	if !ok || n.Role != RolePrimary || n.Addr == "" {
		return Node{}, false
	}
	return n, true
}

// Node returns the node with the given name.
func (t *Topology) Node(name string) (Node, bool) {
	if t == nil {
		return Node{}, false
	}
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n Node, name string) int { return cmp.Compare(n.Name, name) })
	if !ok {
		return Node{}, false
	}
	return t.Nodes[i], true
}

// Replicas returns the nodes that may serve reads with at most maxLag bytes
// of lag (negative: any known or unknown lag), in name order: replicas that
// are running, streaming (or whose replication state is unknown), not
// tagged noloadbalance, reachable, and within the bound.
func (t *Topology) Replicas(maxLag int64) []Node {
	if t == nil {
		return nil
	}
	var out []Node
	for _, n := range t.Nodes {
		if Readable(n, maxLag) {
			out = append(out, n)
		}
	}
	return out
}

// Readable reports whether n may serve reads with at most maxLag bytes of
// lag (negative: no bound). It is the rule Topology.Replicas applies.
func Readable(n Node, maxLag int64) bool {
	if n.Role != RoleReplica || n.Addr == "" || n.NoLoadBalance || n.Problem != "" {
		return false
	}
	if n.State != "running" {
		return false
	}
	if n.ReplicationState != "" && n.ReplicationState != "streaming" {
		return false
	}
	if maxLag < 0 {
		return true
	}
	return n.Lag >= 0 && n.Lag <= maxLag
}

// View is what a Source knows about the cluster at one moment. Sources
// publish a fresh View on every change; the router merges it with its probes
// into a Topology.
type View struct {
	// Nodes are the members (unsorted is fine). Role is the source's
	// decision: the leader RolePrimary, replicas RoleReplica, others
	// RoleUnknown. With RolesByProbe the probes decide and Role is ignored.
	Nodes []Node
	// Leader names the primary (authoritative sources); "" when none.
	Leader string
	// LeaderRevision identifies the leader's tenure (the leader key's create
	// revision).
	LeaderRevision int64
	// RolesByProbe says the source knows addresses only: a node is primary
	// or replica as its probe finds it (pg_is_in_recovery()).
	RolesByProbe bool
	// PrimaryLSN is the source's idea of the primary's position (0 when it
	// has none); a fresh probe of the primary takes precedence.
	PrimaryLSN LSN
	// Switchover is a pending planned switchover, nil when none.
	Switchover *Switchover
	// Revision is the source's revision (for logs and Topology.Revision).
	Revision int64
}

// probeResult is one probe of one node.
type probeResult struct {
	addr       string
	at         time.Time
	err        error
	inRecovery bool
	lsn        LSN // current position (primary) or replay position (replica)
	timeline   int64
	walRecv    string
	latency    time.Duration
	// lastOK is the node's last successful probe, kept on a failed one: a
	// role learnt by probing survives failures for a probe TTL.
	lastOK *probeResult
}

// buildInput is everything buildTopology needs; it does no I/O and reads no
// clock.
type buildInput struct {
	view   *View
	probes map[string]probeResult
	now    time.Time
	// probeTTL: probe results older than this are ignored.
	probeTTL time.Duration
	// epoch and epochSince are the current tenure and when it was first
	// seen: a probe older than that cannot report a conflict with it.
	epoch      Epoch
	epochSince time.Time
}

// buildTopology merges a source view with probe results. It is pure.
func buildTopology(in buildInput) *Topology {
	v := in.view
	t := &Topology{Taken: in.now, Revision: v.Revision, Switchover: v.Switchover}
	t.Nodes = make([]Node, 0, len(v.Nodes))
	fresh := map[string]probeResult{}
	for _, n := range v.Nodes {
		n.Lag = -1
		n.Latency = 0
		n.Probed = false
		n.Problem = ""
		if n.Addr == "" {
			n.Problem = "no address"
		}
		if p, ok := in.probes[n.Name]; ok && p.addr == n.Addr && n.Addr != "" && in.now.Sub(p.at) <= in.probeTTL {
			fresh[n.Name] = p
			if p.err != nil {
				n.State = "unreachable"
				n.Problem = "probe: " + p.err.Error()
			} else {
				n.Probed = true
				n.Latency = p.latency
				n.LSN = p.lsn
				if p.timeline != 0 {
					n.Timeline = p.timeline
				}
				if p.inRecovery {
					n.ReplicationState = p.walRecv
				} else {
					n.ReplicationState = ""
				}
				if v.RolesByProbe {
					n.State = "running"
				}
			}
		} else if v.RolesByProbe {
			n.Role = RoleUnknown
			if n.Problem == "" {
				n.Problem = "not probed yet"
			}
		}
		t.Nodes = append(t.Nodes, n)
	}
	slices.SortFunc(t.Nodes, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })

	leader, rev := v.Leader, v.LeaderRevision
	if v.RolesByProbe {
		leader, rev = "", 0
		var writable, retained []int
		for i := range t.Nodes {
			n := &t.Nodes[i]
			n.Role = RoleUnknown
			p, ok := fresh[n.Name]
			kept := false
			if ok && p.err != nil && p.lastOK != nil && p.lastOK.addr == n.Addr && in.now.Sub(p.lastOK.at) <= in.probeTTL {
				// A failed probe does not end a role learnt a moment ago
				// (the node serves no reads meanwhile: it has a Problem).
				p, ok, kept = *p.lastOK, true, true
				if n.Timeline == 0 {
					n.Timeline = p.timeline
				}
			}
			if !ok || p.err != nil {
				continue
			}
			switch {
			case p.inRecovery:
				n.Role = RoleReplica
			case kept:
				retained = append(retained, i)
			default:
				writable = append(writable, i)
			}
		}
		// A host that answered as writable just now outranks one that was
		// writable before its probes started failing (stopped, fenced, or
		// cut off); the latter keeps the role only when nobody else has it.
		if len(writable) == 0 {
			writable = retained
		}
		// One writable host is the primary. Several: the highest timeline
		// wins if it is unique (the others were demoted in a history that
		// moved on without them); otherwise none does.
		best, tie := -1, false
		for _, i := range writable {
			switch {
			case best < 0 || t.Nodes[i].Timeline > t.Nodes[best].Timeline:
				best, tie = i, false
			case t.Nodes[i].Timeline == t.Nodes[best].Timeline:
				tie = true
			}
		}
		if best >= 0 && !tie {
			t.Nodes[best].Role = RolePrimary
			leader = t.Nodes[best].Name
		}
		for _, i := range writable {
			if t.Nodes[i].Name == leader {
				continue
			}
			reason := "writable host that is not the chosen primary"
			if leader == "" {
				reason = "several writable hosts on the same timeline"
			}
			t.Conflicts = append(t.Conflicts, Conflict{Node: t.Nodes[i].Name, Reason: reason})
		}
	} else {
		for i := range t.Nodes {
			n := &t.Nodes[i]
			if n.Name == leader {
				n.Role = RolePrimary
				continue
			}
			if n.Role == RolePrimary {
				n.Role = RoleUnknown
			}
			p, probed := fresh[n.Name]
			switch {
			case probed && p.err == nil && !p.inRecovery:
				// A writable server that is not the leader: never a
				// replica, and a conflict if the probe is from this
				// tenure (an older one may predate a switchover).
				n.Role = RoleUnknown
				n.Problem = "writable but not the leader"
				if !p.at.Before(in.epochSince) {
					t.Conflicts = append(t.Conflicts, Conflict{Node: n.Name, Reason: "writable but not the leader"})
				}
			case !probed && dcs.IsPrimaryRole(n.MemberRole) && n.State == "running":
				n.Role = RoleUnknown
				n.Problem = "publishes role " + n.MemberRole + " but is not the leader"
				t.Conflicts = append(t.Conflicts, Conflict{Node: n.Name, Reason: n.Problem})
			}
		}
	}

	t.Epoch = Epoch{Leader: leader, Revision: rev}
	if p, ok := t.Node(leader); ok {
		t.Epoch.Timeline = p.Timeline
		i, _ := slices.BinarySearchFunc(t.Nodes, leader, func(n Node, name string) int { return cmp.Compare(n.Name, name) })
		t.Nodes[i].Lag = 0
		if p.Probed && fresh[p.Name].err == nil && !fresh[p.Name].inRecovery {
			t.PrimaryLSN = p.LSN
		} else {
			t.PrimaryLSN = max(v.PrimaryLSN, p.LSN)
		}
	} else if leader != "" {
		t.PrimaryLSN = v.PrimaryLSN
	}
	for i := range t.Conflicts {
		t.Conflicts[i].Epoch = t.Epoch
	}
	if t.PrimaryLSN > 0 {
		for i := range t.Nodes {
			n := &t.Nodes[i]
			if n.Role != RoleReplica || n.LSN == 0 {
				continue
			}
			if n.LSN >= t.PrimaryLSN {
				n.Lag = 0
			} else {
				n.Lag = int64(t.PrimaryLSN - n.LSN)
			}
		}
	}
	return t
}

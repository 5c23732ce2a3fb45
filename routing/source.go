package routing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pgha/pgha/dcs"
)

// Source follows a cluster's topology for a Router. FromDCS and FromHosts
// are the two the package provides.
type Source interface {
	// Run follows the cluster until ctx ends and calls publish with each
	// new View, the first as soon as it has one. publish does not block
	// for long; the View (and its slices) must not be modified afterwards.
	// Run returns nil when ctx ends; the router restarts a Run that returned
	// early (with backoff), logging its error.
	Run(ctx context.Context, publish func(View)) error
}

// FromDCS returns a Source that follows a cluster through its DCS, as pgha
// and Patroni keep it: the leader key decides the primary (its create
// revision is the epoch), member keys give each node's address (the host and
// port of conn_url), state, role, replication state, positions and tags,
// and /failover announces planned switchovers. Changes are pushed by
// reader.Watch: a leader change reaches the router as an event, with no
// polling. reader is typically a read-only store (etcddcs.Config with no
// Name, or a memdcs client); the Router does not close it.
func FromDCS(reader dcs.Reader) Source { return &dcsSource{r: reader} }

type dcsSource struct{ r dcs.Reader }

func (s *dcsSource) validate() error {
	if s.r == nil {
		return errors.New("FromDCS: the reader is nil")
	}
	return nil
}

func (s *dcsSource) Run(ctx context.Context, publish func(View)) error {
	// Watch first, then read: every change after the snapshot is in the
	// stream, and older events are skipped by revision.
	events, err := s.r.Watch(ctx)
	if err != nil {
		return fmt.Errorf("dcs watch: %w", err)
	}
	c, err := s.r.Cluster(ctx)
	if err != nil {
		return fmt.Errorf("dcs read: %w", err)
	}
	last := c.Revision
	publish(ViewFromCluster(c))
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("dcs watch ended")
			}
			if ev.Cluster == nil || (ev.Type != dcs.EventReset && ev.Cluster.Revision <= last) {
				continue
			}
			last = ev.Cluster.Revision
			publish(ViewFromCluster(ev.Cluster))
		}
	}
}

// ViewFromCluster turns a DCS snapshot into a View: the leader is the
// primary, members publishing role "replica" are replicas, the rest get no
// traffic. Addresses come from conn_url; positions from xlog_location,
// replay_lsn and /status. It is what FromDCS publishes, exported for tests
// and custom sources.
func ViewFromCluster(c *dcs.Cluster) View {
	v := View{Revision: c.Revision}
	if c.Leader != nil {
		v.Leader, v.LeaderRevision = c.Leader.Name, c.Leader.CreateRevision
	}
	v.PrimaryLSN = LSN(max(c.Status.Optime, 0))
	seenLeader := false
	for _, m := range c.Members {
		d := m.Data
		n := Node{
			Name: m.Name, Addr: AddrFromConnURL(d.ConnURL), MemberRole: d.Role, State: d.State,
			ReplicationState: d.ReplicationState, Timeline: d.Timeline, NoLoadBalance: d.Tags.NoLoadBalance(),
			Tags: d.Tags, LSN: LSN(max(d.Position(), 0)),
		}
		switch {
		case m.Name == v.Leader:
			seenLeader = true
			n.Role = RolePrimary
			v.PrimaryLSN = max(v.PrimaryLSN, n.LSN)
			if n.Timeline == 0 {
				n.Timeline = c.Timeline()
			}
		case d.Role == dcs.RoleReplica:
			n.Role = RoleReplica
			if d.ReplayLSN != nil {
				n.LSN = LSN(max(*d.ReplayLSN, 0))
			}
		}
		v.Nodes = append(v.Nodes, n)
	}
	if v.Leader != "" && !seenLeader {
		// The leader key names a member without a member key: it is the
		// primary, but the router cannot reach it.
		v.Nodes = append(v.Nodes, Node{Name: v.Leader, Role: RolePrimary, Timeline: c.Timeline()})
	}
	if f := c.Failover; f != nil && !f.IsEmpty() && f.Leader != "" {
		v.Switchover = &Switchover{From: f.Leader, To: f.Candidate, ScheduledAt: f.ScheduledAt, Revision: f.ModRevision}
	}
	return v
}

// AddrFromConnURL returns host:port from a member's conn_url
// ("postgres://10.0.0.1:5432/postgres"); the port defaults to 5432. It
// returns "" when the URL has no host.
func AddrFromConnURL(connURL string) string {
	if connURL == "" {
		return ""
	}
	u, err := url.Parse(connURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// FromHosts returns a Source for setups without DCS access: a fixed list of
// "host:port" (or "host", port 5432) addresses whose roles the router's
// probes decide, as hasql does. The one host not in recovery is the
// primary; when several are writable, the highest timeline wins if it is
// unique, else none does (and a Conflict is reported). The epoch of a
// primary is its address and timeline. Nodes are named by their address.
func FromHosts(hosts ...string) Source { return &hostsSource{hosts: slices.Clone(hosts)} }

type hostsSource struct{ hosts []string }

func normalizeHost(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", errors.New("empty host")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or a bare IPv6 address).
		host, port = strings.Trim(h, "[]"), "5432"
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no host name", h)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("host %q has an invalid port", h)
	}
	return net.JoinHostPort(host, port), nil
}

func (s *hostsSource) validate() error {
	if len(s.hosts) == 0 {
		return errors.New("FromHosts: no hosts")
	}
	seen := map[string]bool{}
	var errs []error
	for _, h := range s.hosts {
		n, err := normalizeHost(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("FromHosts: %w", err))
			continue
		}
		if seen[n] {
			errs = append(errs, fmt.Errorf("FromHosts: %s listed twice", n))
		}
		seen[n] = true
	}
	return errors.Join(errs...)
}

func (s *hostsSource) Run(ctx context.Context, publish func(View)) error {
	v := View{RolesByProbe: true}
	for _, h := range s.hosts {
		n, err := normalizeHost(h)
		if err != nil {
			return err
		}
		v.Nodes = append(v.Nodes, Node{Name: n, Addr: n})
	}
	publish(v)
	<-ctx.Done()
	return nil
}

package routing_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/faultproxy"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// A real pgha cluster in-process: embedded etcd, and per member a Postgres
// instance, an etcd client behind a fault proxy (to partition it), an
// ha.Node and its REST API. The wiring follows ha/cluster_test.go.

type haNode struct {
	name  string
	inst  *pg.Instance
	proxy *faultproxy.Proxy
	node  *ha.Node
}

type haCluster struct {
	t     testing.TB
	path  dcs.Path
	nodes []*haNode
}

var haScope atomic.Int64

// haDynamic is the dynamic configuration the test clusters bootstrap
// with: a short TTL so that a failover takes seconds.
var haDynamic = map[string]any{"ttl": 6, "loop_wait": 2, "retry_timeout": 2,
	"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}

func startHACluster(t testing.TB, n int, tags map[string]dcs.Tags) *haCluster {
	t.Helper()
	pgtest.BinDir(t)
	etcd := sharedEtcd(t)
	c := &haCluster{t: t, path: dcs.Path{Namespace: "pgha-routing-test", Scope: fmt.Sprintf("c%d", haScope.Add(1))}}
	for i := range n {
		name := fmt.Sprintf("node%d", i+1)
		m := cluster.StartMember(t, etcd.Addr, c.path, name, haDynamic, func(cfg *ha.Config) { cfg.Tags = tags[name] })
		c.nodes = append(c.nodes, &haNode{name: name, inst: m.Inst, proxy: m.Proxy, node: m.Node})
	}
	return c
}

// reader returns a read-only DCS client for the router, straight to etcd.
func (c *haCluster) reader() dcs.Reader {
	c.t.Helper()
	s, err := etcddcs.New(context.Background(), etcddcs.Config{
		Endpoints: []string{"http://" + sharedEtcd(c.t).Addr}, Path: c.path, RetryTimeout: 2 * time.Second,
	})
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = s.Close() })
	return s
}

func (c *haCluster) byName(name string) *haNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func inRecovery(inst *pg.Instance) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := inst.Status(ctx)
	if err != nil {
		return false, err
	}
	return st.Role != pg.RolePrimary, nil
}

// waitStable waits until one node leads with a writable Postgres and every
// other node (but skip) streams.
func (c *haCluster) waitStable(timeout time.Duration, skip *haNode) *haNode {
	c.t.Helper()
	var primary *haNode
	pgtest.Eventually(c.t, timeout, func() error {
		primary = nil
		for _, n := range c.nodes {
			if n == skip {
				continue
			}
			if s := n.node.Status(); s.IsLeader {
				if rec, err := inRecovery(n.inst); err != nil || rec {
					return fmt.Errorf("%s leads but is not writable yet (%v)", n.name, err)
				}
				primary = n
			}
		}
		if primary == nil {
			return fmt.Errorf("no leader")
		}
		for _, n := range c.nodes {
			if n == primary || n == skip {
				continue
			}
			if s := n.node.Status(); s.ReplicationState != "streaming" {
				return fmt.Errorf("%s is not streaming: %s %s %s", n.name, s.State, s.Role, s.LastDecision)
			}
		}
		return nil
	})
	return primary
}

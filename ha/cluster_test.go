package ha_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/faultproxy"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

var etcd *etcdtest.Etcd

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	var err error
	etcd, err = etcdtest.Start("ha-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ha tests: cannot start embedded etcd:", err)
		return 1
	}
	defer etcd.Stop()
	return r.m.Run()
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(mainRunner{m}) }

// tnode is one in-process member: Postgres, its DCS client behind a fault
// proxy, the HA node and its REST API.
type tnode struct {
	name   string
	inst   *pg.Instance
	proxy  *faultproxy.Proxy
	node   *ha.Node
	cancel context.CancelFunc
	done   chan error
}

type tcluster struct {
	t     *testing.T
	path  dcs.Path
	nodes []*tnode
}

var scopeSeq atomic.Int64

func newCluster(t *testing.T, n int, dynamic map[string]any) *tcluster {
	return newClusterWith(t, n, dynamic, nil)
}

// newClusterWith is newCluster with edit, when not nil, applied to each
// node's Config.
func newClusterWith(t *testing.T, n int, dynamic map[string]any, edit func(cfg *ha.Config)) *tcluster {
	pgtest.BinDir(t)
	c := &tcluster{t: t, path: dcs.Path{Namespace: "pgha-ha-test", Scope: fmt.Sprintf("c%d", scopeSeq.Add(1))}}
	for i := range n {
		c.nodes = append(c.nodes, c.startNode(fmt.Sprintf("node%d", i+1), dynamic, edit))
	}
	return c
}

// startNode starts member name, with edit (when not nil) applied to its
// Config; the node's Run ends when the test does (or at stopAgent).
func (c *tcluster) startNode(name string, dynamic map[string]any, edit func(cfg *ha.Config)) *tnode {
	m := cluster.StartMember(c.t, etcd.Addr, c.path, name, dynamic, edit)
	return &tnode{name: m.Name, inst: m.Inst, proxy: m.Proxy, node: m.Node, cancel: m.Cancel, done: m.Done}
}

func conn(ctx context.Context, inst *pg.Instance) (*pgx.Conn, error) {
	cfg := inst.Config()
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=2",
		"127.0.0.1", cfg.Port, cfg.Superuser.Username, cfg.Superuser.Password))
}

// writable reports whether the node's Postgres accepts writes now.
func writable(ctx context.Context, inst *pg.Instance) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cn, err := conn(ctx, inst)
	if err != nil {
		return false
	}
	defer cn.Close(context.Background())
	var inRecovery bool
	if err := cn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return false
	}
	return !inRecovery
}

// primary waits until exactly one node is a writable primary that the DCS
// names as leader, and every other node streams from it.
func (c *tcluster) waitStable(timeout time.Duration) *tnode { return c.waitPrimary(timeout, nil, true) }

// waitPrimary waits for a writable leader other than not; with allStreaming
// every other node must stream from it too.
func (c *tcluster) waitPrimary(timeout time.Duration, not *tnode, allStreaming bool) *tnode {
	var primary *tnode
	pgtest.Eventually(c.t, timeout, func() error {
		primary = nil
		ctx := context.Background()
		for _, n := range c.nodes {
			if writable(ctx, n.inst) {
				if primary != nil {
					return fmt.Errorf("two writable primaries: %s and %s", primary.name, n.name)
				}
				primary = n
			}
		}
		if primary == nil {
			return fmt.Errorf("no writable primary")
		}
		if primary == not {
			return fmt.Errorf("%s is still the primary", not.name)
		}
		if s := primary.node.Status(); !s.IsLeader {
			return fmt.Errorf("%s is writable but not the leader: %+v", primary.name, s.LastDecision)
		}
		for _, n := range c.nodes {
			if n == primary || (!allStreaming && n == not) {
				continue
			}
			s := n.node.Status()
			if s.ReplicationState != "streaming" || s.Upstream != "" && s.Upstream != primary.name {
				return fmt.Errorf("%s is not streaming from %s: state=%s role=%s replication=%s decision=%s",
					n.name, primary.name, s.State, s.Role, s.ReplicationState, s.LastDecision)
			}
		}
		return nil
	})
	return primary
}

// splitBrainChecker polls every node and records any instant at which two
// of them accept writes.
type splitBrainChecker struct {
	mu    sync.Mutex
	seen  []string
	stop  chan struct{}
	done  chan struct{}
	polls int
}

func (c *tcluster) checkSplitBrain() *splitBrainChecker {
	sb := &splitBrainChecker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sb.done)
		for {
			select {
			case <-sb.stop:
				return
			default:
			}
			var w []string
			var wmu sync.Mutex
			var wg sync.WaitGroup
			for _, n := range c.nodes {
				wg.Go(func() {
					if writable(context.Background(), n.inst) {
						wmu.Lock()
						w = append(w, n.name)
						wmu.Unlock()
					}
				})
			}
			wg.Wait()
			sb.mu.Lock()
			sb.polls++
			if len(w) > 1 {
				sb.seen = append(sb.seen, fmt.Sprint(time.Now().Format(time.StampMilli), w))
			}
			sb.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	c.t.Cleanup(func() { sb.finish() })
	return sb
}

func (sb *splitBrainChecker) finish() []string {
	select {
	case <-sb.stop:
	default:
		close(sb.stop)
	}
	<-sb.done
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.seen
}

func insert(t *testing.T, inst *pg.Instance, v int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cn, err := conn(ctx, inst)
	require.NoError(t, err)
	defer cn.Close(ctx)
	_, err = cn.Exec(ctx, "CREATE TABLE IF NOT EXISTS t (v int)")
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "INSERT INTO t VALUES ($1)", v)
	require.NoError(t, err)
}

func count(inst *pg.Instance) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := conn(ctx, inst)
	if err != nil {
		return 0, err
	}
	defer cn.Close(ctx)
	var n int
	err = cn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
	return n, err
}

func TestClusterBootstrapPartitionSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd and PostgreSQL")
	}
	c := newCluster(t, 3, map[string]any{"ttl": 6, "loop_wait": 2, "retry_timeout": 2,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}})
	sb := c.checkSplitBrain()

	// Bootstrap: exactly one initdb, the others clone and stream.
	p1 := c.waitStable(90 * time.Second)
	insert(t, p1.inst, 1)
	for _, n := range c.nodes {
		pgtest.Eventually(t, 20*time.Second, func() error {
			if k, err := count(n.inst); err != nil || k != 1 {
				return fmt.Errorf("%s has %d rows (%v)", n.name, k, err)
			}
			return nil
		})
	}
	raw, err := etcd.Admin.Get(context.Background(), c.path.MemberKey(p1.name))
	require.NoError(t, err)
	require.Len(t, raw.Kvs, 1)
	m, err := dcs.DecodeMember(raw.Kvs[0].Value)
	require.NoError(t, err)
	require.Equal(t, dcs.RolePrimary, m.Role)
	require.Equal(t, "running", m.State)
	require.NotNil(t, m.XLogLocation)
	require.NotZero(t, raw.Kvs[0].Lease, "member key carries the node's lease")

	// The REST API answers as Patroni's did on a fresh cluster.
	for _, n := range c.nodes {
		dir := "rest_replica"
		if n == p1 {
			dir = "rest_leader"
		}
		checkAgainstGolden(t, n.node.Handler(), dir)
	}

	// The primary loses etcd: it must fence itself before anyone promotes.
	p1.proxy.Pause()
	p2 := c.waitPrimary(60*time.Second, p1, false)
	require.NotEqual(t, p1.name, p2.name)
	insert(t, p2.inst, 2)
	p1.proxy.Resume()
	// The old primary rejoins as a replica of the new one.
	pgtest.Eventually(t, 60*time.Second, func() error {
		if k, err := count(p1.inst); err != nil || k != 2 {
			return fmt.Errorf("%s has %d rows (%v); decision %s", p1.name, k, err, p1.node.Status().LastDecision)
		}
		return nil
	})
	c.waitStable(30 * time.Second)

	// Switchover to a named candidate.
	var cand *tnode
	for _, n := range c.nodes {
		if n != p2 {
			cand = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cand.node.Switchover(ctx, cand.name, time.Time{}))
	pgtest.Eventually(t, 30*time.Second, func() error {
		if !writable(ctx, cand.inst) || !cand.node.Status().IsLeader {
			return fmt.Errorf("%s not yet primary: %s", cand.name, cand.node.Status().LastDecision)
		}
		return nil
	})
	p3 := c.waitStable(60 * time.Second)
	require.Equal(t, cand.name, p3.name)
	insert(t, p3.inst, 3)

	// A switchover to an unknown member is refused.
	err = p3.node.Switchover(ctx, "nobody", time.Time{})
	require.ErrorIs(t, err, ha.ErrInvalidRequest)

	require.Empty(t, sb.finish(), "two writable primaries at once")
}

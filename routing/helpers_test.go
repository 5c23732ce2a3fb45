package routing_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/routing"
)

// baseConnString holds the credentials every test pool uses; the router
// replaces host and port per node.
const baseConnString = "user=postgres password=" + pgtest.SuperuserPassword + " dbname=postgres sslmode=disable connect_timeout=3"

// fakeCluster is a memdcs cluster: one client per member, and a read-only
// one for the router.
type fakeCluster struct {
	srv    *memdcs.Server
	path   dcs.Path
	nodes  map[string]*memdcs.Store
	reader *memdcs.Store
}

var scopeSeq struct {
	sync.Mutex
	n int
}

func newFakeCluster(t testing.TB, names ...string) *fakeCluster {
	t.Helper()
	scopeSeq.Lock()
	scopeSeq.n++
	scope := fmt.Sprintf("fake%d", scopeSeq.n)
	scopeSeq.Unlock()
	f := &fakeCluster{srv: memdcs.NewServer(memdcs.Options{}), path: dcs.Path{Scope: scope}, nodes: map[string]*memdcs.Store{}}
	for _, n := range names {
		c, err := f.srv.Client(memdcs.ClientConfig{Path: f.path, Name: n})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		f.nodes[n] = c
	}
	r, err := f.srv.Client(memdcs.ClientConfig{Path: f.path})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	f.reader = r
	return f
}

func i64(v int64) *int64 { return &v }

// member publishes a member key.
func (f *fakeCluster) member(t testing.TB, name, connURL, role string, lsn int64, tags dcs.Tags) {
	t.Helper()
	d := dcs.MemberData{ConnURL: connURL, State: "running", Role: role, XLogLocation: i64(lsn), Tags: tags}
	if role == dcs.RoleReplica {
		d.ReplayLSN, d.ReceiveLSN, d.ReplicationState = i64(lsn), i64(lsn), "streaming"
	}
	require.NoError(t, f.nodes[name].PutMember(context.Background(), d))
}

// lead moves the leader key to name (releasing it from whoever holds it).
func (f *fakeCluster) lead(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	c, err := f.reader.Cluster(ctx)
	require.NoError(t, err)
	if cur := c.LeaderName(); cur != "" && f.nodes[cur] != nil {
		require.NoError(t, f.nodes[cur].ReleaseLeader(ctx, nil))
	}
	if name != "" {
		_, err = f.nodes[name].AcquireLeader(ctx)
		require.NoError(t, err)
	}
}

// leaderChanges returns hooks that report every new epoch on a channel.
func leaderChanges() (routing.Hooks, <-chan routing.Epoch) {
	ch := make(chan routing.Epoch, 64)
	return routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) { ch <- e }}, ch
}

// waitLeader waits until the channel reports an epoch led by name.
func waitLeader(t testing.TB, ch <-chan routing.Epoch, name string) routing.Epoch {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case e := <-ch:
			if e.Leader == name {
				return e
			}
		case <-timeout.C:
			t.Fatalf("the router did not follow %q", name)
		}
	}
}

// waitTopology polls the router's topology until cond holds.
func waitTopology(t testing.TB, r *routing.Router, what string, cond func(*routing.Topology) bool) {
	t.Helper()
	pgtest.Eventually(t, 20*time.Second, func() error {
		if cond(r.Topology()) {
			return nil
		}
		return fmt.Errorf("topology: %s not reached: %+v", what, r.Topology())
	})
}

// serverPort reports which server a query runs on.
func serverPort(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var port int
	err := q.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port)
	return port, err
}

func port(inst *pg.Instance) int { return inst.Config().Port }

// directConn connects to one instance, bypassing the router.
func directConn(t testing.TB, inst *pg.Instance) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d %s", port(inst), baseConnString))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func execOn(t testing.TB, inst *pg.Instance, sqls ...string) {
	t.Helper()
	c := directConn(t, inst)
	for _, s := range sqls {
		_, err := c.Exec(context.Background(), s)
		require.NoError(t, err, s)
	}
	require.NoError(t, c.Close(context.Background()))
}

func countOn(t testing.TB, inst *pg.Instance, sql string) int {
	t.Helper()
	c := directConn(t, inst)
	var n int
	require.NoError(t, c.QueryRow(context.Background(), sql).Scan(&n))
	require.NoError(t, c.Close(context.Background()))
	return n
}

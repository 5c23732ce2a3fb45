package cluster

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/faultproxy"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

var (
	testNodeProcOnce sync.Once
	testNodeProcDir  string
	testNodeProcPath string
	testNodeProcErr  error
)

// NodeProcForTest returns the nodeproc program for a test, built with
// [BuildNodeProc] once per process into a temporary directory
// ([RemoveNodeProcForTest] removes it; call it from TestMain after the tests
// ran). When the build fails the test is skipped, or fails when the CI
// environment variable is set: a CI run that silently skips the process
// tests proves nothing.
func NodeProcForTest(t testing.TB) string {
	t.Helper()
	testNodeProcOnce.Do(func() {
		testNodeProcDir, testNodeProcErr = os.MkdirTemp("", "pgha-nodeproc-")
		if testNodeProcErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		testNodeProcPath, testNodeProcErr = BuildNodeProc(ctx, testNodeProcDir)
	})
	if testNodeProcErr != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("cannot build nodeproc: %v", testNodeProcErr)
		}
		t.Fatalf("cannot build nodeproc: %v", testNodeProcErr)
	}
	return testNodeProcPath
}

// RemoveNodeProcForTest removes the directory [NodeProcForTest] built nodeproc
// into, if it did. TestMain calls it once every test has run.
func RemoveNodeProcForTest() {
	if testNodeProcDir != "" {
		_ = os.RemoveAll(testNodeProcDir)
	}
}

// NewForTest starts a cluster for a test and closes it when the test ends
// (a failing Close fails the test). An empty opts.BinDir becomes
// pgtest.BinDir (so the test is skipped under -short, or without
// PostgreSQL outside CI), and a nil opts.Logger logs to the test's log
// (pgtest.Logger, named "harness"). When New fails the test fails.
func NewForTest(ctx context.Context, t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = pgtest.BinDir(t)
	}
	if opts.Logger == nil {
		opts.Logger = pgtest.Logger(t, "harness")
	}
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	return c
}

// Member is one in-process member for tests that wire ha.Node themselves
// (no Cluster): a PostgreSQL instance from package pgtest, an etcd client
// behind a fault proxy of its own, the node, and its REST API on a free
// port. [StartMember] starts it.
type Member struct {
	// Name is the member name.
	Name string
	// Inst is the member's PostgreSQL.
	Inst *pg.Instance
	// Proxy stands between the member's DCS client and etcd, to cut it off.
	Proxy *faultproxy.Proxy
	// Node is the running node.
	Node *ha.Node
	// Cancel ends the node's Run.
	Cancel context.CancelFunc
	// Done receives what Run returned (capacity 1: whoever takes the
	// value puts it back, so the test's cleanup finds it too).
	Done chan error
}

// StartMember starts member name of the cluster at path, on the etcd
// client endpoint etcdAddr (host:port): the member bootstraps with dynamic
// as Patroni's bootstrap.dcs, and edit, when not nil, changes its Config
// before ha.New. Everything stops when the test ends: Run is cancelled and
// waited for (the test fails when it has not returned within a minute),
// then the API server, the DCS client, the proxy and Postgres are closed.
func StartMember(t testing.TB, etcdAddr string, path dcs.Path, name string, dynamic map[string]any, edit func(cfg *ha.Config)) *Member {
	t.Helper()
	inst := pgtest.New(t, pgtest.Config(t, name))
	proxy, err := faultproxy.New(etcdAddr)
	if err != nil {
		t.Fatalf("cluster: %s: fault proxy: %v", name, err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	store, err := etcddcs.New(context.Background(), etcddcs.Config{
		Endpoints: []string{"http://" + proxy.Addr()}, Path: path, Name: name, RetryTimeout: 2 * time.Second,
		Logger: pgtest.Logger(t, name+" dcs"),
	})
	if err != nil {
		t.Fatalf("cluster: %s: etcd client: %v", name, err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cluster: %s: %v", name, err)
	}
	cfg := ha.Config{
		Name: name, Scope: path.Scope, Store: store, Postgres: inst,
		APIURL:    "http://" + ln.Addr().String() + "/patroni",
		Bootstrap: &ha.Bootstrap{Initdb: pg.InitdbOptions{DataChecksums: true, NoSync: true}, DCS: dynamic},
		Logger:    pgtest.Logger(t, name),
	}
	if edit != nil {
		edit(&cfg)
	}
	node, err := ha.New(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatalf("cluster: %s: ha.New: %v", name, err)
	}
	srv := &http.Server{Handler: node.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	m := &Member{Name: name, Inst: inst, Proxy: proxy, Node: node, Cancel: cancel, Done: make(chan error, 1)}
	go func() { m.Done <- node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-m.Done:
			m.Done <- err
			if err != nil {
				t.Logf("%s: Run: %v", name, err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("%s: Run did not return", name)
		}
	})
	return m
}

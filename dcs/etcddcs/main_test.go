package etcddcs_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/dcstest"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/faultproxy"
)

// One embedded etcd serves every test of the binary; each test works in its
// own scope, so tests do not see each other.
var (
	etcdAddr string           // host:port of the client listener
	admin    *clientv3.Client // direct client for the harness's outside actions
)

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	stop, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcddcs tests: cannot start embedded etcd:", err)
		return 1
	}
	code := r.m.Run()
	stop()
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(mainRunner{m})
}

// startEtcd starts the shared embedded etcd and its admin client.
func startEtcd() (stop func(), err error) {
	e, err := etcdtest.Start("etcddcs-test")
	if err != nil {
		return nil, err
	}
	etcdAddr, admin = e.Addr, e.Admin
	return e.Stop, nil
}

// scopeSeq makes scopes unique within the binary.
var scopeSeq atomic.Int64

var unsafeScope = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// uniquePath returns a cluster path no other test uses.
func uniquePath(t *testing.T) dcs.Path {
	scope := unsafeScope.ReplaceAllString(t.Name(), "_")
	return dcs.Path{Namespace: "pgha-test", Scope: fmt.Sprintf("%s-%d", scope, scopeSeq.Add(1))}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger routes store logs to t.Log, so they show only on failure.
func testLogger(t *testing.T, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   name,
		Level:  hclog.Debug,
		Output: tWriter{t},
	})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// harness implements dcstest.Harness on the embedded etcd. Each node's store
// reaches etcd through its own fault proxy, so Interrupt cuts only that node.
type harness struct {
	t    *testing.T
	path dcs.Path

	mu      sync.Mutex
	stores  map[string]*etcddcs.Store
	proxies map[string]*faultproxy.Proxy
}

var _ dcstest.Harness = (*harness)(nil)

func newHarness(t *testing.T) *harness {
	return &harness{
		t: t, path: uniquePath(t),
		stores: map[string]*etcddcs.Store{}, proxies: map[string]*faultproxy.Proxy{},
	}
}

func (h *harness) Path() dcs.Path { return h.path }

// newStore makes a store for name through a new proxy, with cfg tweaks.
func (h *harness) newStore(t *testing.T, name string, tweak func(*etcddcs.Config)) (*etcddcs.Store, *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.New(etcdAddr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	cfg := etcddcs.Config{
		Endpoints:    []string{"http://" + p.Addr()},
		Path:         h.path,
		Name:         name,
		RetryTimeout: 5 * time.Second,
		Logger:       testLogger(t, "node "+name),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := etcddcs.New(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	h.mu.Lock()
	h.stores[name] = s
	h.proxies[name] = p
	h.mu.Unlock()
	return s, p
}

func (h *harness) NewStore(t *testing.T, name string) dcs.Store {
	s, _ := h.newStore(t, name, nil)
	return s
}

func (h *harness) WriteRaw(t *testing.T, key string, value []byte) {
	t.Helper()
	_, err := admin.Put(testCtx(t), h.path.Key(key), string(value))
	require.NoError(t, err)
}

func (h *harness) ReadRaw(t *testing.T, key string) (dcs.KeyValue, bool) {
	t.Helper()
	resp, err := admin.Get(testCtx(t), h.path.Key(key))
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return dcs.KeyValue{}, false
	}
	kv := resp.Kvs[0]
	return dcs.KeyValue{Key: key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Lease: kv.Lease}, true
}

// ExpireLease revokes the node's lease as found on its member key (or, when
// it has none, the lease its store holds).
func (h *harness) ExpireLease(t *testing.T, name string) {
	t.Helper()
	var id int64
	if kv, ok := h.ReadRaw(t, dcs.KeyMembers+name); ok {
		id = kv.Lease
	}
	if id == 0 {
		h.mu.Lock()
		s := h.stores[name]
		h.mu.Unlock()
		require.NotNil(t, s, "no store for %q", name)
		id = s.LeaseID()
	}
	require.NotZero(t, id, "node %q has no lease", name)
	_, err := admin.Revoke(testCtx(t), clientv3.LeaseID(id))
	require.NoError(t, err)
}

func (h *harness) Interrupt(t *testing.T, name string) {
	t.Helper()
	h.mu.Lock()
	p := h.proxies[name]
	h.mu.Unlock()
	require.NotNil(t, p, "no proxy for %q", name)
	p.CutAll()
}

// Advance waits: a real etcd's TTLs must really pass.
func (h *harness) Advance(_ *testing.T, d time.Duration) { time.Sleep(d) }

// MinTTL: etcd's minimum lease TTL is 1.5 election timeouts' worth of ticks
// (1.5 s with embed's defaults), rounded up to whole seconds.
func (h *harness) MinTTL() time.Duration { return 2 * time.Second }

func TestConformance(t *testing.T) {
	dcstest.Run(t, func(t *testing.T) dcstest.Harness { return newHarness(t) })
}

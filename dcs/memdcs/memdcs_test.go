package memdcs_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/dcstest"
	"github.com/pgha/pgha/dcs/memdcs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type harness struct {
	srv   *memdcs.Server
	clock *memdcs.FakeClock // nil with the real clock
	path  dcs.Path
	mu    sync.Mutex
	nodes map[string][]*memdcs.Store
}

func newHarness(t *testing.T, fake bool) *harness {
	h := &harness{path: dcs.Path{Namespace: "/service", Scope: "conformance"}, nodes: map[string][]*memdcs.Store{}}
	opts := memdcs.Options{}
	if fake {
		h.clock = memdcs.NewFakeClock(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC))
		opts.Clock = h.clock
	}
	h.srv = memdcs.NewServer(opts)
	return h
}

func (h *harness) Path() dcs.Path { return h.path }

func (h *harness) NewStore(t *testing.T, name string) dcs.Store {
	s, err := h.srv.Client(memdcs.ClientConfig{Path: h.path, Name: name})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	h.mu.Lock()
	h.nodes[name] = append(h.nodes[name], s)
	h.mu.Unlock()
	return s
}

func (h *harness) WriteRaw(t *testing.T, key string, value []byte) { h.srv.Put(h.path.Key(key), value) }

func (h *harness) ReadRaw(t *testing.T, key string) (dcs.KeyValue, bool) {
	kv, ok := h.srv.Get(h.path.Key(key))
	kv.Key = key
	return kv, ok
}

func (h *harness) ExpireLease(t *testing.T, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	expired := false
	for _, s := range h.nodes[name] {
		if id := s.LeaseID(); id != 0 {
			expired = h.srv.ExpireLeaseID(id) || expired
		}
	}
	require.True(t, expired, "node %s has no lease to expire", name)
}

func (h *harness) Interrupt(t *testing.T, name string) {
	h.srv.Partition(name)
	h.srv.Heal(name)
}

func (h *harness) Advance(t *testing.T, d time.Duration) {
	if h.clock != nil {
		h.clock.Advance(d)
		return
	}
	time.Sleep(d)
}

func (h *harness) MinTTL() time.Duration {
	if h.clock != nil {
		return time.Second
	}
	return 100 * time.Millisecond
}

func TestConformanceFakeClock(t *testing.T) {
	dcstest.Run(t, func(t *testing.T) dcstest.Harness { return newHarness(t, true) })
}

func TestConformanceRealClock(t *testing.T) {
	dcstest.Run(t, func(t *testing.T) dcstest.Harness { return newHarness(t, false) })
}

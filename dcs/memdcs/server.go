package memdcs

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgha/pgha/dcs"
)

// Server is the shared in-memory store that clients (one per node) talk to.
// It behaves like etcd where dcs.Store depends on it: a global revision,
// create and mod revisions per key, leases with TTLs that expire on the
// server's Clock and delete their keys, and atomic multi-key transactions.
// It can host several clusters (any Path).
type Server struct {
	mu       sync.Mutex
	clock    Clock
	rev      int64
	kvs      map[string]*entry // absolute key
	leases   map[int64]*lease
	nextID   int64
	watchers map[*watcher]struct{}
	faults   map[string]*faults // by client name
	pending  []change           // changes of the transaction in progress
}

type entry struct {
	value     []byte
	createRev int64
	modRev    int64
	lease     int64
}

type lease struct {
	id     int64
	ttl    time.Duration
	expiry time.Time
	keys   map[string]struct{}
	timer  Timer
}

type faults struct {
	partitioned bool
	failNext    int
	failErr     error
	delayNext   int
	delay       time.Duration
	heal        chan struct{} // closed on Heal
}

// Options configures a Server.
type Options struct {
	// Clock drives lease expiry. nil means the real clock (which is virtual
	// inside a testing/synctest bubble).
	Clock Clock
}

// NewServer returns an empty Server.
func NewServer(opts Options) *Server {
	c := opts.Clock
	if c == nil {
		c = realClock{}
	}
	return &Server{
		clock:    c,
		kvs:      map[string]*entry{},
		leases:   map[int64]*lease{},
		watchers: map[*watcher]struct{}{},
		faults:   map[string]*faults{},
		nextID:   0x5f81a215abe60000, // lease ids look like etcd's
	}
}

// Revision returns the server's current revision.
func (s *Server) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// --- fault hooks -------------------------------------------------------------

func (s *Server) faultsLocked(name string) *faults {
	f := s.faults[name]
	if f == nil {
		f = &faults{heal: make(chan struct{})}
		s.faults[name] = f
	}
	return f
}

// Partition cuts the named node's clients off the server: every call fails
// with dcs.ErrUnavailable and their watches deliver nothing until Heal. The
// node's lease keeps running down meanwhile, as a real partition's would.
func (s *Server) Partition(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultsLocked(name)
	if !f.partitioned {
		f.partitioned = true
		f.heal = make(chan struct{})
	}
}

// Heal ends a partition: calls succeed again and watches deliver, in order,
// every change they missed.
func (s *Server) Heal(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultsLocked(name)
	if f.partitioned {
		f.partitioned = false
		close(f.heal)
	}
	for w := range s.watchers {
		if w.client.name == name {
			w.wake()
		}
	}
}

// FailNext makes the next n calls of the named node's clients fail with err
// (dcs.ErrUnavailable when err is nil) without touching the store.
func (s *Server) FailNext(name string, n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		err = dcs.ErrUnavailable
	}
	f := s.faultsLocked(name)
	f.failNext, f.failErr = n, err
}

// DelayNext makes the next n calls of the named node's clients wait d of
// server clock time before they take effect (with a FakeClock, until Advance
// moves past it). A call's context still bounds the wait.
func (s *Server) DelayNext(name string, n int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultsLocked(name)
	f.delayNext, f.delay = n, d
}

// ExpireLease expires the lease of the named node's client now, deleting its
// member key and, if attached, the leader key. It reports whether there was a
// lease to expire.
func (s *Server) ExpireLease(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for id, l := range s.leases {
		for k := range l.keys {
			if strings.HasSuffix(k, "/"+dcs.KeyMembers+name) {
				s.revokeLocked(id)
				found = true
				break
			}
		}
	}
	return found
}

// ExpireLeaseID expires one lease now. It reports whether it existed.
func (s *Server) ExpireLeaseID(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[id]; !ok {
		return false
	}
	s.revokeLocked(id)
	return true
}

// Put writes a raw value at an absolute key with no lease, as an outside tool
// would. It returns the new revision.
func (s *Server) Put(key string, value []byte) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.putLocked(key, value, 0)
	s.notifyLocked()
	return s.rev
}

// Get returns the raw key (absolute path).
func (s *Server) Get(key string) (dcs.KeyValue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kvs[key]
	if !ok {
		return dcs.KeyValue{}, false
	}
	return dcs.KeyValue{Key: key, Value: append([]byte(nil), e.value...), CreateRevision: e.createRev, ModRevision: e.modRev, Lease: e.lease}, true
}

// --- call admission ----------------------------------------------------------

// admit applies the named node's faults to one call. It returns the time the
// call was "sent" (before any delay).
func (s *Server) admit(ctx context.Context, name string) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", dcs.ErrUnavailable, err)
	}
	s.mu.Lock()
	sent := s.clock.Now()
	f := s.faultsLocked(name)
	if f.partitioned {
		s.mu.Unlock()
		return sent, fmt.Errorf("%w: %s is partitioned from the store", dcs.ErrUnavailable, name)
	}
	if f.failNext > 0 {
		f.failNext--
		err := f.failErr
		s.mu.Unlock()
		return sent, fmt.Errorf("injected failure: %w", err)
	}
	var delay time.Duration
	if f.delayNext > 0 {
		f.delayNext--
		delay = f.delay
	}
	s.mu.Unlock()
	if delay > 0 {
		done := make(chan struct{})
		t := s.clock.AfterFunc(delay, func() { close(done) })
		select {
		case <-done:
		case <-ctx.Done():
			t.Stop()
			return sent, fmt.Errorf("%w: %v", dcs.ErrUnavailable, ctx.Err())
		}
		// A partition that began during the delay still applies.
		s.mu.Lock()
		part := s.faultsLocked(name).partitioned
		s.mu.Unlock()
		if part {
			return sent, fmt.Errorf("%w: %s is partitioned from the store", dcs.ErrUnavailable, name)
		}
	}
	return sent, nil
}

// --- state changes (callers hold s.mu) ----------------------------------------

// reapLocked expires every lease whose deadline has passed.
func (s *Server) reapLocked() {
	now := s.clock.Now()
	var due []int64
	for id, l := range s.leases {
		if !now.Before(l.expiry) {
			due = append(due, id)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i] < due[j] })
	for _, id := range due {
		s.revokeLocked(id)
	}
}

// revokeLocked deletes a lease and its keys in one revision.
func (s *Server) revokeLocked(id int64) {
	l, ok := s.leases[id]
	if !ok {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(s.leases, id)
	if len(l.keys) == 0 {
		return
	}
	s.rev++
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.deleteLocked(k)
	}
	s.notifyLocked()
}

func (s *Server) grantLocked(ttl time.Duration) *lease {
	s.nextID++
	l := &lease{id: s.nextID, ttl: ttl, keys: map[string]struct{}{}}
	s.leases[l.id] = l
	s.renewLocked(l)
	return l
}

func (s *Server) renewLocked(l *lease) {
	l.expiry = s.clock.Now().Add(l.ttl)
	if l.timer != nil {
		l.timer.Stop()
	}
	id, expiry := l.id, l.expiry
	l.timer = s.clock.AfterFunc(l.ttl, func() { s.expireIfDue(id, expiry) })
}

func (s *Server) expireIfDue(id int64, expiry time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[id]; ok && l.expiry.Equal(expiry) {
		s.revokeLocked(id)
	}
}

// putLocked writes a key at the current revision (the caller bumped s.rev).
func (s *Server) putLocked(key string, value []byte, leaseID int64) {
	e := s.kvs[key]
	if e == nil {
		e = &entry{createRev: s.rev}
		s.kvs[key] = e
	}
	if e.lease != 0 && e.lease != leaseID {
		if l := s.leases[e.lease]; l != nil {
			delete(l.keys, key)
		}
	}
	e.value = append([]byte(nil), value...)
	e.modRev = s.rev
	e.lease = leaseID
	if leaseID != 0 {
		s.leases[leaseID].keys[key] = struct{}{}
	}
	s.record(dcs.EventPut, key, e.value)
}

func (s *Server) deleteLocked(key string) {
	e, ok := s.kvs[key]
	if !ok {
		return
	}
	if e.lease != 0 {
		if l := s.leases[e.lease]; l != nil {
			delete(l.keys, key)
		}
	}
	delete(s.kvs, key)
	s.record(dcs.EventDelete, key, nil)
}

func (s *Server) modRev(key string) int64 {
	if e, ok := s.kvs[key]; ok {
		return e.modRev
	}
	return 0
}

// snapshotLocked builds the cluster snapshot of one prefix.
func (s *Server) snapshotLocked(p dcs.Path) *dcs.Cluster {
	prefix := p.Prefix()
	var kvs []dcs.KeyValue
	for k, e := range s.kvs {
		if rel, ok := strings.CutPrefix(k, prefix); ok {
			kvs = append(kvs, dcs.KeyValue{Key: rel, Value: e.value, CreateRevision: e.createRev, ModRevision: e.modRev, Lease: e.lease})
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return dcs.BuildCluster(kvs, s.rev)
}

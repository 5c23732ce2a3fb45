package memdcs

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pgha/pgha/dcs"
)

// DefaultTTL is the lease TTL used when PutMember or AcquireLeader needs a
// lease before any KeepAlive named one.
const DefaultTTL = 30 * time.Second

// Store is one node's client of a Server. It implements dcs.Store.
type Store struct {
	srv  *Server
	path dcs.Path
	name string

	// guarded by srv.mu
	leaseID  int64
	leaseTTL time.Duration

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.Confirmer = (*Store)(nil)
)

// ClientConfig names the node a client acts for.
type ClientConfig struct {
	// Path is the cluster. Required.
	Path dcs.Path
	// Name is the node name; "" makes a read-only client whose session and
	// leader operations fail with dcs.ErrNoSession.
	Name string
}

// Client returns a new client of the server for one node.
func (s *Server) Client(cfg ClientConfig) (*Store, error) {
	if err := cfg.Path.Validate(); err != nil {
		return nil, err
	}
	return &Store{srv: s, path: cfg.Path, name: cfg.Name, leaseTTL: DefaultTTL, done: make(chan struct{})}, nil
}

// New is a shortcut for a fresh Server (real clock) and one client of it.
func New(cfg ClientConfig) (*Store, error) {
	return NewServer(Options{}).Client(cfg)
}

// Server returns the server this client talks to, for fault hooks.
func (c *Store) Server() *Server { return c.srv }

// Name implements dcs.Store.
func (c *Store) Name() string { return c.name }

// LeaseID returns the client's current lease id (0 when it has none).
func (c *Store) LeaseID() int64 {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	return c.leaseID
}

// Close implements dcs.Store: it ends the client's watches and waits for them.
// The lease is left to expire (call Resign to revoke it).
func (c *Store) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	c.wg.Wait()
	return nil
}

func (c *Store) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// begin admits a call and locks the server; the caller must unlock.
func (c *Store) begin(ctx context.Context, needName bool) (time.Time, error) {
	if c.isClosed() {
		return time.Time{}, dcs.ErrClosed
	}
	if needName && c.name == "" {
		return time.Time{}, fmt.Errorf("%w: read-only client", dcs.ErrNoSession)
	}
	sent, err := c.srv.admit(ctx, c.name)
	if err != nil {
		return sent, err
	}
	c.srv.mu.Lock()
	c.srv.reapLocked()
	return sent, nil
}

func (c *Store) end() {
	c.srv.notifyLocked()
	c.srv.mu.Unlock()
}

// Cluster implements dcs.Reader.
func (c *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if _, err := c.begin(ctx, false); err != nil {
		return nil, err
	}
	defer c.end()
	return c.srv.snapshotLocked(c.path), nil
}

// Confirm implements dcs.Confirmer. The client reads the server directly,
// so its snapshot is always current: Confirm fails only as every request of
// this client does (Server.Partition, FailNext, a closed client).
func (c *Store) Confirm(ctx context.Context) (int64, error) {
	if _, err := c.begin(ctx, false); err != nil {
		return 0, err
	}
	defer c.end()
	return c.srv.rev, nil
}

// --- session -------------------------------------------------------------------

// ensureLeaseLocked returns the client's live lease, granting one if needed.
func (c *Store) ensureLeaseLocked() *lease {
	if l, ok := c.srv.leases[c.leaseID]; ok && c.leaseID != 0 {
		return l
	}
	l := c.srv.grantLocked(c.leaseTTL)
	c.leaseID = l.id
	return l
}

func (c *Store) keepAliveLocked(sent time.Time, ttl time.Duration) (dcs.Lease, error) {
	if ttl <= 0 {
		return dcs.Lease{}, fmt.Errorf("%w: lease ttl must be positive, got %s", dcs.ErrInvalidValue, ttl)
	}
	s := c.srv
	old, ok := s.leases[c.leaseID]
	switch {
	case !ok || c.leaseID == 0:
		c.leaseTTL = ttl
		c.leaseID = s.grantLocked(ttl).id
	case old.ttl != ttl:
		c.leaseTTL = ttl
		nl := s.grantLocked(ttl)
		c.leaseID = nl.id
		// Move this node's keys to the new lease in one revision, then revoke.
		moved := false
		for _, k := range []string{c.path.MemberKey(c.name), c.path.Key(dcs.KeyLeader)} {
			if e, ok := s.kvs[k]; ok && e.lease == old.id {
				if !moved {
					s.rev++
					moved = true
				}
				s.putLocked(k, e.value, nl.id)
			}
		}
		s.revokeLocked(old.id)
	default:
		s.renewLocked(old)
	}
	return dcs.Lease{ID: c.leaseID, TTL: ttl, Sent: sent}, nil
}

// KeepAlive implements dcs.Session.
func (c *Store) KeepAlive(ctx context.Context, ttl time.Duration) (dcs.Lease, error) {
	sent, err := c.begin(ctx, true)
	if err != nil {
		return dcs.Lease{}, err
	}
	defer c.end()
	return c.keepAliveLocked(sent, ttl)
}

// PutMember implements dcs.Session.
func (c *Store) PutMember(ctx context.Context, data dcs.MemberData) error {
	b, err := dcs.EncodeMember(data)
	if err != nil {
		return err
	}
	if _, err := c.begin(ctx, true); err != nil {
		return err
	}
	defer c.end()
	l := c.ensureLeaseLocked()
	key := c.path.MemberKey(c.name)
	if e, ok := c.srv.kvs[key]; ok && e.lease == l.id && bytes.Equal(e.value, b) {
		return nil
	}
	c.srv.rev++
	c.srv.putLocked(key, b, l.id)
	return nil
}

// Resign implements dcs.Session.
func (c *Store) Resign(ctx context.Context) error {
	if _, err := c.begin(ctx, true); err != nil {
		return err
	}
	defer c.end()
	if c.leaseID != 0 {
		c.srv.revokeLocked(c.leaseID)
		c.leaseID = 0
	}
	return nil
}

// --- election ------------------------------------------------------------------

// AcquireLeader implements dcs.Election.
func (c *Store) AcquireLeader(ctx context.Context) (dcs.Lease, error) {
	sent, err := c.begin(ctx, true)
	if err != nil {
		return dcs.Lease{}, err
	}
	defer c.end()
	l, err := c.keepAliveLocked(sent, c.leaseTTL)
	if err != nil {
		return dcs.Lease{}, err
	}
	key := c.path.Key(dcs.KeyLeader)
	if e, ok := c.srv.kvs[key]; ok {
		return dcs.Lease{}, fmt.Errorf("%w: leader key is held by %q", dcs.ErrConflict, e.value)
	}
	c.srv.rev++
	c.srv.putLocked(key, []byte(c.name), l.ID)
	return l, nil
}

// RefreshLeader implements dcs.Election.
func (c *Store) RefreshLeader(ctx context.Context) (dcs.Lease, error) {
	sent, err := c.begin(ctx, true)
	if err != nil {
		return dcs.Lease{}, err
	}
	defer c.end()
	_, alive := c.srv.leases[c.leaseID]
	expired := c.leaseID != 0 && !alive
	l, err := c.keepAliveLocked(sent, c.leaseTTL)
	if err != nil {
		return dcs.Lease{}, err
	}
	if expired {
		return dcs.Lease{}, fmt.Errorf("%w: %w: the lease expired", dcs.ErrNotLeader, dcs.ErrSessionExpired)
	}
	key := c.path.Key(dcs.KeyLeader)
	e, ok := c.srv.kvs[key]
	switch {
	case !ok:
		c.srv.rev++
		c.srv.putLocked(key, []byte(c.name), l.ID)
		return l, nil
	case string(e.value) == c.name && e.lease == l.ID:
		return l, nil
	default:
		return dcs.Lease{}, fmt.Errorf("%w: leader key holds %q on lease %x", dcs.ErrNotLeader, e.value, e.lease)
	}
}

// checkLeaderLocked is the fence: the leader key must hold this node's name on
// this node's live lease.
func (c *Store) checkLeaderLocked() error {
	e, ok := c.srv.kvs[c.path.Key(dcs.KeyLeader)]
	if !ok {
		return fmt.Errorf("%w: no leader key", dcs.ErrNotLeader)
	}
	if string(e.value) != c.name || e.lease != c.leaseID || c.leaseID == 0 {
		return fmt.Errorf("%w: leader key holds %q on lease %x", dcs.ErrNotLeader, e.value, e.lease)
	}
	return nil
}

// ReleaseLeader implements dcs.Election.
func (c *Store) ReleaseLeader(ctx context.Context, status *dcs.Status) error {
	if _, err := c.begin(ctx, true); err != nil {
		return err
	}
	defer c.end()
	if err := c.checkLeaderLocked(); err != nil {
		return err
	}
	c.srv.rev++
	if status != nil {
		c.srv.putLocked(c.path.Key(dcs.KeyStatus), dcs.EncodeStatus(*status), 0)
	}
	c.srv.deleteLocked(c.path.Key(dcs.KeyLeader))
	return nil
}

// --- leader-only writes ----------------------------------------------------------

func (c *Store) leaderPut(ctx context.Context, rel string, value []byte, cond dcs.Precondition) (int64, error) {
	if _, err := c.begin(ctx, true); err != nil {
		return 0, err
	}
	defer c.end()
	if err := c.checkLeaderLocked(); err != nil {
		return 0, err
	}
	key := c.path.Key(rel)
	if !cond.Check(c.srv.modRev(key)) {
		return 0, fmt.Errorf("%w: %s changed since it was read", dcs.ErrConflict, rel)
	}
	c.srv.rev++
	if value == nil {
		c.srv.deleteLocked(key)
	} else {
		c.srv.putLocked(key, value, 0)
	}
	return c.srv.rev, nil
}

// SetSync implements dcs.LeaderWriter.
func (c *Store) SetSync(ctx context.Context, s dcs.SyncState, cond dcs.Precondition) (int64, error) {
	return c.leaderPut(ctx, dcs.KeySync, dcs.EncodeSync(s), cond)
}

// DeleteSync implements dcs.LeaderWriter.
func (c *Store) DeleteSync(ctx context.Context, cond dcs.Precondition) error {
	_, err := c.leaderPut(ctx, dcs.KeySync, nil, cond)
	return err
}

// SetHistory implements dcs.LeaderWriter.
func (c *Store) SetHistory(ctx context.Context, lines []dcs.HistoryLine) error {
	b, err := dcs.EncodeHistory(lines)
	if err != nil {
		return err
	}
	_, err = c.leaderPut(ctx, dcs.KeyHistory, b, dcs.Unconditional)
	return err
}

// SetStatus implements dcs.LeaderWriter.
func (c *Store) SetStatus(ctx context.Context, s dcs.Status) error {
	_, err := c.leaderPut(ctx, dcs.KeyStatus, dcs.EncodeStatus(s), dcs.Unconditional)
	return err
}

// SetFailsafe implements dcs.LeaderWriter.
func (c *Store) SetFailsafe(ctx context.Context, members map[string]string) error {
	_, err := c.leaderPut(ctx, dcs.KeyFailsafe, dcs.EncodeFailsafe(members), dcs.Unconditional)
	return err
}

// --- cluster writes ----------------------------------------------------------------

func (c *Store) put(ctx context.Context, rel string, value []byte, cond dcs.Precondition) (int64, error) {
	if _, err := c.begin(ctx, false); err != nil {
		return 0, err
	}
	defer c.end()
	key := c.path.Key(rel)
	if !cond.Check(c.srv.modRev(key)) {
		return 0, fmt.Errorf("%w: %s", dcs.ErrConflict, rel)
	}
	c.srv.rev++
	if value == nil {
		c.srv.deleteLocked(key)
	} else {
		c.srv.putLocked(key, value, 0)
	}
	return c.srv.rev, nil
}

// InitializeRace implements dcs.ClusterWriter.
func (c *Store) InitializeRace(ctx context.Context, sysid string) error {
	_, err := c.put(ctx, dcs.KeyInitialize, []byte(sysid), dcs.IfAbsent())
	return err
}

// SetInitialize implements dcs.ClusterWriter.
func (c *Store) SetInitialize(ctx context.Context, sysid string) error {
	_, err := c.put(ctx, dcs.KeyInitialize, []byte(sysid), dcs.Unconditional)
	return err
}

// CancelInitialize implements dcs.ClusterWriter.
func (c *Store) CancelInitialize(ctx context.Context) error {
	_, err := c.put(ctx, dcs.KeyInitialize, nil, dcs.Unconditional)
	return err
}

// SetConfig implements dcs.ClusterWriter.
func (c *Store) SetConfig(ctx context.Context, data map[string]any, cond dcs.Precondition) (int64, error) {
	b, err := dcs.EncodeConfig(data)
	if err != nil {
		return 0, err
	}
	return c.put(ctx, dcs.KeyConfig, b, cond)
}

// SetFailover implements dcs.ClusterWriter.
func (c *Store) SetFailover(ctx context.Context, f dcs.Failover, cond dcs.Precondition) (int64, error) {
	return c.put(ctx, dcs.KeyFailover, dcs.EncodeFailover(f), cond)
}

// DeleteCluster implements dcs.ClusterWriter.
func (c *Store) DeleteCluster(ctx context.Context) error {
	if _, err := c.begin(ctx, false); err != nil {
		return err
	}
	defer c.end()
	prefix := c.path.Prefix()
	var keys []string
	for k := range c.srv.kvs {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	c.srv.rev++
	for _, k := range keys {
		c.srv.deleteLocked(k)
	}
	return nil
}

package etcddcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/pgha/pgha/dcs"
)

// Store is a dcs.Store on etcd v3 for one node of one cluster. It is safe for
// concurrent use. Create it with New and release it with Close.
type Store struct {
	cfg        Config
	cli        *clientv3.Client
	ownsClient bool
	log        hclog.Logger
	path       dcs.Path
	prefix     string
	leaderKey  string
	memberKey  string // "" for a read-only client
	reqTimeout time.Duration

	// opMu serializes the operations that may change the lease (KeepAlive,
	// PutMember, AcquireLeader, RefreshLeader, Resign), so a lease is never
	// granted twice concurrently.
	opMu sync.Mutex
	// lease is the current lease id (0: none); leaseTTL the TTL in seconds it
	// was requested with. Written under opMu, read without it.
	lease    atomic.Int64
	leaseTTL atomic.Int64
	// moveFrom holds old leases whose keys still have to move to lease after
	// a TTL change (a failed move is retried by the next keepalive). Guarded
	// by opMu.
	moveFrom []int64
	// leaseExpired: the last keepAliveLocked found the lease gone (opMu).
	leaseExpired bool

	cache *cache
	// seenRev is the highest etcd revision a response to this store named;
	// the watch loop compares its cache with it to find a stalled watch.
	seenRev atomic.Int64
	// watchGen numbers the watch loop's streams (see watchCtx).
	watchGen atomic.Int64

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	done      chan struct{} // closed by Close
	lifeMu    sync.Mutex    // orders wg.Add against Close
	closed    bool          // guarded by lifeMu
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ dcs.Store     = (*Store)(nil)
	_ dcs.Confirmer = (*Store)(nil)
)

// New connects to etcd and starts the store's watch of the cluster prefix.
// It fails on an invalid Config, unusable TLS files or rejected credentials;
// it does not wait for etcd to answer otherwise (Cluster waits for the first
// read). Authentication, when configured, is bounded by DialTimeout; ctx
// only supplies values to the client (its cancellation does not end the
// store) and must not be done already.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("etcddcs: new: %w", err)
	}
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	if cfg.RetryTimeout == 0 {
		cfg.RetryTimeout = DefaultRetryTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("etcddcs")

	cli, owns := cfg.Client, false
	endpoints := len(cfg.Endpoints)
	if cli != nil {
		endpoints = len(cli.Endpoints())
	}
	reqTimeout := requestTimeout(cfg.RetryTimeout, endpoints)
	if cli == nil {
		tlsCfg := cfg.TLS
		if tlsCfg == nil && (cfg.CertFile != "" || cfg.CAFile != "") {
			info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
			c, err := info.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("etcddcs: TLS files: %w", err)
			}
			tlsCfg = c
		}
		dial := cfg.DialTimeout
		if dial == 0 {
			dial = reqTimeout
		}
		var err error
		cli, err = clientv3.New(clientv3.Config{
			Endpoints:            cfg.Endpoints,
			TLS:                  tlsCfg,
			Username:             cfg.Username,
			Password:             cfg.Password,
			DialTimeout:          dial,
			DialKeepAliveTime:    10 * time.Second,
			DialKeepAliveTimeout: reqTimeout,
			PermitWithoutStream:  true,
			// gRPC waits 1 s after a connection fails before it redials,
			// growing to 2 min: on a lossy link (connections reset at
			// random) every member's connection could sit in that backoff
			// while a renewal is due. Redial quickly, at most a request
			// timeout apart.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reqTimeout},
				MinConnectTimeout: reqTimeout,
			})},
			Context: context.WithoutCancel(ctx),
			Logger:  zap.NewNop(),
		})
		if err != nil {
			if isAuth(err) {
				return nil, fmt.Errorf("etcddcs: authentication failed: %w", err)
			}
			return nil, fmt.Errorf("etcddcs: connect to %v: %w", cfg.Endpoints, err)
		}
		owns = true
	}

	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		cfg:        cfg,
		cli:        cli,
		ownsClient: owns,
		log:        log,
		path:       cfg.Path,
		prefix:     cfg.Path.Prefix(),
		leaderKey:  cfg.Path.Key(dcs.KeyLeader),
		reqTimeout: reqTimeout,
		cache:      newCache(),
		ctx:        sctx,
		cancel:     cancel,
		done:       make(chan struct{}),
	}
	if cfg.Name != "" {
		s.memberKey = cfg.Path.MemberKey(cfg.Name)
	}
	s.wg.Add(1)
	go s.watchLoop()
	return s, nil
}

// Name implements dcs.Store.
func (s *Store) Name() string { return s.cfg.Name }

// Client returns the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

// LeaseID returns the node's current lease id (0 when it has none).
func (s *Store) LeaseID() int64 { return s.lease.Load() }

// RequestTimeout returns the timeout applied to each request to etcd.
func (s *Store) RequestTimeout() time.Duration { return s.reqTimeout }

// Close stops the watch and every Watch channel, waits for the store's
// goroutines to exit and closes the etcd client (unless it came from
// Config.Client). It does not revoke the lease; call Resign for that. It is
// idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		s.closed = true
		s.lifeMu.Unlock()
		s.cancel()
		close(s.done)
		s.wg.Wait()
		if s.ownsClient {
			if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
				err = fmt.Errorf("etcddcs: close client: %w", cerr)
			}
		}
	})
	return err
}

func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// begin checks that a call may proceed.
func (s *Store) begin(ctx context.Context, op string, needName bool) error {
	if s.isClosed() {
		return fmt.Errorf("etcddcs: %s: %w", op, dcs.ErrClosed)
	}
	if needName && s.cfg.Name == "" {
		return fmt.Errorf("etcddcs: %s: %w: read-only client (no Name)", op, dcs.ErrNoSession)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcddcs: %s: %w", op, err)
	}
	return nil
}

// rctx bounds one request by the per-request timeout.
func (s *Store) rctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.reqTimeout)
}

// settle waits (bounded by ctx and the request timeout) until the cache
// reflects a write this store made at rev, so that the caller reads its own
// writes from Cluster and PutMember's equality check sees them. The write
// has succeeded either way. (Waiting for the watch instead of writing into
// the cache directly keeps the cache, and every Watch, in store order.)
func (s *Store) settle(ctx context.Context, rev int64) {
	if rev <= 0 {
		return
	}
	s.saw(rev)
	wctx, cancel := context.WithTimeout(ctx, s.reqTimeout)
	defer cancel()
	if !s.cache.await(wctx, s.done, rev) && !s.isClosed() {
		s.log.Debug("cache did not catch up with own write in time", "rev", rev, "cache_rev", s.cache.revision())
	}
}

// --- Reader ---------------------------------------------------------------------

// Cluster implements dcs.Reader. It serves the snapshot of the watch cache,
// waiting up to RetryTimeout for the first read after New.
func (s *Store) Cluster(ctx context.Context) (*dcs.Cluster, error) {
	if err := s.begin(ctx, "cluster", false); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, "cluster"); err != nil {
		return nil, err
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.snapshotLocked(), nil
}

// Watch implements dcs.Reader. Before it registers, it waits (up to the
// request timeout) until the cache has caught up with etcd's current
// revision, so the watch starts after every change committed anywhere before
// the call, not merely after what this store had seen. If etcd does not
// answer in time it starts from the cache as it is.
func (s *Store) Watch(ctx context.Context) (<-chan dcs.Event, error) {
	if err := s.begin(ctx, "watch", false); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, "watch"); err != nil {
		return nil, err
	}
	if err := s.barrier(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, s.fail(ctx, "watch", err)
		}
		s.log.Warn("watch starts from a cache that may lag etcd", "error", err)
	}
	w := &watcher{out: make(chan dcs.Event), wake: make(chan struct{}, 1)}
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("etcddcs: watch: %w", dcs.ErrClosed)
	}
	s.cache.mu.Lock()
	s.cache.watchers[w] = struct{}{}
	s.cache.mu.Unlock()
	s.wg.Add(1)
	go s.serveWatcher(ctx, w)
	return w.out, nil
}

// Confirm implements dcs.Confirmer: a linearizable read of etcd's revision
// (hedged across the members), then a wait until the watch cache reflects
// it.
func (s *Store) Confirm(ctx context.Context) (int64, error) {
	if err := s.begin(ctx, "confirm", false); err != nil {
		return 0, err
	}
	if err := s.waitReady(ctx, "confirm"); err != nil {
		return 0, err
	}
	if err := s.barrier(ctx); err != nil {
		return 0, s.fail(ctx, "confirm", err)
	}
	return s.cache.revision(), nil
}

// barrier waits until the cache reflects every change committed before it
// was called: it reads etcd's current revision (a linearizable read) and asks
// the watch stream for progress notifications until the cache reaches it
// (changes outside the prefix advance the revision without any event).
func (s *Store) barrier(ctx context.Context) error {
	resp, err := hedge(ctx, s.reqTimeout, s.attempts(), func(rctx context.Context) (*clientv3.GetResponse, error) {
		return s.cli.Get(rctx, s.leaderKey, clientv3.WithCountOnly())
	})
	if err != nil {
		return err
	}
	target := resp.Header.Revision
	s.saw(target)
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	for s.cache.revision() < target {
		// The watch stream is keyed by its context's metadata; this one
		// matches the watch loop's current stream.
		if err := s.cli.RequestProgress(s.watchCtx(rctx, s.watchGen.Load())); err != nil {
			return err
		}
		wctx, wcancel := context.WithTimeout(rctx, 50*time.Millisecond)
		s.cache.await(wctx, s.done, target)
		wcancel()
		if err := rctx.Err(); err != nil {
			return fmt.Errorf("cache at revision %d, etcd at %d: %w", s.cache.revision(), target, err)
		}
	}
	return nil
}

// --- Session --------------------------------------------------------------------

// ttlSeconds converts a TTL to etcd's whole seconds, rounding up.
func ttlSeconds(ttl time.Duration) int64 {
	return int64((ttl + time.Second - 1) / time.Second)
}

// currentTTL is the TTL (seconds) of the current lease, or DefaultTTL.
func (s *Store) currentTTL() int64 {
	if t := s.leaseTTL.Load(); t > 0 {
		return t
	}
	return ttlSeconds(DefaultTTL)
}

// KeepAlive implements dcs.Session. It sends one LeaseKeepAlive (clientv3's
// KeepAliveOnce, never the streaming keepalive), recording time.Now just
// before sending; see the package doc, "Safety".
func (s *Store) KeepAlive(ctx context.Context, ttl time.Duration) (dcs.Lease, error) {
	if err := s.begin(ctx, "keepalive", true); err != nil {
		return dcs.Lease{}, err
	}
	if ttl <= 0 {
		return dcs.Lease{}, fmt.Errorf("etcddcs: keepalive: %w: lease ttl must be positive, got %s", dcs.ErrInvalidValue, ttl)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.keepAliveLocked(ctx, ttlSeconds(ttl))
}

// keepAliveLocked renews the lease, or grants one when there is none, it
// expired, or its TTL differs from ttl (then the node's keys move to the new
// lease and the old one is revoked). The caller holds opMu.
func (s *Store) keepAliveLocked(ctx context.Context, ttl int64) (dcs.Lease, error) {
	var lease dcs.Lease
	cur := s.lease.Load()
	s.leaseExpired = false
	if cur != 0 && s.leaseTTL.Load() == ttl {
		// The first attempt's send time is kept: a later attempt's answer
		// only moves the deadline earlier than it is (package doc, Safety).
		sent := time.Now()
		resp, err := hedge(ctx, s.reqTimeout, s.attempts(), func(rctx context.Context) (*clientv3.LeaseKeepAliveResponse, error) {
			return s.cli.KeepAliveOnce(rctx, clientv3.LeaseID(cur))
		})
		switch {
		case err == nil:
			s.saw(resp.Revision)
			lease = dcs.Lease{ID: cur, TTL: time.Duration(resp.TTL) * time.Second, Sent: sent}
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.log.Info("lease expired; granting a new one", "lease", leaseHex(cur))
			s.lease.Store(0)
			s.leaseExpired = true
			cur = 0
		default:
			return dcs.Lease{}, s.fail(ctx, "keepalive", err)
		}
	}
	if lease.ID == 0 {
		granted, err := s.grantLocked(ctx, ttl)
		if err != nil {
			return dcs.Lease{}, err
		}
		if cur != 0 {
			s.log.Info("lease TTL changed; moving keys to a new lease", "old_lease", leaseHex(cur),
				"new_lease", leaseHex(granted.ID), "ttl", granted.TTL)
			s.moveFrom = append(s.moveFrom, cur)
		}
		lease = granted
	}
	if len(s.moveFrom) > 0 {
		if err := s.moveKeysLocked(ctx, lease.ID); err != nil {
			return dcs.Lease{}, err
		}
	}
	return lease, nil
}

func leaseHex(id int64) string { return fmt.Sprintf("%x", id) }

// grantLocked grants a lease with ttl seconds and makes it current.
func (s *Store) grantLocked(ctx context.Context, ttl int64) (dcs.Lease, error) {
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	sent := time.Now()
	resp, err := s.cli.Grant(rctx, ttl)
	if err != nil {
		return dcs.Lease{}, s.fail(ctx, "grant lease", err)
	}
	s.lease.Store(int64(resp.ID))
	s.leaseTTL.Store(ttl)
	return dcs.Lease{ID: int64(resp.ID), TTL: time.Duration(resp.TTL) * time.Second, Sent: sent}, nil
}

// moveKeysLocked moves, for each old lease in moveFrom, the member key and
// (if held on it) the leader key to lease to in one transaction, then revokes
// the old lease. A failed move stays in moveFrom and is retried by the next
// keepalive. The caller holds opMu.
func (s *Store) moveKeysLocked(ctx context.Context, to int64) error {
	for len(s.moveFrom) > 0 {
		from := s.moveFrom[0]
		rctx, cancel := s.rctx(ctx)
		resp, err := s.cli.Txn(rctx).Then(
			clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(s.memberKey), "=", from)},
				[]clientv3.Op{clientv3.OpPut(s.memberKey, "", clientv3.WithIgnoreValue(), clientv3.WithLease(clientv3.LeaseID(to)))},
				nil),
			clientv3.OpTxn(
				s.leaderCmps(from),
				[]clientv3.Op{clientv3.OpPut(s.leaderKey, s.cfg.Name, clientv3.WithLease(clientv3.LeaseID(to)))},
				nil),
		).Commit()
		if err != nil {
			cancel()
			return s.fail(ctx, "move keys to the new lease", err)
		}
		s.moveFrom = s.moveFrom[1:]
		if _, err := s.cli.Revoke(rctx, clientv3.LeaseID(from)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.log.Warn("cannot revoke the old lease; it will expire by itself", "lease", leaseHex(from), "error", err)
		}
		cancel()
		for _, r := range resp.Responses {
			if t := r.GetResponseTxn(); t != nil && t.Succeeded {
				s.settle(ctx, resp.Header.Revision)
				break
			}
		}
	}
	return nil
}

// ensureLeaseLocked returns the current lease id, granting one with the last
// TTL (or DefaultTTL) when there is none. The caller holds opMu.
func (s *Store) ensureLeaseLocked(ctx context.Context) (int64, error) {
	if id := s.lease.Load(); id != 0 {
		return id, nil
	}
	l, err := s.grantLocked(ctx, s.currentTTL())
	if err != nil {
		return 0, err
	}
	return l.ID, nil
}

// PutMember implements dcs.Session. The write is skipped when the cache
// holds an equal value on the current lease.
func (s *Store) PutMember(ctx context.Context, data dcs.MemberData) error {
	if err := s.begin(ctx, "put member", true); err != nil {
		return err
	}
	b, err := dcs.EncodeMember(data)
	if err != nil {
		return fmt.Errorf("etcddcs: put member: %w", err)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	for attempt := 0; ; attempt++ {
		id, err := s.ensureLeaseLocked(ctx)
		if err != nil {
			return err
		}
		rel := dcs.KeyMembers + s.cfg.Name
		if kv, ok := s.cache.lookup(rel); ok && kv.Lease == id && bytes.Equal(kv.Value, b) {
			return nil
		}
		rctx, cancel := s.rctx(ctx)
		resp, err := s.cli.Put(rctx, s.memberKey, string(b), clientv3.WithLease(clientv3.LeaseID(id)))
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			s.log.Info("lease expired; granting a new one for the member key", "lease", leaseHex(id))
			s.lease.Store(0)
			continue
		}
		if err != nil {
			return s.fail(ctx, "put member", err)
		}
		s.settle(ctx, resp.Header.Revision)
		return nil
	}
}

// Resign implements dcs.Session: it revokes the lease, which deletes the
// member key and the leader key (if held) at once.
func (s *Store) Resign(ctx context.Context) error {
	if err := s.begin(ctx, "resign", true); err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	id := s.lease.Load()
	if id == 0 {
		return nil
	}
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	resp, err := s.cli.Revoke(rctx, clientv3.LeaseID(id))
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return s.fail(ctx, "resign", err)
	}
	s.lease.Store(0)
	for _, old := range s.moveFrom {
		if _, err := s.cli.Revoke(rctx, clientv3.LeaseID(old)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.log.Warn("cannot revoke an old lease; it will expire by itself", "lease", leaseHex(old), "error", err)
		}
	}
	s.moveFrom = nil
	if resp != nil {
		s.settle(ctx, resp.Header.Revision)
	}
	return nil
}

// --- Election -------------------------------------------------------------------

// AcquireLeader implements dcs.Election: renew the lease, then create the
// leader key on it only if it does not exist.
func (s *Store) AcquireLeader(ctx context.Context) (dcs.Lease, error) {
	if err := s.begin(ctx, "acquire leader", true); err != nil {
		return dcs.Lease{}, err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	lease, err := s.keepAliveLocked(ctx, s.currentTTL())
	if err != nil {
		return dcs.Lease{}, err
	}
	for attempt := 0; ; attempt++ {
		rctx, cancel := s.rctx(ctx)
		resp, err := s.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(s.leaderKey), "=", 0)).
			Then(clientv3.OpPut(s.leaderKey, s.cfg.Name, clientv3.WithLease(clientv3.LeaseID(lease.ID)))).
			Else(clientv3.OpGet(s.leaderKey)).
			Commit()
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			// The lease expired between the keepalive and the txn.
			s.lease.Store(0)
			if lease, err = s.keepAliveLocked(ctx, s.currentTTL()); err != nil {
				return dcs.Lease{}, err
			}
			continue
		}
		if err != nil {
			return dcs.Lease{}, s.fail(ctx, "acquire leader", err)
		}
		if !resp.Succeeded {
			holder := ""
			if r := firstRange(resp.Responses); r != nil && len(r.Kvs) > 0 {
				holder = string(r.Kvs[0].Value)
			}
			return dcs.Lease{}, fmt.Errorf("etcddcs: acquire leader: %w: held by %q", dcs.ErrConflict, holder)
		}
		s.settle(ctx, resp.Header.Revision)
		return lease, nil
	}
}

// leaderCmps is the fence: the leader key holds this node's name on lease.
func (s *Store) leaderCmps(lease int64) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.Value(s.leaderKey), "=", s.cfg.Name),
		clientv3.Compare(clientv3.LeaseValue(s.leaderKey), "=", lease),
	}
}

// RefreshLeader implements dcs.Election: renew the lease, then in one txn
// confirm the leader key holds this node's name on this lease, or else
// re-create it if it is absent.
func (s *Store) RefreshLeader(ctx context.Context) (dcs.Lease, error) {
	if err := s.begin(ctx, "refresh leader", true); err != nil {
		return dcs.Lease{}, err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	lease, err := s.keepAliveLocked(ctx, s.currentTTL())
	if err != nil {
		return dcs.Lease{}, err
	}
	if s.leaseExpired {
		// The tenure ended with the old lease: its leader key is gone and the
		// caller's deadline has passed. Re-creating the key now would make a
		// node that already fenced itself hold the lock without leading.
		return dcs.Lease{}, fmt.Errorf("etcddcs: refresh leader: %w: %w: the lease expired", dcs.ErrNotLeader, dcs.ErrSessionExpired)
	}
	// Sent again on a hung member (hedge): running it twice is harmless,
	// the second run finds the key the first re-created on the same lease.
	resp, err := hedge(ctx, s.reqTimeout, s.attempts(), func(rctx context.Context) (*clientv3.TxnResponse, error) {
		return s.cli.Txn(rctx).
			If(s.leaderCmps(lease.ID)...).
			Else(clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.leaderKey), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(s.leaderKey, s.cfg.Name, clientv3.WithLease(clientv3.LeaseID(lease.ID)))},
				[]clientv3.Op{clientv3.OpGet(s.leaderKey)})).
			Commit()
	})
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease expired between the keepalive and the txn: its keys are gone.
		s.lease.Store(0)
		return dcs.Lease{}, fmt.Errorf("etcddcs: refresh leader: %w: %w", dcs.ErrNotLeader, dcs.ErrSessionExpired)
	}
	if err != nil {
		return dcs.Lease{}, s.fail(ctx, "refresh leader", err)
	}
	s.saw(resp.Header.Revision)
	if resp.Succeeded {
		return lease, nil
	}
	var nested *etcdserverpb.TxnResponse
	if len(resp.Responses) > 0 {
		nested = resp.Responses[0].GetResponseTxn()
	}
	if nested != nil && nested.Succeeded {
		s.log.Info("leader key was absent; re-created it", "lease", leaseHex(lease.ID))
		s.settle(ctx, resp.Header.Revision)
		return lease, nil
	}
	holder := ""
	if nested != nil && len(nested.Responses) > 0 {
		if r := firstRange(nested.Responses); r != nil && len(r.Kvs) > 0 {
			holder = fmt.Sprintf("%q on lease %x", r.Kvs[0].Value, r.Kvs[0].Lease)
		}
	}
	return dcs.Lease{}, fmt.Errorf("etcddcs: refresh leader: %w: key held by %s", dcs.ErrNotLeader, holder)
}

// ReleaseLeader implements dcs.Election.
func (s *Store) ReleaseLeader(ctx context.Context, status *dcs.Status) error {
	var ops []clientv3.Op
	if status != nil {
		ops = append(ops, clientv3.OpPut(s.path.Key(dcs.KeyStatus), string(dcs.EncodeStatus(*status))))
	}
	ops = append(ops, clientv3.OpDelete(s.leaderKey))
	_, err := s.leaderTxn(ctx, "release leader", "", dcs.Unconditional, ops...)
	return err
}

// --- LeaderWriter -----------------------------------------------------------------

// leaderTxn runs ops in a txn guarded by the leader fence and, for key, by
// cond. It returns the txn's revision, ErrNotLeader when the fence fails and
// ErrConflict when only cond fails.
func (s *Store) leaderTxn(ctx context.Context, op, key string, cond dcs.Precondition, ops ...clientv3.Op) (int64, error) {
	if err := s.begin(ctx, op, true); err != nil {
		return 0, err
	}
	lease := s.lease.Load()
	if lease == 0 {
		return 0, fmt.Errorf("etcddcs: %s: %w: no lease", op, dcs.ErrNotLeader)
	}
	cmps := s.leaderCmps(lease)
	elseOps := []clientv3.Op{clientv3.OpGet(s.leaderKey)}
	if c, ok := condCmp(key, cond); ok {
		cmps = append(cmps, c)
		elseOps = append(elseOps, clientv3.OpGet(key))
	}
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Else(elseOps...).Commit()
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if !resp.Succeeded {
		r := firstRange(resp.Responses)
		if r == nil || len(r.Kvs) == 0 || string(r.Kvs[0].Value) != s.cfg.Name || r.Kvs[0].Lease != lease {
			holder := "nobody"
			if r != nil && len(r.Kvs) > 0 {
				holder = fmt.Sprintf("%q on lease %x", r.Kvs[0].Value, r.Kvs[0].Lease)
			}
			return 0, fmt.Errorf("etcddcs: %s: %w: leader key held by %s", op, dcs.ErrNotLeader, holder)
		}
		return 0, fmt.Errorf("etcddcs: %s: %w: %s", op, dcs.ErrConflict, describeCond(key, cond, resp.Responses))
	}
	s.settle(ctx, resp.Header.Revision)
	return resp.Header.Revision, nil
}

// firstRange returns the range response of a txn's first op, or nil.
func firstRange(rs []*etcdserverpb.ResponseOp) *etcdserverpb.RangeResponse {
	if len(rs) == 0 {
		return nil
	}
	return rs[0].GetResponseRange()
}

// condCmp translates a precondition on key into a compare.
func condCmp(key string, cond dcs.Precondition) (clientv3.Cmp, bool) {
	switch kind, rev := cond.Kind(); kind {
	case "absent":
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0), true
	case "revision":
		return clientv3.Compare(clientv3.ModRevision(key), "=", rev), true
	}
	return clientv3.Cmp{}, false
}

// describeCond explains a failed precondition from the Else range of key
// (the last response).
func describeCond(key string, cond dcs.Precondition, rs []*etcdserverpb.ResponseOp) string {
	kind, want := cond.Kind()
	got := int64(0)
	if len(rs) > 0 {
		if r := rs[len(rs)-1].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			got = r.Kvs[0].ModRevision
		}
	}
	if kind == "absent" {
		return fmt.Sprintf("%s exists (mod revision %d)", key, got)
	}
	return fmt.Sprintf("%s is at mod revision %d, not %d", key, got, want)
}

// SetSync implements dcs.LeaderWriter.
func (s *Store) SetSync(ctx context.Context, st dcs.SyncState, cond dcs.Precondition) (int64, error) {
	key := s.path.Key(dcs.KeySync)
	return s.leaderTxn(ctx, "set sync", key, cond, clientv3.OpPut(key, string(dcs.EncodeSync(st))))
}

// DeleteSync implements dcs.LeaderWriter.
func (s *Store) DeleteSync(ctx context.Context, cond dcs.Precondition) error {
	key := s.path.Key(dcs.KeySync)
	_, err := s.leaderTxn(ctx, "delete sync", key, cond, clientv3.OpDelete(key))
	return err
}

// SetHistory implements dcs.LeaderWriter.
func (s *Store) SetHistory(ctx context.Context, lines []dcs.HistoryLine) error {
	b, err := dcs.EncodeHistory(lines)
	if err != nil {
		return fmt.Errorf("etcddcs: set history: %w", err)
	}
	_, err = s.leaderTxn(ctx, "set history", "", dcs.Unconditional, clientv3.OpPut(s.path.Key(dcs.KeyHistory), string(b)))
	return err
}

// SetStatus implements dcs.LeaderWriter.
func (s *Store) SetStatus(ctx context.Context, st dcs.Status) error {
	_, err := s.leaderTxn(ctx, "set status", "", dcs.Unconditional, clientv3.OpPut(s.path.Key(dcs.KeyStatus), string(dcs.EncodeStatus(st))))
	return err
}

// SetFailsafe implements dcs.LeaderWriter.
func (s *Store) SetFailsafe(ctx context.Context, members map[string]string) error {
	_, err := s.leaderTxn(ctx, "set failsafe", "", dcs.Unconditional, clientv3.OpPut(s.path.Key(dcs.KeyFailsafe), string(dcs.EncodeFailsafe(members))))
	return err
}

// --- ClusterWriter ----------------------------------------------------------------

// condPut writes value at key if cond holds (a plain put when
// unconditional), returning the new mod revision.
func (s *Store) condPut(ctx context.Context, op, key string, value []byte, cond dcs.Precondition) (int64, error) {
	if err := s.begin(ctx, op, false); err != nil {
		return 0, err
	}
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	c, guarded := condCmp(key, cond)
	if !guarded {
		resp, err := s.cli.Put(rctx, key, string(value))
		if err != nil {
			return 0, s.fail(ctx, op, err)
		}
		s.settle(ctx, resp.Header.Revision)
		return resp.Header.Revision, nil
	}
	resp, err := s.cli.Txn(rctx).If(c).Then(clientv3.OpPut(key, string(value))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcddcs: %s: %w: %s", op, dcs.ErrConflict, describeCond(key, cond, resp.Responses))
	}
	s.settle(ctx, resp.Header.Revision)
	return resp.Header.Revision, nil
}

// InitializeRace implements dcs.ClusterWriter.
func (s *Store) InitializeRace(ctx context.Context, sysid string) error {
	_, err := s.condPut(ctx, "initialize race", s.path.Key(dcs.KeyInitialize), []byte(sysid), dcs.IfAbsent())
	return err
}

// SetInitialize implements dcs.ClusterWriter.
func (s *Store) SetInitialize(ctx context.Context, sysid string) error {
	_, err := s.condPut(ctx, "set initialize", s.path.Key(dcs.KeyInitialize), []byte(sysid), dcs.Unconditional)
	return err
}

// CancelInitialize implements dcs.ClusterWriter.
func (s *Store) CancelInitialize(ctx context.Context) error {
	return s.deleteKey(ctx, "cancel initialize", s.path.Key(dcs.KeyInitialize), false)
}

// SetConfig implements dcs.ClusterWriter.
func (s *Store) SetConfig(ctx context.Context, data map[string]any, cond dcs.Precondition) (int64, error) {
	b, err := dcs.EncodeConfig(data)
	if err != nil {
		return 0, fmt.Errorf("etcddcs: set config: %w", err)
	}
	return s.condPut(ctx, "set config", s.path.Key(dcs.KeyConfig), b, cond)
}

// SetFailover implements dcs.ClusterWriter.
func (s *Store) SetFailover(ctx context.Context, f dcs.Failover, cond dcs.Precondition) (int64, error) {
	return s.condPut(ctx, "set failover", s.path.Key(dcs.KeyFailover), dcs.EncodeFailover(f), cond)
}

// DeleteCluster implements dcs.ClusterWriter.
func (s *Store) DeleteCluster(ctx context.Context) error {
	return s.deleteKey(ctx, "delete cluster", s.prefix, true)
}

func (s *Store) deleteKey(ctx context.Context, op, key string, prefix bool) error {
	if err := s.begin(ctx, op, false); err != nil {
		return err
	}
	var opts []clientv3.OpOption
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	rctx, cancel := s.rctx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(rctx, key, opts...)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if resp.Deleted > 0 {
		s.settle(ctx, resp.Header.Revision)
	}
	return nil
}

package routing

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgha/pgha/internal/clock"
)

// Structured log keys.
const (
	logMember    = "member"
	logRole      = "role"
	logLeaderRev = "leader_rev"
	logTimeline  = "timeline"
	logLSN       = "lsn"
)

// Router sends connections to the right node of a PostgreSQL cluster:
// writes to the current primary, reads to replicas within the lag bound. It
// holds one pgxpool.Pool per node and role, and follows the topology its
// Source reports. Create it with New; it is safe for concurrent use.
type Router struct {
	cfg    Config
	base   *pgxpool.Config
	log    hclog.Logger
	clk    clock.Clock
	jitter func() float64

	state atomic.Pointer[state]

	ctx    context.Context
	cancel context.CancelFunc
	// loops holds the source runner, the manager and the prober; closers
	// holds goroutines closing retired pools.
	loops     sync.WaitGroup
	closers   sync.WaitGroup
	closeOnce sync.Once

	in struct {
		mu     sync.Mutex
		view   *View
		probes map[string]probeResult
		rounds int
	}
	wake      chan struct{}
	probeWake chan struct{}
	targets   atomic.Pointer[[]probeTarget]

	m     manager
	stats counters
	// conf is the DCS's last confirmation of a tenure (MaxStaleness).
	conf atomic.Pointer[confirmation]
}

// state is what acquisitions read: an immutable topology and the pools
// that serve it. next is closed when a newer state replaces this one.
type state struct {
	topo     *Topology
	primary  *pool
	replicas map[string]*pool
	ready    bool
	closed   bool
	next     chan struct{}
}

func (s *state) holding() bool { return s.topo != nil && s.topo.Holding }

// manager is the state of the router's goroutine; nothing else touches it
// (Close does, after that goroutine has exited).
type manager struct {
	primary    *pool
	warm       *pool // the switchover candidate's primary pool, opened early
	replicas   map[string]*pool
	epoch      Epoch
	epochSince time.Time
	reported   map[string]bool
	holdRev    int64
	holdSince  time.Time
	holdTimer  clock.Timer
	targets    []probeTarget
}

type counters struct {
	leaderChanges, conflicts, fencedConns, retries, ambiguous, held, stale atomic.Int64
}

// Stats are the router's counters and current state, for metrics.
type Stats struct {
	// Epoch is the current primary's tenure.
	Epoch Epoch
	// Holding is true while write acquisitions are held for a switchover.
	Holding bool
	// LeaderChanges counts tenure changes seen (including to no leader).
	LeaderChanges int64
	// Conflicts counts conflicts reported (see Conflict).
	Conflicts int64
	// FencedConns counts connections to a former primary (in use or idle)
	// that fencing cut.
	FencedConns int64
	// Retries counts transactions Write and Read ran again.
	Retries int64
	// AmbiguousCommits counts Write calls that returned ErrAmbiguousCommit.
	AmbiguousCommits int64
	// HeldAcquisitions counts primary acquisitions that waited on a
	// switchover hold.
	HeldAcquisitions int64
	// StaleAcquisitions counts primary acquisitions that waited because
	// the DCS had not confirmed the primary within Config.MaxStaleness.
	StaleAcquisitions int64
}

// New validates cfg, starts following the topology and returns once the
// source has delivered its first view (and, for FromHosts, the first probe
// round has finished), bounded by ctx. Pools connect lazily. Call Close to
// release everything.
func New(ctx context.Context, cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var base *pgxpool.Config
	if cfg.PoolConfig != nil {
		base = cfg.PoolConfig.Copy()
	} else {
		var err error
		if base, err = pgxpool.ParseConfig(cfg.ConnString); err != nil {
			return nil, fmt.Errorf("routing: ConnString: %w", err)
		}
	}
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	rng := mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	var rngMu sync.Mutex
	r := &Router{
		cfg: cfg, base: base, log: cfg.Logger.Named("routing"), clk: clock.Real,
		jitter: func() float64 {
			rngMu.Lock()
			defer rngMu.Unlock()
			return rng.Float64()
		},
		wake: make(chan struct{}, 1), probeWake: make(chan struct{}, 1),
	}
	r.in.probes = map[string]probeResult{}
	r.m.replicas = map[string]*pool{}
	r.m.reported = map[string]bool{}
	r.state.Store(&state{next: make(chan struct{})})
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.loops.Add(2)
	go r.runSource()
	go r.manage()
	if cfg.ProbeInterval > 0 {
		r.loops.Add(1)
		go r.probeLoop()
	}
	if cf := cfg.confirmer(); cf != nil {
		r.loops.Add(1)
		go r.confirmLoop(cf, cfg.Source.(*dcsSource).r)
	}
	st := r.state.Load()
	for !st.ready {
		select {
		case <-ctx.Done():
			r.Close()
			return nil, fmt.Errorf("routing: waiting for the first topology: %w", ctx.Err())
		case <-st.next:
			st = r.state.Load()
		}
	}
	return r, nil
}

// Close stops following the topology, waits for every goroutine the router
// started, and closes every pool (waiting, as pgxpool.Pool.Close does, for
// acquired connections to be released). Acquisitions waiting or made
// afterwards fail with ErrClosed. It is idempotent.
func (r *Router) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.loops.Wait()
		prev := r.state.Load()
		r.state.Store(&state{topo: prev.topo, closed: true, ready: true, next: make(chan struct{})})
		close(prev.next)
		if r.m.holdTimer != nil {
			r.m.holdTimer.Stop()
		}
		pools := slices.Collect(maps.Values(r.m.replicas))
		for _, p := range []*pool{r.m.primary, r.m.warm} {
			if p != nil {
				pools = append(pools, p)
			}
		}
		for _, p := range pools {
			p.retired.Store(true)
			r.closers.Go(p.p.Close)
		}
		r.closers.Wait()
	})
}

// Topology returns the current topology snapshot. Never modify it.
func (r *Router) Topology() *Topology {
	if t := r.state.Load().topo; t != nil {
		return t
	}
	return &Topology{}
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	st := r.state.Load()
	s := Stats{
		LeaderChanges: r.stats.leaderChanges.Load(), Conflicts: r.stats.conflicts.Load(),
		FencedConns: r.stats.fencedConns.Load(), Retries: r.stats.retries.Load(),
		AmbiguousCommits: r.stats.ambiguous.Load(), HeldAcquisitions: r.stats.held.Load(),
		StaleAcquisitions: r.stats.stale.Load(),
		Holding:           st.holding(),
	}
	if st.topo != nil {
		s.Epoch = st.topo.Epoch
	}
	return s
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// publishView is the Source's publish function.
func (r *Router) publishView(v View) {
	r.in.mu.Lock()
	r.in.view = &v
	r.in.mu.Unlock()
	poke(r.wake)
}

// runSource runs the source, restarting it with backoff when it returns
// before the router closes.
func (r *Router) runSource() {
	defer r.loops.Done()
	b := r.newRetrier()
	for {
		ctx, cancel := context.WithCancel(r.ctx)
		err := r.cfg.Source.Run(ctx, r.publishView)
		cancel()
		if r.ctx.Err() != nil {
			return
		}
		d := b.next(err)
		r.log.Warn("topology source stopped; restarting", "error", err, "after", d)
		t := r.clk.NewTimer(d)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// manage is the router's goroutine: it rebuilds the topology on every
// source or probe update and on hold deadlines, and keeps the pools in line.
func (r *Router) manage() {
	defer r.loops.Done()
	for {
		var holdC <-chan time.Time
		if r.m.holdTimer != nil {
			holdC = r.m.holdTimer.C()
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-holdC:
			r.m.holdTimer = nil
		}
		r.rebuild()
	}
}

func (r *Router) probeTTL() time.Duration {
	return 3*r.cfg.ProbeInterval + r.cfg.ProbeTimeout
}

// rebuild builds and publishes a new state.
func (r *Router) rebuild() {
	m := &r.m
	r.in.mu.Lock()
	view := r.in.view
	probes := maps.Clone(r.in.probes)
	rounds := r.in.rounds
	r.in.mu.Unlock()
	if view == nil {
		return
	}
	now := r.clk.Now()
	in := buildInput{view: view, probes: probes, now: now, probeTTL: r.probeTTL(), epoch: m.epoch, epochSince: m.epochSince}
	t := buildTopology(in)
	oldEpoch := m.epoch
	changed := !t.Epoch.SameTenure(m.epoch)
	if changed {
		m.epochSince = now
		in.epoch, in.epochSince = t.Epoch, now
		t = buildTopology(in)
	}
	m.epoch = t.Epoch
	t.Holding = r.holding(t, now)

	// The primary's pool: fenced the moment its tenure (or address) ends.
	pn, hasPrimary := t.Primary()
	if m.primary != nil && (changed || !hasPrimary || m.primary.addr != pn.Addr) {
		r.fence(m.primary)
		m.primary = nil
	}
	if hasPrimary && m.primary == nil && m.warm != nil && m.warm.node == pn.Name && m.warm.addr == pn.Addr {
		// The switchover candidate won: its pool is already connected.
		m.primary, m.warm = m.warm, nil
		m.primary.epoch = t.Epoch
	}
	if hasPrimary && m.primary == nil {
		p, err := r.newPool(pn, RolePrimary, t.Epoch)
		if err != nil {
			r.log.Error("cannot create the primary's pool", logMember, pn.Name, "error", err)
		} else {
			m.primary = p
		}
	}
	r.warmCandidate(t)
	// Replica pools: one per replica; retired when the node leaves the
	// role or moves.
	want := map[string]Node{}
	for _, n := range t.Nodes {
		if n.Role == RoleReplica && n.Addr != "" {
			want[n.Name] = n
		}
	}
	for name, p := range m.replicas {
		if n, ok := want[name]; !ok || n.Addr != p.addr {
			r.retire(p)
			delete(m.replicas, name)
		}
	}
	for name, n := range want {
		if m.replicas[name] != nil {
			continue
		}
		p, err := r.newPool(n, RoleReplica, Epoch{})
		if err != nil {
			r.log.Error("cannot create a replica's pool", logMember, name, "error", err)
			continue
		}
		m.replicas[name] = p
	}
	r.setTargets(t)

	ready := !view.RolesByProbe || rounds > 0
	st := &state{topo: t, primary: m.primary, replicas: maps.Clone(m.replicas), ready: ready, next: make(chan struct{})}
	prev := r.state.Swap(st)
	close(prev.next)

	// Reports, after routing already follows.
	if changed {
		r.stats.leaderChanges.Add(1)
		if t.Epoch.IsZero() {
			r.log.Warn("no leader", "previous", oldEpoch.Leader)
		} else {
			r.log.Info("following a new primary", logMember, t.Epoch.Leader, logLeaderRev, t.Epoch.Revision,
				logTimeline, t.Epoch.Timeline, "previous", oldEpoch.Leader)
		}
		if h := r.cfg.Hooks.OnLeaderChange; h != nil {
			h(oldEpoch, t.Epoch)
		}
	}
	for _, c := range t.Conflicts {
		key := fmt.Sprintf("%s|%s|%d", c.Node, c.Epoch.Leader, c.Epoch.Revision)
		if c.Epoch.Revision == 0 {
			key += fmt.Sprintf("|%d", c.Epoch.Timeline)
		}
		if m.reported[key] {
			continue
		}
		m.reported[key] = true
		r.stats.conflicts.Add(1)
		r.log.Error("conflict: a node acts as primary besides the one followed", logMember, c.Node,
			"followed", c.Epoch.Leader, "reason", c.Reason)
		if h := r.cfg.Hooks.OnConflict; h != nil {
			h(c)
		}
	}
	if h := r.cfg.Hooks.OnTopology; h != nil {
		h(t)
	}
}

// holding decides whether write acquisitions are held for a planned
// switchover, and arms the timer that re-evaluates it.
func (r *Router) holding(t *Topology, now time.Time) bool {
	m := &r.m
	if m.holdTimer != nil {
		m.holdTimer.Stop()
		m.holdTimer = nil
	}
	s := t.Switchover
	if r.cfg.SwitchoverHold < 0 || s == nil {
		m.holdRev = 0
		return false
	}
	if !s.ScheduledAt.IsZero() && now.Before(s.ScheduledAt) {
		m.holdTimer = r.clk.NewTimer(s.ScheduledAt.Sub(now))
		return false
	}
	// Over once another member leads.
	if t.Epoch.Leader != "" && t.Epoch.Leader != s.From {
		return false
	}
	if m.holdRev != s.Revision {
		m.holdRev, m.holdSince = s.Revision, now
		r.log.Info("planned switchover: holding new writes", "from", s.From, "to", s.To)
	}
	until := m.holdSince.Add(r.cfg.SwitchoverHold)
	if !now.Before(until) {
		return false
	}
	m.holdTimer = r.clk.NewTimer(until.Sub(now))
	return true
}

// warmCandidate opens the primary pool of a switchover's named candidate
// while writes are held, with as many connections as the current primary
// pool has, so that the writes released to it need not wait for new
// connections; and retires it when the switchover is over without it.
func (r *Router) warmCandidate(t *Topology) {
	m := &r.m
	var cand Node
	ok := false
	if t.Holding && t.Switchover != nil && t.Switchover.To != "" {
		cand, ok = t.Node(t.Switchover.To)
		ok = ok && cand.Addr != "" && cand.Role == RoleReplica
	}
	if m.warm != nil && (!ok || m.warm.node != cand.Name || m.warm.addr != cand.Addr) {
		r.retire(m.warm)
		m.warm = nil
	}
	if !ok || m.warm != nil {
		return
	}
	p, err := r.newPoolWarm(cand, RolePrimary, Epoch{}, true)
	if err != nil {
		r.log.Warn("cannot open the switchover candidate's pool", logMember, cand.Name, "error", err)
		return
	}
	m.warm = p
	k := int32(1)
	if m.primary != nil {
		k = max(k, m.primary.p.Stat().TotalConns())
	}
	k = min(k, p.p.Config().MaxConns)
	r.log.Debug("opening connections to the switchover candidate", logMember, cand.Name, "conns", k)
	for range k {
		r.closers.Go(func() {
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.SwitchoverHold)
			defer cancel()
			if c, err := p.p.Acquire(ctx); err == nil {
				c.Release()
			}
		})
	}
}

// fence cuts a former primary's pool and closes it in the background.
func (r *Router) fence(p *pool) {
	n := p.fence()
	r.stats.fencedConns.Add(int64(n))
	r.log.Info("fenced the former primary's pool", logMember, p.node, logLeaderRev, p.epoch.Revision, "cut", n)
	r.closers.Go(p.p.Close)
}

// retire closes a pool that is no longer needed, letting connections in use
// finish.
func (r *Router) retire(p *pool) {
	p.retired.Store(true)
	r.closers.Go(p.p.Close)
}

// waitPrimaryChange waits until the state changes in a way that matters to
// a primary acquisition (another pool, hold, readiness, closing), or d
// passes (d <= 0: no timer), or ctx ends.
func (r *Router) waitPrimaryChange(ctx context.Context, st *state, d time.Duration) error {
	return r.waitState(ctx, st, d, func(a, b *state) bool {
		return a.primary != b.primary || a.holding() != b.holding() || a.ready != b.ready || b.closed
	})
}

// waitAnyChange waits for any new state, d, or ctx.
func (r *Router) waitAnyChange(ctx context.Context, st *state, d time.Duration) error {
	return r.waitState(ctx, st, d, func(a, b *state) bool { return true })
}

func (r *Router) waitState(ctx context.Context, st *state, d time.Duration, differs func(a, b *state) bool) error {
	var tc <-chan time.Time
	if d > 0 {
		t := r.clk.NewTimer(d)
		defer t.Stop()
		tc = t.C()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tc:
			return nil
		case <-st.next:
			n := r.state.Load()
			if differs(st, n) {
				return nil
			}
			st = n
		}
	}
}

// errDescribe says why there is no primary to hand out.
func describeNoPrimary(st *state) string {
	switch {
	case !st.ready || st.topo == nil:
		return "no topology yet"
	case st.holding():
		return fmt.Sprintf("switchover from %s in progress", st.topo.Switchover.From)
	case st.topo.Epoch.IsZero():
		return "the cluster has no leader"
	case st.primary == nil:
		return fmt.Sprintf("leader %s is not reachable (no address or no pool)", st.topo.Epoch.Leader)
	}
	return fmt.Sprintf("primary %s does not accept connections", st.topo.Epoch.Leader)
}

func noPrimaryErr(st *state, last, ctxErr error) error {
	if last != nil {
		return fmt.Errorf("%w: %s: %w (last error: %w)", ErrNoPrimary, describeNoPrimary(st), ctxErr, last)
	}
	return fmt.Errorf("%w: %s: %w", ErrNoPrimary, describeNoPrimary(st), ctxErr)
}

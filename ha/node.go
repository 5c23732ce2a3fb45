package ha

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/internal/clock"
	"github.com/pgha/pgha/pg"
)

// Errors Run and the request methods return.
var (
	// ErrRunning: Run was called on a Node that is already running.
	ErrRunning = errors.New("ha: node is already running")
	// ErrRefused: the node refused to act (system identifier mismatch, a
	// replica's data without /initialize, a failed bootstrap); the error
	// wraps the reason. Run returns it after stopping Postgres.
	ErrRefused = errors.New("ha: refused to act")
	// ErrInvalidRequest: a switchover or failover request failed validation.
	ErrInvalidRequest = errors.New("ha: invalid request")
)

// Log keys, defined once.
const (
	logMember = "member"
	logAction = "action"
)

// Node runs the HA loop for one member: it observes the DCS and Postgres,
// asks failover.Decide what to do, and does it. Create it with New and run
// it with Run.
type Node struct {
	cfg   Config
	log   hclog.Logger
	clock clock.Clock
	store dcs.Store
	pg    Postgres
	http  *http.Client

	status   atomic.Pointer[Status]
	lastSnap atomic.Pointer[dcs.Cluster]
	wake     chan struct{}
	renewCh  chan struct{}
	fenceCh  chan string
	ops      chan opRequest

	metricsOnce    sync.Once
	metricsHandler http.Handler
	running        atomic.Bool

	// leaderOpMu is held by a RefreshLeader in flight and by endLeadership,
	// so leadership never ends while a renewal could re-create the key.
	leaderOpMu sync.Mutex
	// hooks: an ordered queue of hook calls run by one goroutine of Run.
	hookMu   sync.Mutex
	hookQ    []func()
	hookWake chan struct{}

	// lease state, guarded by mu
	mu           sync.Mutex
	tm           timing
	lease        dcs.Lease
	leaseOK      time.Time // last successful keepalive/refresh
	leaseErr     error     // last keeper error (nil after a success)
	leading      bool      // believes it holds the leader key on its lease
	deadline     time.Time // lease deadline while leading
	fenceTimer   clock.Timer
	leaderCancel context.CancelFunc
	fenced       bool // the fence stopped Postgres since the last decision
	// abandonLease: the fence ended a tenure whose leader key may still be
	// on the node's lease; the keeper revokes that lease (Resign) before it
	// renews anything, so renewals that reach the DCS while their replies
	// do not (a one-way cut) cannot keep an orphan leader key alive.
	abandonLease bool
	// standbyUpstream is the upstream Postgres was last configured to
	// follow (nil: not configured by this node, or unknown). With no WAL
	// receiver (the upstream is unreachable, or the receiver is between
	// retries) it stands for the upstream, so the node does not
	// reconfigure Postgres every cycle while Postgres retries by itself.
	standbyUpstream atomic.Pointer[pg.Upstream]
	// failsafeUntil: every member acknowledged this primary (failsafe
	// mode, DCS out of reach); it leads until then as if its lease ran.
	failsafeUntil time.Time

	// failsafe: the leader that announced itself by POST /failsafe.
	fsMu     sync.Mutex
	fsLeader failsafeAnnounce
	// failsafeMode mirrors the dynamic failsafe_mode for the lease keeper.
	failsafeMode atomic.Bool
	// dynPub is a copy of dyn for other goroutines (the REST API).
	dynPub atomic.Pointer[dcs.DynamicConfig]

	// sched is the scheduled restart (POST /restart with a schedule).
	schedMu sync.Mutex
	sched   *scheduledRestart
	events  eventCounters // pgha_* event counters for /metrics (metrics.go)

	// loop state, owned by the loop goroutine
	mem         failover.Memory
	async       failover.Action
	asyncCancel context.CancelFunc
	asyncDone   chan asyncResult
	asyncSeq    uint64
	result      *failover.Result
	pgState     string
	role        string
	crashed     bool
	lastCluster *dcs.Cluster
	dcsLastSeen time.Time
	dyn         dcs.DynamicConfig
	lastMember  []byte
	lastStatus  int64
	asyncIdle   atomic.Bool // no long action runs (for the REST API's live view)
	historyDue  atomic.Bool // a promotion's timeline switch is not in /history yet
	refused     error
	observed    pg.Status
	syncRep     syncLoop // synchronous mode, owned by the loop goroutine

	// replication slots and the replication view (slots.go)
	slots slotState

	// callbacks and the watchdog (callbacks.go, watchdog.go)
	scripts        *scripts
	wd             *watchdog.Watchdog
	cbRole         atomic.Value // string: the role for callbacks fired outside the loop goroutine
	cbCalled       atomic.Bool  // on_start, on_stop, on_restart or on_role_change fired in this Run
	restarted      atomic.Bool  // Node.Restart fired on_restart: its action fires no on_start
	wdMarginWarned atomic.Bool
	firstCycleDone bool // loop goroutine

	wg sync.WaitGroup
}

// New validates cfg and returns a Node. It starts nothing.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = time.Second
	}
	if cfg.Tags != nil {
		tags := make(dcs.Tags, len(cfg.Tags))
		for k, v := range cfg.Tags {
			tags[k] = v
		}
		cfg.Tags = tags
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger.Named("ha").With(logMember, cfg.Name),
		clock:     clock.Real,
		store:     cfg.Store,
		pg:        cfg.Postgres,
		http:      cfg.HTTPClient,
		wake:      make(chan struct{}, 1),
		renewCh:   make(chan struct{}, 1),
		fenceCh:   make(chan string, 1),
		ops:       make(chan opRequest),
		hookWake:  make(chan struct{}, 1),
		asyncDone: make(chan asyncResult, 1),
		dyn:       dcs.ParseDynamicConfig(cfg.bootstrapDCS()),
	}
	n.asyncIdle.Store(true)
	initial := n.dyn
	n.dynPub.Store(&initial)
	if n.http == nil {
		n.http = &http.Client{Timeout: cfg.ProbeTimeout}
	}
	tm, err := cfg.timingFor(n.dyn.TTL)
	if err != nil {
		return nil, err
	}
	tm.retry = n.dyn.RetryTimeout
	n.tm = tm
	wcfg := cfg.Watchdog
	if wcfg.Logger == nil {
		wcfg.Logger = n.log
	}
	if n.wd, err = watchdog.New(wcfg); err != nil {
		return nil, err
	}
	n.scripts = newScripts(cfg.Callbacks, cfg.Scope, n.log)
	n.publishStatus()
	return n, nil
}

func (c Config) bootstrapDCS() map[string]any {
	if c.Bootstrap != nil && c.Bootstrap.DCS != nil {
		return c.Bootstrap.DCS
	}
	return nil
}

// Status returns the latest immutable snapshot of the node.
func (n *Node) Status() *Status { return n.status.Load() }

// Handler returns the node's REST API: GET /patroni and the health checks
// (/primary, /replica, /read-only, /health, /leader, /liveness, /readiness),
// with HEAD and OPTIONS answering the status code alone.
func (n *Node) Handler() http.Handler {
	return &apiHandler{status: n.liveStatus, now: n.clock.Now, node: n}
}

// liveStatus is the last snapshot with the Postgres facts read again now
// (as Patroni does for every REST request: health checks must not answer
// from a view up to loop_wait old) and the leadership re-checked against
// the lease deadline. A stuck loop therefore never makes the API claim a
// leadership or a running primary the node no longer has.
func (n *Node) liveStatus() *Status {
	c := *n.Status()
	c.IsLeader = n.isLeading()
	c.ScheduledRestart = nil
	if sr := n.scheduledRestartData(); sr != nil {
		delete(sr, "postmaster_start_time")
		c.ScheduledRestart = sr
	}
	if _, running := n.pg.Running(); !running {
		if c.State == "running" {
			c.State = "stopped"
		}
		if c.Role == dcs.RolePrimary {
			c.Role = dcs.RoleDemoted
		}
		return &c
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(n.cfg.ProbeTimeout, 2*time.Second))
	defer cancel()
	st, err := n.pg.Status(ctx)
	if err != nil || st.Role == "" {
		if c.State == "running" {
			c.State = "unknown"
		}
		return &c
	}
	c.applyPostgres(st)
	if c.State != "running" && n.asyncIdle.Load() {
		c.State = "running"
	}
	if st.Role == pg.RolePrimary {
		c.Role = dcs.RolePrimary
	} else if c.Role == dcs.RolePrimary || c.Role == dcs.RoleUninitialized {
		c.Role = dcs.RoleReplica
	}
	return &c
}

func (n *Node) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run runs the node until ctx ends or the node refuses to act. It owns every
// goroutine it starts and returns only after they have exited. On the way
// out it stops Postgres (fast), releases the leader key if it holds it, and
// revokes its lease, under a fresh context bounded by the TTL.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer n.running.Store(false)
	n.cbCalled.Store(false)
	n.firstCycleDone = false
	n.wd.Reset()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	n.log.Info("starting", "api_url", n.cfg.APIURL, "ttl", n.dyn.TTL)
	n.wg.Go(func() { n.watchDCS(ctx) })
	n.wg.Go(func() { n.keepLease(ctx) })
	n.wg.Go(func() { n.fencer(ctx) })
	n.wg.Go(func() { n.watchPostgres(ctx) })
	hooksCtx, stopHooks := context.WithCancel(context.Background())
	hooksDone := make(chan struct{})
	go func() { defer close(hooksDone); n.runHooks(hooksCtx) }()

	err := n.loop(ctx)
	cancel()
	n.cancelAsync()
	// Leader-only work handed to OnStartedLeading must stop before Postgres
	// is stopped and the key released; Run waits for it below.
	n.mu.Lock()
	if n.leaderCancel != nil {
		n.leaderCancel()
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.shutdown()
	stopHooks()
	<-hooksDone
	// Callback scripts still running get until Callbacks.Timeout.
	grace := n.clock.NewTimer(n.scriptTimeout())
	n.scripts.close(grace.C())
	grace.Stop()
	if h := n.cfg.Hooks.OnStoppedLeading; h != nil {
		h()
	}
	if err == nil && n.refused != nil {
		err = n.refused
	}
	return err
}

// shutdown stops Postgres and gives up the leader key and the lease.
func (n *Node) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), max(n.tm.ttl, 10*time.Second))
	defer cancel()
	wasLeader := n.isLeading()
	n.endLeadership("shutdown")
	// Unlike Patroni, a paused node also stops Postgres and releases the key:
	// a primary left running by an agent that is gone would become a second
	// writable primary as soon as the cluster is resumed.
	var status *dcs.Status
	if !wasLeader {
		n.leaveSyncDuty(ctx)
	}
	if _, running := n.pg.Running(); running {
		if err := n.stopPostgres(ctx, pg.StopFast, false); err != nil {
			n.log.Error("stopping postgres on shutdown; trying immediate", "error", err)
			role := n.roleNow()
			ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = n.pg.Stop(ictx, pg.StopImmediate)
			icancel()
			if err == nil {
				n.postgresStopped(role, true)
			}
			if _, still := n.pg.Running(); err != nil && still && wasLeader {
				// Postgres may still accept writes: keep the key so nobody
				// else promotes while this process can still say so; the
				// lease runs out after we exit (see the package doc).
				n.log.Error("postgres could not be stopped; keeping the leader key", "error", err)
				return
			}
		}
	}
	if _, running := n.pg.Running(); !running {
		_ = n.wd.Disable()
	}
	if cd, err := n.pg.Status(ctx); err == nil && cd.Control != nil {
		status = n.releaseStatus(int64(cd.Control.CheckpointLSN))
	}
	if wasLeader {
		if err := n.store.ReleaseLeader(ctx, status); err != nil && !errors.Is(err, dcs.ErrNotLeader) {
			n.log.Warn("releasing the leader key on shutdown", "error", err)
		}
	}
	if err := n.store.Resign(ctx); err != nil {
		n.log.Warn("revoking the lease on shutdown", "error", err)
	}
	n.pgState = failover.StateStopped
	n.publishStatus()
}

// watchDCS wakes the loop when a key that matters changes: the leader key
// (at once: this is what makes failover fast), /failover, /config, /sync,
// /initialize, or a member key.
func (n *Node) watchDCS(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := n.store.Watch(ctx)
		if err != nil {
			n.sleep(ctx, 200*time.Millisecond)
			continue
		}
		// Changes between the loop's last snapshot and this watch's start
		// are not delivered: look again now.
		n.poke(n.wake)
		for ev := range ch {
			switch {
			case ev.Type == dcs.EventReset, ev.Key == dcs.KeyLeader, ev.Key == dcs.KeyFailover,
				ev.Key == dcs.KeyConfig, ev.Key == dcs.KeySync, ev.Key == dcs.KeyInitialize:
				n.poke(n.wake)
			case ev.Key == dcs.KeyMembers+n.cfg.Name && ev.Type == dcs.EventDelete:
				n.poke(n.wake)
			}
		}
	}
}

// watchPostgres wakes the loop the moment the postmaster dies.
func (n *Node) watchPostgres(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-n.pg.Exits():
			if !ok {
				return
			}
			n.log.Warn("postgres exited unexpectedly", "event", ev.String())
			n.poke(n.wake)
		}
	}
}

func (n *Node) sleep(ctx context.Context, d time.Duration) {
	t := n.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

// lastClusterSnapshot is the last DCS snapshot the loop saw (nil before
// the first); read-only.
func (n *Node) lastClusterSnapshot() *dcs.Cluster {
	return n.lastSnap.Load()
}

// hook queues a hook call; one goroutine runs them in order (so role changes
// are reported in the order they happened), and Run waits for it.
func (n *Node) hook(f func()) {
	n.hookMu.Lock()
	n.hookQ = append(n.hookQ, f)
	n.hookMu.Unlock()
	n.poke(n.hookWake)
}

// runHooks calls queued hooks in order until ctx ends, then drains the
// queue.
func (n *Node) runHooks(ctx context.Context) {
	for {
		n.hookMu.Lock()
		q := n.hookQ
		n.hookQ = nil
		n.hookMu.Unlock()
		for _, f := range q {
			f()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-n.hookWake:
		case <-ctx.Done():
			n.hookMu.Lock()
			q := n.hookQ
			n.hookQ = nil
			n.hookMu.Unlock()
			for _, f := range q {
				f()
			}
			return
		}
	}
}

// dynamic returns the dynamic configuration in force, for goroutines other
// than the loop (which owns n.dyn).
func (n *Node) dynamic() dcs.DynamicConfig { return *n.dynPub.Load() }

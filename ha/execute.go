package ha

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
)

// startAsync runs a long action in its own goroutine; its outcome reaches
// the next decision through Local.Result.
func (n *Node) startAsync(ctx context.Context, a failover.Action, state string, fn func(ctx context.Context) error) {
	actx, cancel := context.WithCancel(ctx)
	n.asyncSeq++
	seq := n.asyncSeq
	n.async, n.asyncCancel = a, cancel
	n.asyncIdle.Store(false)
	if state != "" {
		n.pgState = state
	}
	n.wg.Go(func() {
		defer cancel()
		err := safeRun(actx, fn)
		r := &failover.Result{Action: a}
		if err != nil {
			r.Err = err.Error()
			r.Retry = errors.Is(err, errNotStarted)
			n.log.Error("action failed", logAction, a.String(), "error", err)
		} else {
			n.log.Info("action done", logAction, a.String())
		}
		select {
		case n.asyncDone <- asyncResult{seq: seq, r: r}:
		case <-ctx.Done():
		}
	})
}

// errNotStarted marks an action's failure that happened before it changed
// anything (Result.Retry).
var errNotStarted = errors.New("the action did not start")

// safeRun keeps a panic in an action from crossing into the caller.
func safeRun(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(ctx)
}

// asyncResult is a finished action's outcome, tagged with its start.
type asyncResult struct {
	seq uint64
	r   *failover.Result
}

func (n *Node) finishAsync(ar asyncResult) {
	if ar.seq != n.asyncSeq {
		return // an action cancelled and replaced by a newer one
	}
	r := ar.r
	n.async, n.asyncCancel, n.result = failover.ActionNone, nil, r
	n.asyncIdle.Store(true)
	if r.Err == "" {
		switch r.Action {
		case failover.ActionBootstrap, failover.ActionClone, failover.ActionStartAsReplica, failover.ActionRewind,
			failover.ActionReinitialize, failover.ActionRestartPrimary, failover.ActionPromote, failover.ActionDemote:
			n.pgState = failover.StateRunning
		case failover.ActionCrashRecovery:
			n.pgState = failover.StateStopped
		}
	} else {
		switch r.Action {
		case failover.ActionStartAsReplica, failover.ActionRestartPrimary:
			n.pgState = failover.StateStartFailed
		default:
			if _, running := n.pg.Running(); !running {
				n.pgState = failover.StateStopped
			}
		}
	}
	n.actionDone(r)
}

func (n *Node) cancelAsync() {
	if n.asyncCancel != nil {
		n.asyncCancel()
	}
}

// execute carries out one decision.
func (n *Node) execute(ctx context.Context, d failover.Decision, c *dcs.Cluster, l failover.Local) {
	if d.SetInitialize && l.SysID != "" {
		var err error
		if d.InitializeRevision == 0 && (c == nil || c.Initialize == nil) {
			err = n.store.InitializeRace(ctx, l.SysID)
		} else {
			err = n.store.SetInitialize(ctx, l.SysID)
		}
		if err != nil {
			n.log.Warn("writing /initialize", "error", err)
		}
	}
	if d.WriteConfig {
		if _, err := n.store.SetConfig(ctx, n.initialConfig(), dcs.IfAbsent()); err != nil {
			n.log.Warn("writing /config", "error", err)
		}
	}
	switch d.Action {
	case failover.ActionNone, failover.ActionWaitForLeaderBootstrap, failover.ActionProbePeers, failover.ActionCheckDivergence:
	case failover.ActionRefreshLeader, failover.ActionClearFailover:
		n.leaderRoutine(ctx, l)
		if l.Running && !l.InRecovery && n.isLeading() {
			n.processSync(ctx, c)
			n.writeFailsafe(ctx, c)
		}
		if d.Action == failover.ActionClearFailover || d.ClearFailover {
			n.clearFailover(ctx, d.FailoverRevision)
		}
	case failover.ActionBootstrap:
		n.startAsync(ctx, d.Action, failover.StateInitializing, n.bootstrap)
	case failover.ActionClone:
		up, err := upstreamOf(c, d.Target)
		if err != nil {
			n.result = &failover.Result{Action: d.Action, Err: err.Error()}
			return
		}
		leaderUp, lerr := upstreamOf(c, c.LeaderName())
		n.startAsync(ctx, d.Action, failover.StateCreatingReplica, func(ctx context.Context) error {
			if err := n.stopIfRunning(ctx, pg.StopImmediate); err != nil {
				return err
			}
			if err := n.pg.Clone(ctx, up, nil); err != nil {
				return err
			}
			if lerr == nil {
				up = leaderUp
			}
			if err := n.pg.ConfigureStandby(ctx, up); err != nil {
				return err
			}
			return n.pg.Start(ctx)
		})
	case failover.ActionStartAsReplica:
		up, hasUp := n.optionalUpstream(c, d.Target)
		n.startAsync(ctx, d.Action, failover.StateStarting, func(ctx context.Context) error {
			if err := n.configureStandby(ctx, up, hasUp); err != nil {
				return err
			}
			return n.pg.Start(ctx)
		})
	case failover.ActionFollow:
		up, hasUp := n.optionalUpstream(c, d.Target)
		if err := n.configureStandby(ctx, up, hasUp); err != nil {
			n.log.Error("re-pointing the replica", "error", err)
		}
		n.setRole(dcs.RoleReplica)
	case failover.ActionAcquireLeader:
		lease, err := n.store.AcquireLeader(ctx)
		if err != nil {
			n.log.Info("could not take the leader key", "error", err)
			return
		}
		n.log.Info("acquired the leader key", "lease", lease.ID, "deadline", lease.Deadline())
		n.becomeLeader(lease)
		n.poke(n.wake)
	case failover.ActionPromote:
		if !n.prepareSyncPromote(ctx, d) {
			return
		}
		n.startAsync(ctx, d.Action, "", func(ctx context.Context) error { return n.promote(ctx, d) })
	case failover.ActionDemote:
		n.cancelAsync()
		n.demote(ctx, d, c)
	case failover.ActionRestartPrimary:
		n.startAsync(ctx, d.Action, failover.StateStarting, func(ctx context.Context) error {
			if err := n.pg.ConfigurePrimary(ctx); err != nil {
				return err
			}
			return n.pg.Start(ctx)
		})
	case failover.ActionReleaseLeader:
		if err := n.stopIfRunning(ctx, pg.StopImmediate); err != nil {
			n.log.Error("stopping postgres before releasing the leader key", "error", err)
			return
		}
		n.pgState = failover.StateStopped
		n.endLeadership("released")
		if err := n.store.ReleaseLeader(ctx, nil); err != nil {
			n.log.Warn("releasing the leader key", "error", err)
		}
		wasPrimary := n.role == dcs.RolePrimary
		n.setRole(dcs.RoleDemoted)
		if wasPrimary {
			// A primary that could not be started again gives up the key:
			// Patroni's post_recover reports it with on_role_change demoted.
			n.event(ActionOnRoleChange, dcs.RoleDemoted)
		}
	case failover.ActionRewind:
		up, err := upstreamOf(c, d.Target)
		if err != nil {
			n.result = &failover.Result{Action: d.Action, Err: err.Error()}
			return
		}
		n.startAsync(ctx, d.Action, failover.StateStopping, func(ctx context.Context) error {
			if err := n.stopIfRunning(ctx, pg.StopFast); err != nil {
				return fmt.Errorf("%w: %w", errNotStarted, err)
			}
			if _, err := n.pg.Rewind(ctx, up); err != nil {
				if errors.Is(err, pg.ErrRewindNotStarted) {
					return fmt.Errorf("%w: %w", errNotStarted, err)
				}
				return err
			}
			if err := n.pg.ConfigureStandby(ctx, up); err != nil {
				return err
			}
			return n.pg.Start(ctx)
		})
	case failover.ActionReinitialize:
		up, err := upstreamOf(c, d.Target)
		if err != nil {
			n.result = &failover.Result{Action: d.Action, Err: err.Error()}
			return
		}
		n.startAsync(ctx, d.Action, failover.StateCreatingReplica, func(ctx context.Context) error {
			if err := n.stopIfRunning(ctx, pg.StopImmediate); err != nil {
				return err
			}
			if err := n.removeDataDir(); err != nil {
				return err
			}
			if err := n.pg.Clone(ctx, up, nil); err != nil {
				return err
			}
			if err := n.pg.ConfigureStandby(ctx, up); err != nil {
				return err
			}
			return n.pg.Start(ctx)
		})
	case failover.ActionCrashRecovery:
		n.startAsync(ctx, d.Action, "", n.pg.CrashRecovery)
	case failover.ActionCancelAsync:
		n.cancelAsync()
	case failover.ActionRefuse:
		n.cancelAsync()
		if err := n.stopIfRunning(ctx, pg.StopFast); err != nil {
			n.log.Error("stopping postgres", "error", err)
		} else {
			n.pgState = failover.StateStopped
		}
		if n.isLeading() {
			n.endLeadership("refused")
			_ = n.store.ReleaseLeader(ctx, nil)
		}
		n.refused = fmt.Errorf("%w: %s", ErrRefused, d.Reason)
	}
}

func (n *Node) optionalUpstream(c *dcs.Cluster, target string) (pg.Upstream, bool) {
	if target == "" || c == nil {
		return pg.Upstream{}, false
	}
	up, err := upstreamOf(c, target)
	if err != nil {
		n.log.Warn("cannot follow", "target", target, "error", err)
		return pg.Upstream{}, false
	}
	return up, true
}

// configureStandby writes the standby settings; with no upstream the
// instance runs read-only without streaming.
func (n *Node) configureStandby(ctx context.Context, up pg.Upstream, hasUp bool) error {
	if !hasUp {
		up = pg.Upstream{} // a standby with no upstream: standby.signal and no conninfo
	}
	err := n.pg.ConfigureStandby(ctx, up)
	if err == nil {
		n.standbyUpstream.Store(&up)
	} else {
		n.standbyUpstream.Store(nil) // what is configured now is unknown
	}
	return err
}

// stopIfRunning stops Postgres if it runs, with before_stop, on_stop and
// the watchdog disabled (stopPostgres). It is called from async actions
// too, so it leaves the loop's state alone.
func (n *Node) stopIfRunning(ctx context.Context, mode pg.StopMode) error {
	return n.stopPostgres(ctx, mode, false)
}

// removeDataDir deletes the data directory before a re-clone.
func (n *Node) removeDataDir() error {
	dir := n.pg.Config().DataDir
	if dir == "" || dir == "/" {
		return fmt.Errorf("refusing to remove data directory %q", dir)
	}
	return os.RemoveAll(dir)
}

func (n *Node) setRole(role string) {
	if n.role == role {
		return
	}
	n.role = role
	n.cbRole.Store(role)
	if h := n.cfg.Hooks.OnRoleChange; h != nil {
		n.hook(func() { h(role) })
	}
}

// bootstrap races for /initialize and, if it wins, creates the cluster.
func (n *Node) bootstrap(ctx context.Context) error {
	if err := n.store.InitializeRace(ctx, ""); err != nil {
		if errors.Is(err, dcs.ErrConflict) {
			return nil // lost the race: the next round waits for the winner
		}
		return err
	}
	fail := func(err error) error {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.stopIfRunning(cctx, pg.StopImmediate)
		if cerr := n.store.CancelInitialize(cctx); cerr != nil {
			n.log.Error("removing /initialize after a failed bootstrap", "error", cerr)
		}
		return fmt.Errorf("bootstrap failed: %w", err)
	}
	if err := n.pg.Initdb(ctx, n.cfg.Bootstrap.Initdb); err != nil {
		return fail(err)
	}
	if err := n.pg.Start(ctx); err != nil {
		return fail(err)
	}
	if err := n.pg.EnsureRoles(ctx); err != nil {
		return fail(err)
	}
	if err := n.pg.Checkpoint(ctx); err != nil {
		return fail(err)
	}
	st, err := n.pg.Status(ctx)
	if err != nil {
		return fail(err)
	}
	if err := n.store.SetInitialize(ctx, strconv.FormatUint(st.SystemID, 10)); err != nil {
		return fail(err)
	}
	if _, err := n.store.SetConfig(ctx, n.initialConfig(), dcs.IfAbsent()); err != nil && !errors.Is(err, dcs.ErrConflict) {
		return fail(err)
	}
	lease, err := n.store.AcquireLeader(ctx)
	if err != nil {
		return fail(err)
	}
	n.becomeLeader(lease)
	return nil
}

// initialConfig is the /config a bootstrap writes.
func (n *Node) initialConfig() map[string]any {
	if d := n.cfg.bootstrapDCS(); d != nil {
		return d
	}
	return map[string]any{
		"ttl": int64(n.dyn.TTL / time.Second), "loop_wait": int64(n.dyn.LoopWait / time.Second),
		"retry_timeout": int64(n.dyn.RetryTimeout / time.Second), "maximum_lag_on_failover": n.dyn.MaximumLagOnFailover,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": true},
	}
}

// promote turns the replica holding the leader key into the primary.
func (n *Node) promote(ctx context.Context, d failover.Decision) error {
	if !n.isLeading() {
		return errors.New("lost the leader key before promoting")
	}
	// The watchdog is armed before anything else (required and unusable:
	// no promotion), then the BeforePromote hook and pre_promote may veto.
	if err := n.armWatchdog(); err != nil {
		return err
	}
	if err := n.prePromote(ctx); err != nil {
		return err
	}
	if !n.isLeading() {
		return errors.New("lost the leader key before promoting")
	}
	n.mu.Lock()
	lctx, cancel := context.WithCancel(context.Background())
	n.leaderCancel = cancel
	n.mu.Unlock()
	if err := n.pg.Promote(ctx); err != nil {
		return err
	}
	if err := n.pg.ConfigurePrimary(ctx); err != nil {
		n.log.Warn("removing the standby settings after promote", "error", err)
	}
	// Rewinds against this node need a checkpoint on the new timeline.
	if err := n.pg.Checkpoint(ctx); err != nil {
		n.log.Warn("checkpoint after promote", "error", err)
	}
	n.historyDue.Store(true)
	n.event(ActionOnRoleChange, dcs.RolePrimary)
	if h := n.cfg.Hooks.OnStartedLeading; h != nil {
		n.wg.Go(func() { h(lctx) })
	}
	return nil
}

// leaderRoutine is the healthy leader's work each round: /status, /history
// after a promotion, the leadership context for hooks.
func (n *Node) leaderRoutine(ctx context.Context, l failover.Local) {
	if !l.Running || l.InRecovery {
		return
	}
	n.mu.Lock()
	needCtx := n.leaderCancel == nil && n.leading
	var lctx context.Context
	if needCtx {
		var cancel context.CancelFunc
		lctx, cancel = context.WithCancel(context.Background())
		n.leaderCancel = cancel
	}
	n.mu.Unlock()
	if needCtx {
		if h := n.cfg.Hooks.OnStartedLeading; h != nil {
			n.wg.Go(func() { h(lctx) })
		}
	}
	n.setRole(dcs.RolePrimary)
	if st, key := n.slotStatus(l.FlushLSN); key != n.lastStatus {
		if err := n.store.SetStatus(ctx, st); err == nil {
			n.lastStatus = key
		} else if errors.Is(err, dcs.ErrNotLeader) {
			n.fenceNow("the leader key is no longer mine")
		}
	}
	if n.historyDue.Load() {
		if err := n.writeHistory(ctx, l); err != nil {
			n.log.Warn("writing /history", "error", err)
		} else {
			n.historyDue.Store(false)
		}
	}
}

func (n *Node) clearFailover(ctx context.Context, rev int64) {
	if _, err := n.store.SetFailover(ctx, dcs.Failover{}, dcs.IfRevision(rev)); err != nil {
		n.log.Warn("clearing /failover", "error", err)
	}
}

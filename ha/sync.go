package ha

import (
	"context"
	"errors"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/replication"
)

// SyncPostgres is what synchronous mode needs from the instance, beyond
// [Postgres]. *pg.Instance implements it. A Postgres without it cannot run
// synchronous mode: the node then logs an error each cycle and, when it
// wins a race, writes /sync without setting synchronous_standby_names.
type SyncPostgres interface {
	// SyncStatus reads a primary's synchronous_standby_names, flush
	// position and WAL senders.
	SyncStatus(ctx context.Context) (pg.SyncState, error)
	// SetSynchronousStandbyNames sets synchronous_standby_names and waits
	// until the server uses it.
	SetSynchronousStandbyNames(ctx context.Context, value string) error
	// ClearSynchronousStandbyNames hands synchronous_standby_names back to
	// the configured value.
	ClearSynchronousStandbyNames(ctx context.Context) error
}

var _ SyncPostgres = (*pg.Instance)(nil)

// syncLoop is the leader's synchronous-mode state.
type syncLoop struct {
	// notManaged is true once synchronous_standby_names is known to be
	// left to the configuration; at start it is assumed managed, so a
	// value left from an earlier run in synchronous mode is cleared.
	notManaged bool
	// confirmLSN is the primary's flush position once the last change of
	// synchronous_standby_names settled (0: take the current one).
	confirmLSN int64
	warned     bool
	// leaving: this replica is shutting down and publishes nosync so the
	// primary takes it out of /sync before its Postgres stops.
	leaving bool
}

// syncSettle is how long a change of synchronous_standby_names is given to
// reach every WAL sender and the checkpointer after the server shows it,
// before the flush position that new synchronous standbys must reach is
// taken. Commits acknowledged under the old value are at or below it.
const syncSettle = 500 * time.Millisecond

// syncWaitMax bounds how long one cycle waits for picked standbys to
// become synchronous (Patroni waits 2 s).
const syncWaitMax = 2 * time.Second

// processSync keeps synchronous_standby_names and /sync in step on the
// leader, one safe step at a time (replication.NextSyncStep), up to a few
// steps per cycle. Every /sync write is conditional on the revision read;
// a conflict ends the round.
func (n *Node) processSync(ctx context.Context, c *dcs.Cluster) {
	mode := n.dyn.SynchronousMode
	on := mode != "" && mode != dcs.SyncOff
	sp, ok := n.pg.(SyncPostgres)
	if !ok {
		if on && !n.syncRep.warned {
			n.log.Error("synchronous_mode is on but this Postgres implementation cannot manage synchronous_standby_names (it does not implement ha.SyncPostgres)")
			n.syncRep.warned = true
		}
		return
	}
	if !on && n.syncRep.notManaged && (c == nil || c.Sync == nil) {
		return // nothing to undo: no query on the leader's every cycle
	}
	var sync *dcs.SyncState
	if c != nil && c.Sync != nil {
		s := *c.Sync
		sync = &s
	}
	syncCommit := n.pg.Config().Parameters["synchronous_commit"]
	waitUntil := time.Time{}
	for range 8 {
		if ctx.Err() != nil {
			return
		}
		st, err := sp.SyncStatus(ctx)
		if err != nil {
			n.log.Warn("reading the synchronous replication state", "error", err)
			return
		}
		names, err := replication.ParseNames(st.Names)
		if err != nil {
			n.log.Warn("synchronous_standby_names in force cannot be parsed; it will be replaced", "error", err)
			names = replication.Names{}
		}
		if n.syncRep.confirmLSN == 0 {
			n.syncRep.confirmLSN = int64(st.FlushLSN)
		}
		in := replication.SyncInput{
			Leader: n.cfg.Name, Mode: mode, Strict: n.dyn.SynchronousModeStrict, NodeCount: n.dyn.SynchronousNodeCount,
			MaxLag: n.dyn.MaximumLagOnSyncNode, Sync: sync, Names: names, Managed: !n.syncRep.notManaged,
			Candidates: replication.Candidates(c, n.cfg.Name, st.Standbys, syncCommit),
			PrimaryLSN: int64(st.FlushLSN), ConfirmLSN: n.syncRep.confirmLSN,
		}
		step := replication.NextSyncStep(in)
		if step.Kind != replication.StepNone && step.Kind != replication.StepWait {
			n.log.Info(step.Reason, "step", step.Kind.String())
		}
		switch step.Kind {
		case replication.StepNone:
			return
		case replication.StepWait:
			now := n.clock.Now()
			if waitUntil.IsZero() {
				waitUntil = now.Add(syncWaitMax)
			}
			if !now.Before(waitUntil) {
				n.log.Debug(step.Reason)
				return
			}
			n.sleep(ctx, 250*time.Millisecond)
		case replication.StepWriteSync:
			rev, err := n.store.SetSync(ctx, step.Sync, syncCond(sync))
			if err != nil {
				n.logSyncWrite(err)
				return
			}
			s := step.Sync
			s.ModRevision = rev
			sync = &s
		case replication.StepDeleteSync:
			if err := n.store.DeleteSync(ctx, syncCond(sync)); err != nil {
				n.logSyncWrite(err)
				return
			}
			sync = nil
		case replication.StepSetNames:
			sctx, cancel := n.syncCtx(ctx)
			err := sp.SetSynchronousStandbyNames(sctx, step.Names.String())
			cancel()
			if err != nil {
				n.log.Error("setting synchronous_standby_names", "error", err)
				return
			}
			n.syncRep.notManaged = false
			n.sleep(ctx, syncSettle)
			st, err := sp.SyncStatus(ctx)
			if err != nil {
				n.syncRep.confirmLSN = 0 // taken again, later, which is safe
				n.log.Warn("reading the flush position after changing synchronous_standby_names", "error", err)
				return
			}
			n.syncRep.confirmLSN = int64(st.FlushLSN)
		case replication.StepClearNames:
			sctx, cancel := n.syncCtx(ctx)
			err := sp.ClearSynchronousStandbyNames(sctx)
			cancel()
			if err != nil {
				n.log.Error("clearing synchronous_standby_names", "error", err)
				return
			}
			n.syncRep.notManaged = true
		}
	}
}

// syncCond is the condition of a /sync write after reading s.
func syncCond(s *dcs.SyncState) dcs.Precondition {
	if s == nil {
		return dcs.IfAbsent()
	}
	return dcs.IfRevision(s.ModRevision)
}

func (n *Node) logSyncWrite(err error) {
	switch {
	case errors.Is(err, dcs.ErrConflict):
		n.log.Info("synchronous replication key updated by someone else; trying again next cycle")
	case errors.Is(err, dcs.ErrNotLeader):
		n.fenceNow("the leader key is no longer mine")
	default:
		n.log.Warn("writing /sync", "error", err)
	}
}

// prepareSyncPromote runs before a promotion: in synchronous mode it sets
// synchronous_standby_names for the new primary and writes /sync naming
// this node, conditional on the revision the decision saw; when either
// fails the promotion is postponed (false) and decided again. Outside
// synchronous mode it hands synchronous_standby_names back to the
// configuration, so a value left from an earlier tenure cannot make the new
// primary's commits wait.
func (n *Node) prepareSyncPromote(ctx context.Context, d failover.Decision) bool {
	sp, hasSP := n.pg.(SyncPostgres)
	if d.Sync == nil {
		if hasSP && !n.syncRep.notManaged {
			sctx, cancel := n.syncCtx(ctx)
			err := sp.ClearSynchronousStandbyNames(sctx)
			cancel()
			if err != nil {
				n.log.Warn("clearing synchronous_standby_names before promoting", "error", err)
			} else {
				n.syncRep.notManaged = true
			}
		}
		return true
	}
	if hasSP {
		sctx, cancel := n.syncCtx(ctx)
		err := sp.SetSynchronousStandbyNames(sctx, d.SyncNames)
		cancel()
		if err != nil {
			n.log.Error("postponing promotion: setting synchronous_standby_names", "error", err)
			return false
		}
		n.syncRep.notManaged = false
	}
	cond := dcs.IfAbsent()
	if d.SyncRevision != 0 {
		cond = dcs.IfRevision(d.SyncRevision)
	}
	if _, err := n.store.SetSync(ctx, *d.Sync, cond); err != nil {
		n.log.Warn("postponing promotion: writing /sync failed", "error", err)
		switch {
		case errors.Is(err, dcs.ErrNotLeader):
			n.fenceNow("the leader key is no longer mine")
		case errors.Is(err, dcs.ErrConflict):
			n.poke(n.wake) // decide again on the new /sync at once
		}
		return false
	}
	n.syncRep.confirmLSN = 0
	return true
}

// syncCtx bounds one change of synchronous_standby_names: a value the
// server rejects is never shown, and the wait must end.
func (n *Node) syncCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(n.dyn.RetryTimeout, 5*time.Second))
}

// leaveSyncDuty is what a synchronous standby does before it stops
// (SPEC.md 8.3): it publishes the tags nosync and sync_priority 0 and waits
// up to 2*loop_wait until the primary has taken it out of /sync, so the
// primary's commits do not stall on a standby that is going away (in
// strict mode they then wait for another standby, or block). It proceeds
// anyway when the DCS fails or the time is up.
func (n *Node) leaveSyncDuty(ctx context.Context) {
	mode := n.dyn.SynchronousMode
	c := n.lastCluster
	if mode == "" || mode == dcs.SyncOff || c == nil || !c.Sync.IsStandby(n.cfg.Name) {
		return
	}
	n.syncRep.leaving = true
	n.publishMember(ctx)
	n.log.Info("leaving synchronous standby duty before stopping")
	deadline := n.clock.Now().Add(2 * n.dyn.LoopWait)
	for n.clock.Now().Before(deadline) && ctx.Err() == nil {
		cl, err := n.store.Cluster(ctx)
		if err != nil {
			n.log.Warn("leaving synchronous standby duty: the DCS failed; stopping anyway", "error", err)
			return
		}
		if !cl.Sync.IsStandby(n.cfg.Name) {
			n.log.Info("no longer a synchronous standby")
			return
		}
		n.sleep(ctx, 250*time.Millisecond)
	}
	n.log.Warn("still listed in /sync after 2*loop_wait; stopping anyway")
}

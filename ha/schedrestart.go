package ha

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// Scheduled restarts (POST /restart with "schedule", SPEC.md 4.7): the
// request is kept by the node, published in its member key as
// scheduled_restart, and carried out by the loop when it falls due, if its
// conditions (role, postgres_version, restart_pending) still hold then. A
// restart of Postgres that happened in between (a new postmaster start
// time) cancels it. DELETE /restart removes it.

// ErrRestartScheduled is returned when a restart is already scheduled.
var ErrRestartScheduled = errors.New("another restart is already scheduled")

// scheduledRestart is a pending scheduled restart.
type scheduledRestart struct {
	at              time.Time
	filters         map[string]any // role, postgres_version, restart_pending, timeout as requested
	postmasterStart time.Time      // of the Postgres running when it was scheduled
}

// ScheduleRestart schedules a restart of Postgres at at, subject to the
// conditions in filters (the POST /restart body's role, postgres_version,
// restart_pending and timeout). It fails with ErrRestartScheduled if one is
// already scheduled.
func (n *Node) ScheduleRestart(at time.Time, filters map[string]any) error {
	n.schedMu.Lock()
	defer n.schedMu.Unlock()
	if n.sched != nil {
		return ErrRestartScheduled
	}
	n.sched = &scheduledRestart{at: at, filters: maps.Clone(filters), postmasterStart: n.Status().PostmasterStartTime}
	n.poke(n.wake)
	return nil
}

// CancelScheduledRestart removes the scheduled restart, reporting whether
// there was one.
func (n *Node) CancelScheduledRestart() bool {
	n.schedMu.Lock()
	defer n.schedMu.Unlock()
	had := n.sched != nil
	n.sched = nil
	if had {
		n.poke(n.wake)
	}
	return had
}

// scheduledRestartData is the member key's scheduled_restart value, nil
// when none is scheduled.
func (n *Node) scheduledRestartData() map[string]any {
	n.schedMu.Lock()
	defer n.schedMu.Unlock()
	if n.sched == nil {
		return nil
	}
	m := maps.Clone(n.sched.filters)
	if m == nil {
		m = map[string]any{}
	}
	m["schedule"] = dcs.FormatTime(n.sched.at)
	if !n.sched.postmasterStart.IsZero() {
		m["postmaster_start_time"] = n.sched.postmasterStart.Format(pgTimeLayout)
	}
	return m
}

// evaluateScheduledRestart carries out the scheduled restart once it is
// due (on the loop goroutine). It returns when the next look is due.
func (n *Node) evaluateScheduledRestart(ctx context.Context) time.Time {
	n.schedMu.Lock()
	s := n.sched
	n.schedMu.Unlock()
	if s == nil {
		return time.Time{}
	}
	now := n.clock.Now()
	if now.Before(s.at) {
		return s.at
	}
	if n.async != failover.ActionNone || n.dyn.Pause {
		return now.Add(time.Second)
	}
	n.schedMu.Lock()
	if n.sched != s {
		n.schedMu.Unlock()
		return time.Time{}
	}
	n.sched = nil
	n.schedMu.Unlock()
	st := n.liveStatus()
	if !s.postmasterStart.IsZero() && !st.PostmasterStartTime.Equal(s.postmasterStart) {
		n.log.Warn("cancelling the scheduled restart: Postgres was restarted since it was scheduled", "scheduled_at", s.at)
		return time.Time{}
	}
	if why := restartConditionsFail(st, s.filters); why != "" {
		n.log.Warn("scheduled restart skipped: restart conditions are not satisfied", "why", why, "scheduled_at", s.at)
		return time.Time{}
	}
	n.log.Info("carrying out the scheduled restart", "scheduled_at", s.at)
	op := opRequest{kind: "restart", done: make(chan error, 1)}
	n.runOp(ctx, op)
	select {
	case err := <-op.done: // refused at once
		if err != nil {
			n.log.Error("scheduled restart", "error", err)
		}
	default: // running asynchronously
	}
	return time.Time{}
}

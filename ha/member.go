package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
)

// memberData is the member key this node publishes (SPEC.md 1.3).
func (n *Node) memberData() dcs.MemberData {
	d := dcs.MemberData{
		ConnURL: n.pg.ConnURL(),
		APIURL:  n.cfg.APIURL,
		State:   n.pgState,
		Role:    n.role,
		Version: Version,
		Tags:    n.cfg.Tags,
		Pause:   n.dyn.Pause,
	}
	d.ScheduledRestart = n.scheduledRestartData()
	if n.syncRep.leaving {
		d.Tags = maps.Clone(d.Tags)
		if d.Tags == nil {
			d.Tags = dcs.Tags{}
		}
		d.Tags["nosync"], d.Tags["sync_priority"] = true, 0
	}
	if d.Role == "" {
		d.Role = dcs.RoleUninitialized
	}
	st := n.observed
	if st.Running && st.Role != "" && (n.async == failover.ActionNone || n.async == failover.ActionPromote) {
		if st.Role == pg.RolePrimary {
			pos := int64(st.FlushLSN)
			d.XLogLocation = &pos
		} else {
			recv, replay := int64(st.ReceiveLSN), int64(st.ReplayLSN)
			if st.WALReceiver != nil {
				recv = max(recv, int64(st.WALReceiver.FlushedLSN))
			}
			pos := max(recv, replay)
			d.XLogLocation, d.ReceiveLSN, d.ReplayLSN = &pos, &recv, &replay
			if st.WALReceiver != nil && st.WALReceiver.Status == "streaming" {
				d.ReplicationState = "streaming"
			} else {
				d.ReplicationState = "in archive recovery"
			}
		}
		d.Timeline = int64(st.Timeline)
	}
	return d
}

// publishMember writes the member key when its content changed.
func (n *Node) publishMember(ctx context.Context) {
	d := n.memberData()
	b, err := dcs.EncodeMember(d)
	if err != nil {
		n.log.Error("encoding the member key", "error", err)
		return
	}
	if bytes.Equal(b, n.lastMember) {
		if c := n.lastCluster; c != nil {
			if _, ok := c.Member(n.cfg.Name); ok {
				return
			}
		}
	}
	if err := n.store.PutMember(ctx, d); err != nil {
		n.log.Warn("publishing the member key", "error", err)
		return
	}
	n.lastMember = b
}

// publishStatus stores a new Status snapshot; edit may adjust it.
func (n *Node) publishStatus(edit ...func(*Status)) {
	n.mu.Lock()
	leading := n.leading && n.clock.Now().Before(n.leadUntilLocked().Add(-n.tm.margin))
	deadline := n.deadline
	n.mu.Unlock()
	st := n.observed
	s := &Status{
		Name: n.cfg.Name, Scope: n.cfg.Scope, Version: Version,
		Role: n.role, State: n.pgState, IsLeader: leading, LeaseDeadline: deadline,
		ServerVersion: n.pg.Version() * 10000,
		Tags:          n.cfg.Tags, DCSLastSeen: n.dcsLastSeen, PendingRestart: st.PendingRestart,
		TTL: n.dyn.TTL, MaximumLagOnFailover: n.dyn.MaximumLagOnFailover, Paused: n.dyn.Pause,
		FailsafeMode: n.dyn.FailsafeMode,
		Taken:        n.clock.Now(),
	}
	if s.Role == "" {
		s.Role = dcs.RoleUninitialized
	}
	if s.State == "" {
		s.State = failover.StateStopped
	}
	s.applyPostgres(st)
	if c := n.lastCluster; c != nil {
		s.LeaderName = c.LeaderName()
		s.ClusterUnlocked = !c.IsLocked()
		s.LeaderOptime = max(s.LeaderOptime, c.Status.Optime)
		if m := n.dyn.SynchronousMode; m != "" && m != dcs.SyncOff {
			s.SyncStandby = c.Sync.IsStandby(n.cfg.Name)
		}
	} else {
		s.ClusterUnlocked = true
	}
	s.WatchdogFailed = n.watchdogFailed()
	if sr := n.scheduledRestartData(); sr != nil {
		delete(sr, "postmaster_start_time")
		s.ScheduledRestart = sr
	}
	if s.FailsafeMode {
		_, following := n.failsafeLeader()
		s.FailsafeActive = n.inFailsafe() || following
	}
	for _, e := range edit {
		e(s)
	}
	n.status.Store(s)
}

// demote steps down from primary in the decision's mode (SPEC 3.11).
func (n *Node) demote(ctx context.Context, d failover.Decision, c *dcs.Cluster) {
	mode := d.DemoteMode
	n.log.Warn("demoting", "mode", mode.String(), "reason", d.Reason)
	switch mode {
	case failover.DemoteGraceful:
		n.demoteGraceful(ctx, d, c)
		return
	case failover.DemoteOffline:
		// The key cannot be released (no DCS); stop fast and come back
		// read-only with no upstream.
		n.endLeadership("demote offline")
		if err := n.stopIfRunning(ctx, pg.StopFast); err != nil {
			n.log.Error("demote: stop failed", "error", err)
			return
		}
		n.pgState = failover.StateStopped
	case failover.DemoteImmediate, failover.DemoteImmediateNoLock:
		if err := n.stopIfRunning(ctx, pg.StopImmediate); err != nil {
			n.log.Error("demote: stop failed", "error", err)
			return
		}
		n.pgState = failover.StateStopped
		n.endLeadership("demote " + mode.String())
		if mode == failover.DemoteImmediate {
			if err := n.store.ReleaseLeader(ctx, nil); err != nil && !errors.Is(err, dcs.ErrNotLeader) {
				n.log.Warn("demote: releasing the leader key", "error", err)
			}
		}
	}
	n.setRole(dcs.RoleDemoted)
	up, hasUp := n.optionalUpstream(c, d.Target)
	if mode == failover.DemoteImmediate || mode == failover.DemoteOffline {
		hasUp = false
	}
	n.startAsync(ctx, failover.ActionDemote, failover.StateStarting, func(ctx context.Context) error {
		if err := n.configureStandby(ctx, up, hasUp); err != nil {
			return err
		}
		return n.pg.Start(ctx)
	})
}

// demoteGraceful is the switchover: checkpoint, stop fast, wait until the
// candidate has the shutdown checkpoint, release the key with the final LSN
// in /status, and follow the candidate. When the Postgres can tell (see
// stopForSwitchover), the key is released as soon as the shutdown
// checkpoint is written, while the postmaster still finishes its exit.
func (n *Node) demoteGraceful(ctx context.Context, d failover.Decision, c *dcs.Cluster) {
	if err := n.pg.Checkpoint(ctx); err != nil {
		n.log.Warn("switchover: checkpoint failed", "error", err)
	}
	stopped, final, err := n.stopForSwitchover(ctx)
	if err != nil {
		n.log.Error("switchover: stop failed; staying primary", "error", err)
		return
	}
	n.pgState = failover.StateStopped
	n.endLeadership("switchover")
	// Wait (bounded) until a candidate received the shutdown checkpoint, so
	// it can win the race with no lag and nothing is lost.
	deadline := n.clock.Now().Add(max(n.dyn.LoopWait, 5*time.Second))
	for final > 0 && n.clock.Now().Before(deadline) && ctx.Err() == nil {
		if n.candidateCaughtUp(ctx, c, d.Target, final) {
			break
		}
		n.sleep(ctx, 20*time.Millisecond)
	}
	if err := n.store.ReleaseLeader(ctx, n.releaseStatus(final)); err != nil && !errors.Is(err, dcs.ErrNotLeader) {
		n.log.Warn("switchover: releasing the leader key", "error", err)
	}
	n.setRole(dcs.RoleDemoted)
	up, hasUp := n.optionalUpstream(c, d.Target)
	n.startAsync(ctx, failover.ActionDemote, failover.StateStarting, func(ctx context.Context) error {
		if err := <-stopped; err != nil {
			return fmt.Errorf("switchover: stopping the old primary: %w", err)
		}
		if err := n.configureStandby(ctx, up, hasUp); err != nil {
			return err
		}
		return n.pg.Start(ctx)
	})
}

// shutdownProber is a Postgres that tells, while a stop is under way,
// whether the shutdown checkpoint is written (*pg.Instance does).
type shutdownProber interface {
	ShutdownCheckpoint() (pg.LSN, bool, error)
}

// stopForSwitchover stops Postgres (fast) for a switchover and returns the
// location of its shutdown checkpoint, and a channel that yields the stop's
// result once the postmaster has exited. It returns when the stop has
// finished, or earlier, as soon as the shutdown checkpoint is written: the
// server then accepts no connection and has written its last WAL record,
// and what remains (WAL senders waiting for their standbys to confirm it,
// the postmaster's exit) takes as long again on a busy machine, time the
// candidate can spend promoting. The watchdog is disabled then: this
// Postgres can no longer write.
func (n *Node) stopForSwitchover(ctx context.Context) (<-chan error, int64, error) {
	done := make(chan error, 1)
	sp, ok := n.pg.(shutdownProber)
	if !ok {
		if err := n.stopIfRunning(ctx, pg.StopFast); err != nil {
			return nil, 0, err
		}
		done <- nil
		return done, n.stoppedCheckpoint(ctx), nil
	}
	go func() { done <- n.stopIfRunning(ctx, pg.StopFast) }()
	for {
		tick := n.clock.NewTimer(10 * time.Millisecond)
		select {
		case err := <-done:
			tick.Stop()
			if err != nil {
				return nil, 0, err
			}
			done <- nil
			return done, n.stoppedCheckpoint(ctx), nil
		case <-tick.C():
			if lsn, written, err := sp.ShutdownCheckpoint(); err == nil && written {
				_ = n.wd.Disable()
				n.log.Info("switchover: shutdown checkpoint written; the postmaster is finishing its exit", "lsn", lsn.String())
				return done, int64(lsn), nil
			}
		}
	}
}

// stoppedCheckpoint is the last checkpoint of a stopped Postgres (0 when
// unknown).
func (n *Node) stoppedCheckpoint(ctx context.Context) int64 {
	if st, err := n.pg.Status(ctx); err == nil && st.Control != nil {
		return int64(st.Control.CheckpointLSN)
	}
	return 0
}

// candidateCaughtUp probes the candidate (or every member when target is
// "") and reports whether one has received WAL past lsn.
func (n *Node) candidateCaughtUp(ctx context.Context, c *dcs.Cluster, target string, lsn int64) bool {
	if c == nil {
		return false
	}
	var targets []failover.ProbeTarget
	for _, m := range c.Members {
		if m.Name == n.cfg.Name || (target != "" && m.Name != target) || m.Data.Tags.NoFailover() {
			continue
		}
		targets = append(targets, failover.ProbeTarget{Name: m.Name, APIURL: m.Data.APIURL})
	}
	for _, p := range probePeers(ctx, n.http, targets, n.cfg.ProbeTimeout) {
		if p.Reachable && p.InRecovery && p.ReceivedLocation > lsn {
			return true
		}
	}
	return false
}

// writeHistory records the timeline switches that led to the current
// timeline in /history, read from the new timeline's history file; lines
// already in /history keep their timestamps and leaders, the newest gets
// now and this node's name.
func (n *Node) writeHistory(ctx context.Context, l failover.Local) error {
	if l.Timeline <= 1 {
		return nil
	}
	switches, err := n.pg.TimelineHistory(ctx, int(l.Timeline))
	if err != nil {
		return err
	}
	known := map[int64]dcs.HistoryLine{}
	if c := n.lastCluster; c != nil && c.History != nil {
		for _, h := range c.History.Lines {
			known[h.Timeline] = h
		}
	}
	lines := make([]dcs.HistoryLine, 0, len(switches))
	for i, sw := range switches {
		line := dcs.HistoryLine{Timeline: int64(sw.Timeline), LSN: int64(sw.LSN), Reason: sw.Reason}
		if k, ok := known[line.Timeline]; ok && k.LSN == line.LSN {
			line = k
		} else if i == len(switches)-1 {
			line.Timestamp, line.NewLeader = dcs.FormatTime(n.clock.Now()), n.cfg.Name
		}
		lines = append(lines, line)
	}
	if k := n.dyn.MaxTimelinesHistory; k > 0 && len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return n.store.SetHistory(ctx, lines)
}

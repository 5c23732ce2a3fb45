package ha

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
)

// loop runs a cycle on every wake-up (DCS change, Postgres exit, async action
// done, fence) and at least every loop_wait, until ctx ends or the node
// refuses to act.
func (n *Node) loop(ctx context.Context) error {
	// The first renewal gives the node its lease before it decides anything.
	for ctx.Err() == nil {
		if l, err := n.store.KeepAlive(ctx, n.tm.ttl); err == nil {
			n.leaseRenewed(l, false)
			break
		} else {
			n.log.Warn("waiting for the DCS", "error", err)
		}
		n.sleep(ctx, time.Second)
	}
	if err := n.checkUniqueName(ctx); err != nil {
		n.refused = err
		return err
	}
	var wakeAt time.Time
	for ctx.Err() == nil {
		wakeAt = n.cycle(ctx)
		if n.refused != nil {
			return n.refused
		}
		wait := n.dyn.LoopWait
		if !wakeAt.IsZero() {
			if d := wakeAt.Sub(n.clock.Now()); d < wait {
				wait = max(d, 0)
			}
		}
		t := n.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-n.wake:
		case <-t.C():
		case r := <-n.asyncDone:
			n.finishAsync(r)
		case op := <-n.ops:
			n.runOp(ctx, op)
		}
		t.Stop()
	}
	return nil
}

// cycle is one observe-decide-execute round. It returns when the next round
// is due at the latest (zero: loop_wait).
func (n *Node) cycle(ctx context.Context) time.Time {
	select {
	case r := <-n.asyncDone:
		n.finishAsync(r)
	default:
	}
	cluster, err := n.store.Cluster(ctx)
	reachable := err == nil && n.dcsReachable()
	if err == nil {
		n.lastCluster = cluster
		n.lastSnap.Store(cluster)
		n.dcsLastSeen = n.clock.Now()
		if cluster.Config != nil && len(cluster.Config.Data) > 0 {
			n.setDynamic(cluster.Config.Dynamic())
		}
	} else {
		cluster = n.lastCluster
	}
	if reachable {
		n.releaseIfFenced(ctx, cluster)
	}
	cluster = n.withFailsafeLeader(cluster)
	local := n.observe(ctx, cluster)
	if n.dyn.FailsafeMode && local.Running && !local.InRecovery {
		// The lease keeper asks the members when renewals fail.
		local.FailsafeConfirmed = n.inFailsafe()
	}
	in := failover.Input{Cluster: cluster, DCSReachable: reachable, Config: n.dyn, Local: local, Now: n.clock.Now()}
	var d failover.Decision
	for range 4 {
		d = failover.Decide(in)
		switch d.Action {
		case failover.ActionProbePeers:
			in.Peers = probePeers(ctx, n.http, d.Probe, n.cfg.ProbeTimeout)
			if in.Peers == nil {
				in.Peers = []failover.Peer{}
			}
			continue
		case failover.ActionCheckDivergence:
			in.Local.Divergence = n.checkDivergence(ctx, cluster, in.Local, d.Target)
			continue
		}
		break
	}
	n.mem = d.Memory
	n.result = nil
	if d.Action != failover.ActionNone || d.Blocked != "" {
		n.log.Info(d.Reason, logAction, d.Action.String(), "target", d.Target)
	} else {
		n.log.Debug(d.Reason)
	}
	if h := n.cfg.Hooks.OnDecision; h != nil {
		line := d.String()
		n.hook(func() { h(line) })
	}
	n.prepareSlots() // before execute: primary_slot_name is set before a replica starts
	n.execute(ctx, d, cluster, in.Local)
	n.syncSlots(ctx, cluster, d)
	n.afterCycle(in.Local)
	n.publishMember(ctx)
	n.publishStatus(func(s *Status) { s.LastDecision, s.Blocked = d.String(), string(d.Blocked) })
	wake := d.WakeAt
	if d.Action == failover.ActionRefreshLeader || d.Action == failover.ActionNone {
		if at := n.evaluateScheduledRestart(ctx); !at.IsZero() && (wake.IsZero() || at.Before(wake)) {
			wake = at
		}
	}
	return wake
}

func (n *Node) setDynamic(d dcs.DynamicConfig) {
	n.mu.Lock()
	n.tm.retry = d.RetryTimeout
	n.mu.Unlock()
	if d.TTL != n.dyn.TTL {
		if tm, err := n.cfg.timingFor(d.TTL); err != nil {
			n.log.Error("ignoring the new ttl", "error", err)
			d.TTL = n.dyn.TTL
		} else {
			tm.retry = d.RetryTimeout
			n.mu.Lock()
			n.tm = tm
			n.mu.Unlock()
			n.poke(n.renewCh)
		}
	}
	n.dyn = d
	n.failsafeMode.Store(d.FailsafeMode)
	pub := d
	n.dynPub.Store(&pub)
}

// observe builds the decision's view of this node.
func (n *Node) observe(ctx context.Context, c *dcs.Cluster) failover.Local {
	n.mu.Lock()
	l := failover.Local{
		Name:        n.cfg.Name,
		LeaseID:     n.lease.ID,
		LeaderValid: n.leading && n.clock.Now().Before(n.leadUntilLocked().Add(-n.tm.margin)),
	}
	n.mu.Unlock()
	l.Tags = n.cfg.Tags
	l.BootstrapAllowed = n.cfg.Bootstrap != nil
	l.RemoveDataOnDivergence = n.cfg.RemoveDataOnDivergence
	l.RemoveDataOnRewindFailure = n.cfg.RemoveDataOnRewindFailure
	l.WatchdogFailed = n.watchdogFailed()
	l.Async, l.Result, l.Memory = n.async, n.result, n.mem
	l.Role = n.role
	l.DataDirEmpty = !n.pg.Initialized()

	sctx, cancel := context.WithTimeout(ctx, max(n.dyn.RetryTimeout, time.Second))
	st, err := n.pg.Status(sctx)
	cancel()
	if err != nil {
		n.log.Warn("observing postgres", "error", err)
	}
	l.Running = st.Running && st.Role != ""
	if st.SystemID != 0 {
		l.SysID = strconv.FormatUint(st.SystemID, 10)
	}
	switch {
	case l.Running:
		l.InRecovery = st.Role != pg.RolePrimary
		l.Timeline = int64(st.Timeline)
		l.FlushLSN = int64(st.FlushLSN)
		l.ReceiveLSN, l.ReplayLSN = int64(st.ReceiveLSN), int64(st.ReplayLSN)
		if st.WALReceiver != nil {
			l.ReceiveLSN = max(l.ReceiveLSN, int64(st.WALReceiver.FlushedLSN))
			l.Upstream = n.memberAt(c, st.WALReceiver.SenderHost, st.WALReceiver.SenderPort)
		} else if up := n.standbyUpstream.Load(); up != nil && l.InRecovery && up.Host != "" {
			l.Upstream = n.memberAt(c, up.Host, up.Port)
		}
		if n.async == failover.ActionNone {
			n.pgState, n.crashed = failover.StateRunning, false
		}
	case st.Running:
		if n.async == failover.ActionNone {
			n.pgState = failover.StateStarting
		}
	case n.async != failover.ActionNone:
		// The action in progress owns the state it set.
	default:
		if n.pgState == failover.StateRunning || n.pgState == failover.StateStarting {
			n.pgState, n.crashed = failover.StateCrashed, true
		} else if n.pgState == "" {
			n.pgState = failover.StateStopped
		}
	}
	if st.Control != nil {
		l.ControlState = st.Control.State
		if l.Timeline == 0 {
			l.Timeline = int64(st.Control.Timeline)
		}
		if st.Control.SystemID != 0 {
			l.SysID = strconv.FormatUint(st.Control.SystemID, 10)
		}
	}
	// pg_rewind needs data checksums or wal_log_hints, known from the
	// running server as well as from pg_controldata.
	l.CanRewind = n.dyn.UsePgRewind && st.RewindPossible
	l.State = n.pgState
	if l.Running {
		if l.InRecovery {
			n.setRole(dcs.RoleReplica)
		} else {
			n.setRole(dcs.RolePrimary)
		}
	} else if l.DataDirEmpty {
		n.setRole(dcs.RoleUninitialized)
	}
	l.Role = n.role
	l.StandbySignal = fileExists(n.pg.Config().DataDir, "standby.signal")
	l.BackupLabel = fileExists(n.pg.Config().DataDir, "backup_label")
	n.observed = st
	return l
}

func fileExists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// memberAt finds the member whose conn_url points at host:port.
func (n *Node) memberAt(c *dcs.Cluster, host string, port int) string {
	if c == nil {
		return ""
	}
	for _, m := range c.Members {
		h, p, err := connHostPort(m.Data.ConnURL)
		if err == nil && h == host && p == port {
			return m.Name
		}
	}
	return ""
}

// connHostPort extracts host and port from a postgres:// conn_url.
func connHostPort(connURL string) (string, int, error) {
	u, err := url.Parse(connURL)
	if err != nil {
		return "", 0, err
	}
	host, portS, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Host, 5432, nil
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return "", 0, fmt.Errorf("bad port in %q", connURL)
	}
	return host, port, nil
}

// upstreamOf returns the pg.Upstream of member name in the snapshot.
func upstreamOf(c *dcs.Cluster, name string) (pg.Upstream, error) {
	m, ok := c.Member(name)
	if !ok {
		return pg.Upstream{}, fmt.Errorf("member %q has no member key", name)
	}
	host, port, err := connHostPort(m.Data.ConnURL)
	if err != nil || host == "" {
		return pg.Upstream{}, fmt.Errorf("member %q publishes an unusable conn_url %q", name, m.Data.ConnURL)
	}
	return pg.Upstream{Host: host, Port: port}, nil
}

// checkDivergence decides whether this node's history diverged from the
// leader's, from the leader's live timeline (GET /patroni), /history (the
// leader's timeline switch points) and the local timeline and position: a node on an older timeline that was a
// primary on it, or that has WAL past the switch point, diverged.
func (n *Node) checkDivergence(ctx context.Context, c *dcs.Cluster, l failover.Local, leader string) failover.Divergence {
	if c == nil || c.History == nil || !c.History.Valid {
		return failover.DivergenceCheckFailed
	}
	lm, ok := c.Member(leader)
	if !ok || lm.Data.APIURL == "" || l.Timeline == 0 {
		return failover.DivergenceCheckFailed
	}
	// The leader's live timeline: its member key still shows the old one
	// for up to a cycle after it promoted, and a node that trusted it would
	// follow the new primary from a diverged history.
	ps := probePeers(ctx, n.http, []failover.ProbeTarget{{Name: leader, APIURL: lm.Data.APIURL}}, n.cfg.ProbeTimeout)
	if len(ps) != 1 || !ps[0].Reachable || ps[0].Err != "" || ps[0].Timeline == 0 {
		return failover.DivergenceCheckFailed
	}
	if ps[0].InRecovery || ps[0].State != failover.StateRunning {
		// A leader that is stopping (a switchover) or not yet promoted
		// is no reference: check again once it runs as a primary.
		return failover.DivergenceCheckFailed
	}
	leaderTL := ps[0].Timeline
	if w := n.observed.WALReceiver; l.Running && l.InRecovery && l.Timeline < leaderTL && (w == nil || w.Status != "streaming") {
		// With no streaming WAL receiver the observed timeline is the last
		// restartpoint's, which lags after a failover (and after pg_rewind,
		// which leaves the last common checkpoint in pg_control while the
		// standby replays onto the new timeline): ask the standby.
		if rt, ok := n.pg.(replayTimeliner); ok {
			if tl, err := rt.ReplayTimeline(ctx); err == nil && int64(tl) > l.Timeline {
				l.Timeline = int64(tl)
			} else if err != nil {
				n.log.Debug("replay timeline unknown; using the last restartpoint's", "error", err)
			}
		}
	}
	if l.Timeline == leaderTL {
		return failover.DivergenceNone
	}
	if l.Timeline > leaderTL {
		return failover.DivergenceFound
	}
	var switchpoint int64 = -1
	for _, h := range c.History.Lines {
		if h.Timeline == l.Timeline {
			switchpoint = h.LSN
		}
	}
	if switchpoint < 0 {
		return failover.DivergenceFound
	}
	pos := l.Position()
	if !l.Running && n.observed.Control != nil {
		pos = int64(n.observed.Control.CheckpointLSN)
		// A primary that shut down on this timeline wrote its shutdown
		// checkpoint there; unless the new leader received it, the
		// histories differ.
		switch n.observed.Control.State {
		case pg.StateInProduction:
			// Crashed while primary: it may hold WAL past its last
			// checkpoint that the new leader never got. pg_rewind (after
			// crash recovery) settles it, and is a no-op when nothing
			// diverged.
			return failover.DivergenceFound
		case pg.StateShutDown:
			if pos >= switchpoint {
				return failover.DivergenceFound
			}
			return failover.DivergenceNone
		}
	}
	if pos > switchpoint {
		return failover.DivergenceFound
	}
	return failover.DivergenceNone
}

// checkUniqueName refuses to run when another live agent already publishes
// a member key with this node's name (Patroni's startup guard): its member
// key is on another lease and its REST API answers.
func (n *Node) checkUniqueName(ctx context.Context) error {
	c, err := n.store.Cluster(ctx)
	if err != nil {
		return nil // the loop copes with an unreachable DCS
	}
	m, ok := c.Member(n.cfg.Name)
	n.mu.Lock()
	mine := n.lease.ID
	n.mu.Unlock()
	if !ok || m.Lease == 0 || m.Lease == mine || m.Data.APIURL == "" || m.Data.APIURL == n.cfg.APIURL {
		return nil
	}
	p := probePeers(ctx, n.http, []failover.ProbeTarget{{Name: m.Name, APIURL: m.Data.APIURL}}, n.cfg.ProbeTimeout)
	if len(p) == 1 && p[0].Reachable {
		return fmt.Errorf("%w: there is already a node named %q running (its API answers at %s)", ErrRefused, n.cfg.Name, m.Data.APIURL)
	}
	return nil
}

// releaseIfFenced gives up a leader key this node still holds on its lease
// after its fence fired (a renewal that got through just as the fence
// stopped Postgres): the node no longer acts as leader, so the key must go
// and let the others race, instead of being kept alive by the lease.
func (n *Node) releaseIfFenced(ctx context.Context, c *dcs.Cluster) {
	n.mu.Lock()
	fenced, leading, lease := n.fenced, n.leading, n.lease.ID
	n.mu.Unlock()
	if !fenced || leading || c == nil || c.Leader == nil || c.Leader.Name != n.cfg.Name || c.Leader.Lease != lease {
		return
	}
	if err := n.store.ReleaseLeader(ctx, nil); err != nil {
		n.log.Warn("releasing the leader key held after the fence", "error", err)
		return
	}
	n.log.Warn("released the leader key still held after the fence")
	n.mu.Lock()
	n.fenced = false
	n.mu.Unlock()
}

// replayTimeliner is a Postgres that can tell a standby's replay timeline
// (*pg.Instance does).
type replayTimeliner interface {
	ReplayTimeline(ctx context.Context) (int, error)
}

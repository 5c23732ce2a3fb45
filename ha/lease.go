package ha

import (
	"context"
	"errors"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

// keepLease renews the node's lease every renew interval, independently of
// the loop: as leader with RefreshLeader (which also proves the leader key is
// still ours), otherwise with KeepAlive (which keeps the member key alive).
// A renewal that fails is retried quickly; the fence timer, not this
// goroutine, decides when a leader must stop.
func (n *Node) keepLease(ctx context.Context) {
	for ctx.Err() == nil {
		n.mu.Lock()
		tm, leading, deadline, abandon := n.tm, n.leading, n.leadUntilLocked(), n.abandonLease && !n.leading
		n.mu.Unlock()
		if abandon {
			if !n.abandonFencedLease(ctx, tm) {
				return
			}
			continue
		}

		// A renewal must not outlive the fence: bound it by the time left.
		timeout := max(tm.retry, time.Second)
		if leading {
			if left := deadline.Add(-tm.margin).Sub(n.clock.Now()); left < timeout && left > 0 {
				timeout = max(left, 50*time.Millisecond)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		var lease dcs.Lease
		var err error
		if leading {
			n.leaderOpMu.Lock()
			n.mu.Lock()
			leading = n.leading
			n.mu.Unlock()
			if leading {
				lease, err = n.store.RefreshLeader(rctx)
			} else {
				lease, err = n.store.KeepAlive(rctx, tm.ttl)
			}
			n.leaderOpMu.Unlock()
		} else {
			lease, err = n.store.KeepAlive(rctx, tm.ttl)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		next := tm.renew
		switch {
		case err == nil:
			if n.leaseRenewed(lease, leading) {
				_ = n.wd.Keepalive()
			}
		case errors.Is(err, dcs.ErrNotLeader) && errors.Is(err, dcs.ErrSessionExpired) && n.inFailsafe():
			// The DCS came back after the lease ran out while every member
			// acknowledged this primary (failsafe): nobody else took the
			// key, and they follow this node until the acknowledgement
			// expires. Keep Postgres; the loop takes the key again.
			n.log.Warn("the lease expired while the DCS was out of reach (failsafe mode): re-acquiring the leader key", "error", err)
			n.dropLeadership("lease expired in failsafe mode")
			n.poke(n.wake)
		case errors.Is(err, dcs.ErrNotLeader):
			n.log.Error("lost the leader key", "error", err)
			n.fenceNow("the leader key is no longer mine")
		default:
			n.mu.Lock()
			n.leaseErr = err
			n.mu.Unlock()
			n.log.Warn("lease renewal failed", "error", err, "leading", leading)
			next = min(tm.renew, 250*time.Millisecond)
			if leading && n.failsafeMode.Load() && n.failsafeDue() {
				// Ask the members now, before the fence fires: the loop may
				// be waiting for the DCS itself.
				if _, running := n.pg.Running(); running {
					n.confirmFailsafe(ctx, n.lastClusterSnapshot())
					n.poke(n.wake)
				}
			}
		}
		t := n.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-n.renewCh:
			t.Stop()
		}
	}
}

// leaseRenewed records a successful renewal; a leader moves its deadline and
// re-arms the fence at deadline - margin, and reports true (its watchdog is
// then kept alive).
func (n *Node) leaseRenewed(l dcs.Lease, asLeader bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lease, n.leaseOK, n.leaseErr = l, n.clock.Now(), nil
	if !asLeader || !n.leading {
		return false
	}
	n.deadline = l.Deadline()
	n.armFenceLocked()
	return true
}

func (n *Node) armFenceLocked() {
	if n.fenceTimer != nil {
		n.fenceTimer.Stop()
	}
	d := n.leadUntilLocked().Add(-n.tm.margin).Sub(n.clock.Now())
	n.fenceTimer = n.clock.AfterFunc(max(d, 0), func() { n.fenceNow("the lease could not be renewed before its deadline") })
}

// becomeLeader is called after AcquireLeader succeeded with lease l.
func (n *Node) becomeLeader(l dcs.Lease) {
	n.mu.Lock()
	n.lease, n.leaseOK, n.leaseErr = l, n.clock.Now(), nil
	n.leading, n.deadline, n.fenced, n.abandonLease = true, l.Deadline(), false, false
	n.armFenceLocked()
	n.mu.Unlock()
	n.poke(n.renewCh)
}

// isLeading reports whether the node holds the leader key and the fence
// has not fired: its deadline minus the margin is still ahead.
func (n *Node) isLeading() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading && n.clock.Now().Before(n.leadUntilLocked().Add(-n.tm.margin))
}

// leadUntilLocked is when leadership runs out: the lease deadline, or
// later while every member acknowledges this primary in failsafe mode.
func (n *Node) leadUntilLocked() time.Time {
	if n.failsafeUntil.After(n.deadline) {
		return n.failsafeUntil
	}
	return n.deadline
}

// endLeadership forgets leadership: stops the fence timer and cancels the
// leadership context handed to hooks.
func (n *Node) endLeadership(why string) {
	// Wait for a renewal in flight: once leading is false no RefreshLeader
	// runs, so none can re-create a key the caller is about to release.
	n.leaderOpMu.Lock()
	defer n.leaderOpMu.Unlock()
	n.dropLeadership(why)
}

// dropLeadership is endLeadership without waiting for a renewal in flight,
// for the fencer, which must never wait. A key such a renewal might still
// re-create is released by releaseIfFenced.
func (n *Node) dropLeadership(why string) {
	n.mu.Lock()
	was := n.leading
	n.leading = false
	n.deadline, n.failsafeUntil = time.Time{}, time.Time{}
	if n.fenceTimer != nil {
		n.fenceTimer.Stop()
		n.fenceTimer = nil
	}
	cancel := n.leaderCancel
	n.leaderCancel = nil
	n.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	// A running Postgres keeps the watchdog armed (without keepalives)
	// until it has stopped.
	if _, running := n.pg.Running(); !running {
		_ = n.wd.Disable()
	}
	if was {
		n.log.Info("leadership ended", "reason", why)
		if h := n.cfg.Hooks.OnStoppedLeading; h != nil && why != "shutdown" {
			n.hook(func() { h() })
		}
	}
}

// fenceNow asks the fencer to stop Postgres at once. It never blocks: the
// fence must work while the loop is stuck.
func (n *Node) fenceNow(why string) {
	select {
	case n.fenceCh <- why:
	default:
	}
}

// fencer stops a leader's Postgres (immediate) when the fence fires. It is
// independent of the loop, which may be blocked in a slow call.
func (n *Node) fencer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case why := <-n.fenceCh:
			n.mu.Lock()
			was := n.leading
			n.mu.Unlock()
			if !was {
				continue
			}
			n.dropLeadership(why)
			n.mu.Lock()
			n.fenced = true
			n.events.fences.Add(1)
			n.mu.Unlock()
			stopped := true
			if _, running := n.pg.Running(); running {
				n.log.Error("fencing: stopping postgres immediately", "reason", why)
				role := n.roleNow()
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := n.pg.Stop(sctx, pg.StopImmediate); err != nil && !errors.Is(err, pg.ErrNotRunning) {
					n.log.Error("fencing: stop failed", "error", err)
					stopped = false
				} else if err == nil {
					n.postgresStopped(role, true)
				}
				cancel()
			}
			if stopped {
				// Postgres no longer writes: the tenure's leader key may go
				// now, and must not be kept alive by this node's renewals.
				n.mu.Lock()
				n.abandonLease = true
				n.mu.Unlock()
				n.poke(n.renewCh)
			}
			n.poke(n.wake)
		}
	}
}

// dcsReachable reports whether the lease keeper's last renewal succeeded or
// the last success is recent (within one renewal interval plus retry).
// renewalFailing reports whether the last lease renewal failed.
func (n *Node) renewalFailing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaseErr != nil
}

func (n *Node) dcsReachable() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leaseErr == nil {
		return !n.leaseOK.IsZero()
	}
	return n.clock.Since(n.leaseOK) < n.tm.renew+n.tm.retry
}

// abandonFencedLease revokes the lease a fenced tenure ran on (Resign: the
// member key goes with it, and the leader key if it is still there) and
// reports whether the keeper should go on. Until the revocation is known
// to have happened it is retried and nothing is renewed: a renewal that
// reached etcd while its answer was lost would keep the fenced tenure's
// leader key alive with no primary behind it. The next KeepAlive grants a
// new lease and the loop publishes the member key again.
func (n *Node) abandonFencedLease(ctx context.Context, tm timing) bool {
	rctx, cancel := context.WithTimeout(ctx, max(tm.retry, time.Second))
	err := n.store.Resign(rctx)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	next := time.Duration(0)
	if err == nil || errors.Is(err, dcs.ErrSessionExpired) {
		n.mu.Lock()
		n.abandonLease = false
		n.mu.Unlock()
		n.log.Info("revoked the lease of the fenced tenure: its leader key cannot outlive the fence")
		n.poke(n.wake)
	} else {
		n.log.Warn("revoking the lease of the fenced tenure failed; retrying before any renewal", "error", err)
		next = min(tm.renew, 250*time.Millisecond)
	}
	if next == 0 {
		return true
	}
	t := n.clock.NewTimer(next)
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C():
	case <-n.renewCh:
		t.Stop()
	}
	return true
}

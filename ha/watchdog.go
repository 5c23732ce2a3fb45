package ha

import (
	"errors"
	"time"

	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/ha/watchdog"
)

// The node's use of its watchdog (SPEC.md 3.17): armed before a promotion
// and whenever the node leads with a running primary (not paused), kept
// alive after every successful renewal of the leader key, disabled once
// Postgres stopped (demote, release, shutdown, fence) or when the cluster
// is paused. A leader that loses the key while its Postgres still runs
// leaves the watchdog armed without keepalives: if the stop does not
// happen before the timeout, the host is reset.

// watchdogTiming is the TTL and the renewal interval in force.
func (n *Node) watchdogTiming() (ttl, renew time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tm.ttl, n.tm.renew
}

// watchdogFailed reports whether the watchdog is required but cannot
// protect a primary (published as watchdog_failed; Decide then neither
// races nor promotes, and demotes a primary).
func (n *Node) watchdogFailed() bool {
	ttl, renew := n.watchdogTiming()
	return n.wd.Check(ttl, renew) != nil
}

// armWatchdog activates the watchdog before a promotion. In required mode
// a failure refuses the promotion.
func (n *Node) armWatchdog() error {
	ttl, renew := n.watchdogTiming()
	if err := n.wd.Activate(ttl, renew); err != nil {
		return errors.Join(errors.New("refusing to promote"), err)
	}
	n.warnWatchdogMargin(ttl)
	return nil
}

// warnWatchdogMargin warns once when the watchdog would fire before the
// fence stops Postgres during a DCS outage: the host is then reset
// instead of Postgres being stopped.
func (n *Node) warnWatchdogMargin(ttl time.Duration) {
	if !n.wd.Active() || n.wdMarginWarned.Load() {
		return
	}
	n.mu.Lock()
	margin := n.tm.margin
	n.mu.Unlock()
	if left := ttl - n.wd.TimeoutFor(ttl); left >= margin {
		n.wdMarginWarned.Store(true)
		n.log.Warn("the watchdog fires before the fence: when the DCS cannot be reached, this host is reset instead of Postgres being stopped; use a smaller watchdog safety_margin or a larger FenceMargin",
			"watchdog_timeout", n.wd.TimeoutFor(ttl), "fence_margin", margin)
	}
}

// tendWatchdog makes the watchdog follow the node's state at the end of a
// cycle.
func (n *Node) tendWatchdog(l failover.Local) {
	if n.wd.Mode() == watchdog.ModeOff {
		return
	}
	leading := n.isLeading()
	switch {
	case n.dyn.Pause:
		_ = n.wd.Disable()
	case leading && l.Running && !l.InRecovery:
		ttl, renew := n.watchdogTiming()
		_ = n.wd.Activate(ttl, renew) // a required failure shows in the next decision
		n.warnWatchdogMargin(ttl)
	case !leading && (!l.Running || l.InRecovery):
		_ = n.wd.Disable()
	}
}

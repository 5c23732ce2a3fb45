package cluster

import (
	"errors"
	"fmt"
	"time"
)

// The node's etcd link, degraded rather than cut: every method acts on all
// of the node's etcd proxies (one per etcd member) and HealDCS undoes them
// all.

// DelayDCS delays every chunk of the node's etcd traffic by base ± jitter
// in each direction (so a request/reply exchange takes at least 2·(base -
// jitter) more), keeping byte order, until HealDCS.
func (n *Node) DelayDCS(base, jitter time.Duration) error {
	var errs []error
	for _, p := range n.proxies() {
		errs = append(errs, p.Delay(base, jitter))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: %s: %w", n.Name, err)
	}
	n.log.Warn("DCS link delayed", "base", base, "jitter", jitter)
	return nil
}

// DropDCS makes the node's etcd link lossy until HealDCS: each chunk, in
// either direction, resets its connection with probability prob (bytes are
// never silently removed from a stream; see faultproxy.Proxy.Drop).
func (n *Node) DropDCS(prob float64) error {
	var errs []error
	for _, p := range n.proxies() {
		errs = append(errs, p.Drop(prob))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: %s: %w", n.Name, err)
	}
	n.log.Warn("DCS link lossy", "drop", prob)
	return nil
}

// CutDCSReplies is a one-way cut: the node's requests still reach etcd
// (renewals take effect there), but etcd's replies are held until
// HealDCS, so the node never learns their outcome.
func (n *Node) CutDCSReplies() {
	n.log.Warn("DCS replies cut (requests still reach etcd)")
	for _, p := range n.proxies() {
		p.PauseRx()
	}
}

// ResetDCS resets (TCP RST) every open connection of the node's etcd
// link at once, as a middlebox or a REJECT rule would; the node reconnects
// at once. It is a one-shot fault: nothing is left to heal.
func (n *Node) ResetDCS() {
	n.log.Warn("DCS connections reset")
	for _, p := range n.proxies() {
		p.Reset()
	}
}

// DCSDrops returns how many of the node's etcd connections DropDCS has
// reset so far.
func (n *Node) DCSDrops() int {
	total := 0
	for _, p := range n.proxies() {
		total += p.Drops()
	}
	return total
}

// healProxies undoes every fault on the node's etcd proxies: CutFromDCS,
// CutDCSReplies, DelayDCS and DropDCS.
func (n *Node) healProxies() {
	for _, p := range n.proxies() {
		p.Heal()
	}
}

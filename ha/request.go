package ha

import (
	"context"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

// Switchover asks the current leader to hand over to candidate ("" for any
// healthy member), now or at a scheduled time (zero: now). It validates the
// request as Patroni's POST /switchover does (probing the members), writes
// /failover and returns; the leader carries it out. Validation failures wrap
// ErrInvalidRequest and the failover package's error.
func (n *Node) Switchover(ctx context.Context, candidate string, at time.Time) error {
	c, err := n.store.Cluster(ctx)
	if err != nil {
		return err
	}
	return n.request(ctx, c, failover.SwitchoverRequest{Leader: c.LeaderName(), Candidate: candidate, ScheduledAt: at})
}

// Failover asks for candidate to become the leader whether or not there is
// a healthy leader (Patroni's POST /failover). It overrides the lag bound of
// automatic failover.
func (n *Node) Failover(ctx context.Context, candidate string) error {
	c, err := n.store.Cluster(ctx)
	if err != nil {
		return err
	}
	return n.request(ctx, c, failover.SwitchoverRequest{Candidate: candidate, Failover: true})
}

func (n *Node) request(ctx context.Context, c *dcs.Cluster, req failover.SwitchoverRequest) error {
	cfg := n.dynamic()
	if c.Config != nil {
		cfg = c.Config.Dynamic()
	}
	var targets []failover.ProbeTarget
	for _, m := range c.Members {
		if m.Name != c.LeaderName() {
			targets = append(targets, failover.ProbeTarget{Name: m.Name, APIURL: m.Data.APIURL})
		}
	}
	peers := probePeers(ctx, n.http, targets, n.cfg.ProbeTimeout)
	if err := failover.ValidateSwitchover(c, cfg, req, peers, n.clock.Now()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	f := dcs.Failover{Leader: req.Leader, Candidate: req.Candidate, ScheduledAt: req.ScheduledAt}
	if _, err := n.store.SetFailover(ctx, f, dcs.Unconditional); err != nil {
		return fmt.Errorf("ha: failed to write failover key into DCS: %w", err)
	}
	n.poke(n.wake)
	return nil
}

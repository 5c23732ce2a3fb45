package cluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPrimary: no node's Postgres accepts writes.
var ErrNoPrimary = errors.New("cluster: no writable primary")

// pollInterval is how often the Wait functions look again.
const pollInterval = 50 * time.Millisecond

// Writable returns the running nodes whose Postgres accepts writes now,
// asked in parallel.
func (c *Cluster) Writable(ctx context.Context) []*Node {
	var mu sync.Mutex
	var out []*Node
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() {
			if n.Writable(ctx) {
				mu.Lock()
				out = append(out, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b *Node) int { return compareNames(a.Name, b.Name) })
	return out
}

func compareNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Primary returns the primary: the one node whose Postgres accepts writes,
// provided the DCS names it leader. It fails when no node, or more than
// one, accepts writes, or when the leader key names another node.
func (c *Cluster) Primary(ctx context.Context) (*Node, error) {
	w := c.Writable(ctx)
	switch len(w) {
	case 0:
		return nil, ErrNoPrimary
	case 1:
	default:
		return nil, fmt.Errorf("cluster: %d writable primaries: %v", len(w), sortedNames(w))
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the leader key: %w", err)
	}
	if leader != w[0].Name {
		return nil, fmt.Errorf("cluster: %s accepts writes but the leader key names %q", w[0].Name, leader)
	}
	return w[0], nil
}

// WaitPrimary waits (bounded by ctx) for a Primary that is none of not,
// and returns it.
func (c *Cluster) WaitPrimary(ctx context.Context, not ...*Node) (*Node, error) {
	var last error
	for {
		p, err := c.Primary(ctx)
		if err == nil && slices.Contains(not, p) {
			err = fmt.Errorf("cluster: %s is still the primary", p.Name)
		}
		if err == nil {
			return p, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: no new primary: %w (last: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// WaitStable waits (bounded by ctx) until the cluster is stable: a Primary,
// and every other running node a replica whose WAL receiver streams from it
// (pg_stat_wal_receiver on the replica itself; the primary's
// pg_stat_replication would also list a pg_basebackup still cloning). It
// returns the primary.
func (c *Cluster) WaitStable(ctx context.Context) (*Node, error) {
	var last error
	for {
		p, err := c.stable(ctx)
		if err == nil {
			return p, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: not stable: %w (last: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

func (c *Cluster) stable(ctx context.Context) (*Node, error) {
	p, err := c.Primary(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range c.running() {
		if n == p {
			continue
		}
		up, err := n.Upstream(ctx)
		if err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", n.Name, err)
		}
		if !p.servesPort(up) {
			return nil, fmt.Errorf("cluster: %s streams from port %d, not from %s (port %d)", n.Name, up, p.Name, p.Port())
		}
	}
	return p, nil
}

// Upstream returns the port of the server the node's WAL receiver streams
// from (pg_stat_wal_receiver, status streaming), or an error when the node
// is not a streaming replica.
func (n *Node) Upstream(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cn, err := n.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer cn.Close(context.Background())
	var port int32
	err = cn.QueryRow(ctx, "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'").Scan(&port)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errors.New("not streaming")
	}
	return int(port), err
}

// Streaming returns the application names of the replicas streaming from
// the node (pg_stat_replication, state streaming).
func (n *Node) Streaming(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cn, err := n.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.Close(context.Background())
	rows, err := cn.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Eventually calls cond every 50 ms until it returns nil or ctx ends, and
// returns the last error then.
func Eventually(ctx context.Context, cond func(ctx context.Context) error) error {
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// Every yields the time of each tick of a ticker with period d, until ctx
// ends or the loop stops: the pace of a load generator's write loop,
// whatever a write takes (ticks missed meanwhile are dropped). No tick is
// yielded once ctx has ended.
func Every(ctx context.Context, d time.Duration) iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if ctx.Err() != nil || !yield(now) {
					return
				}
			}
		}
	}
}

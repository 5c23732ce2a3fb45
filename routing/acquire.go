package routing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgha/pgha/internal/clock"
)

// ReadOptions tune one read acquisition. The zero value uses the Config's
// settings.
type ReadOptions struct {
	// MaxLag bounds replica lag in bytes. 0: Config.MaxLag; negative: no
	// bound.
	MaxLag int64
	// Fallback is what to do when no replica is eligible. FallbackDefault:
	// Config.Fallback.
	Fallback Fallback
	// After is a read-your-writes token (the LSN a Write returned): the read
	// goes to a replica that has replayed it (known from the last probe, or
	// checked on the replica with one query, waiting up to Wait), else to
	// the primary, whatever Fallback says. 0: no constraint. LSNUnknown goes
	// straight to the primary.
	After LSN
	// Wait bounds how long a read with After waits for a replica to replay
	// it. 0: Config.ReadYourWritesWait.
	Wait time.Duration
}

// Primary returns a connection to the current primary, for writes. While
// the cluster has no leader, or a planned switchover holds writes, it waits
// for one, bounded by ctx, instead of failing; when the primary does not
// accept connections (it died and the DCS has not noticed yet, or a new
// leader is still promoting) it retries with backoff, also bounded by ctx,
// and a leader change cuts the wait short. When ctx ends first the error
// wraps ErrNoPrimary, ctx's error and the last connection error. Errors that
// retrying cannot fix (authentication, a missing database) are returned at
// once. Release the connection as with pgxpool.
//
// The connection belongs to the primary's current epoch: when the leader
// changes, the router closes it under you (in-flight statements fail with a
// connection error, and ErrFenced is wrapped by Write), so it never writes to
// a demoted node.
func (r *Router) Primary(ctx context.Context) (*pgxpool.Conn, error) {
	c, _, err := r.primary(ctx)
	return c, err
}

func (r *Router) primary(ctx context.Context) (*pgxpool.Conn, *pool, error) {
	var (
		last  error
		b     *retrier
		held  bool
		stale bool
	)
	for {
		st := r.state.Load()
		if st.closed {
			return nil, nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, noPrimaryErr(st, last, err)
		}
		if st.ready && st.primary != nil && !st.holding() {
			if err := r.staleErr(st); err != nil {
				// Fail closed: no new write connection to a primary the
				// DCS has not confirmed lately.
				last = err
				if !stale {
					stale = true
					r.stats.stale.Add(1)
				}
				if werr := r.waitPrimaryChange(ctx, st, max(r.cfg.MaxStaleness/4, minConfirmInterval)); werr != nil {
					return nil, nil, noPrimaryErr(st, last, werr)
				}
				continue
			}
			c, err := st.primary.acquire(ctx)
			if err == nil {
				return c, st.primary, nil
			}
			if r.state.Load().closed {
				return nil, nil, ErrClosed
			}
			if ctx.Err() != nil {
				return nil, nil, noPrimaryErr(st, err, ctx.Err())
			}
			if !SafeToRetry(err) {
				return nil, nil, err
			}
			last = err
			if b == nil {
				b = r.newRetrier()
			}
			if werr := r.waitPrimaryChange(ctx, st, b.next(err)); werr != nil {
				return nil, nil, noPrimaryErr(st, last, werr)
			}
			continue
		}
		if st.holding() && !held {
			held = true
			r.stats.held.Add(1)
		}
		if werr := r.waitPrimaryChange(ctx, st, 0); werr != nil {
			return nil, nil, noPrimaryErr(st, last, werr)
		}
	}
}

// Replica returns a connection for reads: to a replica that is running,
// streaming, not tagged noloadbalance and within the lag bound (measured
// against the primary's current position), chosen by the Picker; else to the
// primary when the fallback allows; else it waits for one, bounded by ctx.
// A replica that cannot be reached is skipped for the next candidate. See
// ReadOptions for read-your-writes. Replica connections have
// default_transaction_read_only on; a fallback to the primary does not, so
// never write on a connection obtained for reading.
func (r *Router) Replica(ctx context.Context, opts ReadOptions) (*pgxpool.Conn, error) {
	c, _, err := r.readConn(ctx, opts)
	return c, err
}

// Any returns a connection to any usable node: the picker chooses among the
// replicas within the lag bound and the primary alike. It may be the
// primary: use it for reads only.
func (r *Router) Any(ctx context.Context) (*pgxpool.Conn, error) {
	c, _, err := r.acquireCrit(ctx, Alive, r.cfg.MaxLag)
	return c, err
}

// Acquire returns a connection by criterion, in hasql's vocabulary:
// Primary is the Primary method (held during a switchover); Standby and
// PreferStandby are Replica without and with the fallback; PreferPrimary
// takes the primary (not held) when there is one, else a replica; Alive is
// Any.
func (r *Router) Acquire(ctx context.Context, c Criterion) (*pgxpool.Conn, error) {
	switch c {
	case Primary:
		return r.Primary(ctx)
	case Standby, PreferStandby, PreferPrimary, Alive:
		conn, _, err := r.acquireCrit(ctx, c, r.cfg.MaxLag)
		return conn, err
	}
	return nil, fmt.Errorf("routing: invalid criterion %d", c)
}

// WaitForNode returns the node an acquisition under c would use first,
// waiting (bounded by ctx) while there is none, without connecting. For
// Primary it also waits out a switchover hold and, with MaxStaleness, a
// primary the DCS has not confirmed lately. It is what Acquire does
// before it connects, useful in tests and for diagnostics.
func (r *Router) WaitForNode(ctx context.Context, c Criterion) (Node, error) {
	for {
		st := r.state.Load()
		if st.closed {
			return Node{}, ErrClosed
		}
		var stale error
		if c == Primary && st.ready {
			stale = r.staleErr(st)
		}
		if st.ready && (c != Primary || !st.holding()) && stale == nil {
			if cands := st.topo.Candidates(c, r.cfg.MaxLag, r.cfg.Picker); len(cands) > 0 {
				return cands[0], nil
			}
		}
		var poll time.Duration
		if stale != nil {
			poll = max(r.cfg.MaxStaleness/4, minConfirmInterval)
		}
		if err := r.waitAnyChange(ctx, st, poll); err != nil {
			if c == Primary {
				return Node{}, noPrimaryErr(st, stale, err)
			}
			return Node{}, fmt.Errorf("%w (%s): %w", ErrNoNode, c, err)
		}
	}
}

func (s *state) poolFor(n Node) *pool {
	if n.Role == RolePrimary {
		if s.primary != nil && s.primary.node == n.Name {
			return s.primary
		}
		return nil
	}
	return s.replicas[n.Name]
}

// acquireCrit acquires under a read criterion (no hold), trying the
// candidates in order and waiting for a topology change when none works.
func (r *Router) acquireCrit(ctx context.Context, c Criterion, maxLag int64) (*pgxpool.Conn, *pool, error) {
	var (
		last error
		b    *retrier
	)
	for {
		st := r.state.Load()
		if st.closed {
			return nil, nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, noNodeErr(c, last, err)
		}
		var cands []Node
		if st.ready {
			cands = st.topo.Candidates(c, maxLag, r.cfg.Picker)
		}
		tried := 0
		for _, n := range cands {
			p := st.poolFor(n)
			if p == nil {
				continue
			}
			tried++
			conn, err := p.acquire(ctx)
			if err == nil {
				return conn, p, nil
			}
			if r.state.Load().closed {
				return nil, nil, ErrClosed
			}
			if ctx.Err() != nil {
				return nil, nil, noNodeErr(c, err, ctx.Err())
			}
			last = err
		}
		var d time.Duration
		if tried > 0 {
			if !SafeToRetry(last) {
				return nil, nil, last
			}
			if b == nil {
				b = r.newRetrier()
			}
			d = b.next(last)
		}
		if werr := r.waitAnyChange(ctx, st, d); werr != nil {
			return nil, nil, noNodeErr(c, last, werr)
		}
	}
}

func noNodeErr(c Criterion, last, ctxErr error) error {
	if c == Primary {
		return fmt.Errorf("%w: %w", ErrNoPrimary, errors.Join(ctxErr, last))
	}
	if last != nil {
		return fmt.Errorf("%w (%s): %w (last error: %w)", ErrNoNode, c, ctxErr, last)
	}
	return fmt.Errorf("%w (%s): %w", ErrNoNode, c, ctxErr)
}

// readConn acquires a connection for a read under opts.
func (r *Router) readConn(ctx context.Context, opts ReadOptions) (*pgxpool.Conn, *pool, error) {
	maxLag := opts.MaxLag
	if maxLag == 0 {
		maxLag = r.cfg.MaxLag
	}
	fallback := opts.Fallback
	if fallback == FallbackDefault {
		fallback = r.cfg.Fallback
	}
	if opts.After == 0 {
		c := PreferStandby
		if fallback == FallbackNone {
			c = Standby
		}
		return r.acquireCrit(ctx, c, maxLag)
	}
	wait := opts.Wait
	if wait <= 0 {
		wait = r.cfg.ReadYourWritesWait
	}
	if opts.After != LSNUnknown {
		if c, p := r.replicaAfter(ctx, opts.After, maxLag, wait); c != nil {
			return c, p, nil
		}
	}
	return r.acquireCrit(ctx, Primary, maxLag)
}

// replicaAfter returns a connection to a replica that has replayed lsn, or
// nil: first among those the last probe saw past it, else it asks the
// picker's replica and waits (up to wait) for it to get there.
func (r *Router) replicaAfter(ctx context.Context, lsn LSN, maxLag int64, wait time.Duration) (*pgxpool.Conn, *pool) {
	deadline := r.clk.Now().Add(wait)
	st := r.state.Load()
	if !st.ready || st.closed {
		return nil, nil
	}
	var known, others []Node
	for _, n := range st.topo.Candidates(Standby, maxLag, r.cfg.Picker) {
		if n.LSN >= lsn {
			known = append(known, n)
		} else {
			others = append(others, n)
		}
	}
	for _, n := range known {
		if p := st.poolFor(n); p != nil {
			if c, err := p.acquire(ctx); err == nil {
				return c, p
			}
		}
	}
	for _, n := range others {
		p := st.poolFor(n)
		if p == nil {
			continue
		}
		c, err := p.acquire(ctx)
		if err != nil {
			continue
		}
		if r.waitReplay(ctx, c, lsn, deadline) {
			return c, p
		}
		c.Release()
		return nil, nil
	}
	return nil, nil
}

// waitReplay polls the replica on c until it has replayed lsn or deadline
// passes.
func (r *Router) waitReplay(ctx context.Context, c *pgxpool.Conn, lsn LSN, deadline time.Time) bool {
	interval := time.Millisecond
	for {
		var ok bool
		err := c.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)", lsn.String()).Scan(&ok)
		if err != nil {
			return false
		}
		if ok {
			return true
		}
		left := deadline.Sub(r.clk.Now())
		if left <= 0 {
			return false
		}
		t := r.clk.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C():
		}
		interval = min(2*interval, 20*time.Millisecond)
	}
}

// retrier yields the waits between retries: exponential from
// RetryInterval to MaxRetryInterval with ±50% jitter; a node in recovery
// (a leader still promoting) is retried at a quarter of RetryInterval
// without growth, since promotion ends any moment and the check is one
// query.
type retrier struct {
	r *Router
	b *backoff.ExponentialBackOff
}

type backoffClock struct{ c clock.Clock }

func (b backoffClock) Now() time.Time { return b.c.Now() }

func (r *Router) newRetrier() *retrier {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     r.cfg.RetryInterval,
		RandomizationFactor: 0, // jitter comes from the router's own source
		Multiplier:          2,
		MaxInterval:         r.cfg.MaxRetryInterval,
		MaxElapsedTime:      0, // ctx bounds retries
		Stop:                backoff.Stop,
		Clock:               backoffClock{r.clk},
	}
	b.Reset()
	return &retrier{r: r, b: b}
}

func (t *retrier) next(err error) time.Duration {
	d := max(t.r.cfg.RetryInterval/4, time.Millisecond)
	if !errors.Is(err, ErrNotPrimary) {
		if d = t.b.NextBackOff(); d == backoff.Stop {
			d = t.r.cfg.MaxRetryInterval
		}
	}
	return d/2 + time.Duration(float64(d)*t.r.jitter())
}

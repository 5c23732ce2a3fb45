package routing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Write runs fn in a transaction on the primary and commits it. It returns
// the commit's WAL position, a read-your-writes token for ReadOptions.After
// (LSNUnknown when the commit succeeded but its position could not be read).
//
// A transaction that fails before COMMIT with an error SafeToRetry accepts
// (a lost connection, a fenced one, 25006 because the node was demoted,
// 57P01 because it shut down, ...) runs again, on the new primary once there
// is one, with backoff bounded by ctx: fn may run more than once, so it must
// have no effects outside the transaction, and it must return the errors of
// the tx's methods (wrapped is fine). Any other error from fn is returned at
// once, after a rollback.
//
// A failure while COMMIT is in flight is ambiguous: the transaction may or
// may not have committed. Write never retries it and returns an error
// wrapping ErrAmbiguousCommit (and the cause). An error the server answers
// COMMIT with (a deferred constraint, a serialization failure) is definite
// and returned as such.
//
// Logic that reads and then writes on what it read must run inside fn, on
// the primary: a replica may be behind.
func (r *Router) Write(ctx context.Context, fn func(pgx.Tx) error) (LSN, error) {
	return r.WriteTx(ctx, pgx.TxOptions{}, fn)
}

// WriteTx is Write with transaction options (isolation level, deferrable).
func (r *Router) WriteTx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (LSN, error) {
	var b *retrier
	for attempt := 1; ; attempt++ {
		// The state before the attempt: a change during it cuts the wait
		// before the next one short.
		st := r.state.Load()
		lsn, err := r.writeOnce(ctx, opts, fn)
		if err == nil {
			return lsn, nil
		}
		if errors.Is(err, ErrAmbiguousCommit) {
			r.stats.ambiguous.Add(1)
			return 0, err
		}
		if ctx.Err() != nil || !SafeToRetry(err) {
			return 0, err
		}
		r.stats.retries.Add(1)
		if h := r.cfg.Hooks.OnRetry; h != nil {
			h("write", attempt, err)
		}
		r.log.Debug("write: retrying", "attempt", attempt, "error", err)
		if b == nil {
			b = r.newRetrier()
		}
		if werr := r.waitPrimaryChange(ctx, st, b.next(err)); werr != nil {
			return 0, fmt.Errorf("%w (gave up: %w)", err, werr)
		}
	}
}

func (r *Router) writeOnce(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (LSN, error) {
	conn, p, err := r.primary(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	fail := func(op string, err error) error {
		if p.isFenced() && !errors.Is(err, ErrFenced) {
			err = fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return &NodeError{Node: p.node, Op: op, Err: err}
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		return 0, fail("begin", err)
	}
	if err := fn(tx); err != nil {
		rollback(tx)
		return 0, fail("tx", err)
	}
	if conn.Conn().IsClosed() {
		// The connection died before COMMIT (cut by fencing, or the server
		// went away): nothing was sent, nothing committed.
		rollback(tx)
		return 0, fail("commit", pgconn.ErrConnClosed)
	}
	if err := tx.Commit(ctx); err != nil {
		if errors.Is(err, pgx.ErrTxCommitRollback) || errors.Is(err, pgx.ErrTxClosed) {
			return 0, &NodeError{Node: p.node, Op: "commit", Err: err}
		}
		switch commitOutcome(err) {
		case outcomeRetry:
			return 0, fail("commit", err)
		case outcomeDefinite:
			return 0, &NodeError{Node: p.node, Op: "commit", Err: err}
		}
		return 0, &NodeError{Node: p.node, Op: "commit", Err: fmt.Errorf("%w: %w", ErrAmbiguousCommit, err)}
	}
	return r.commitLSN(ctx, conn, p.node), nil
}

// commitLSN reads the WAL insert position after a commit: at or past the
// end of the commit record, also under synchronous_commit = off.
func (r *Router) commitLSN(ctx context.Context, conn *pgxpool.Conn, node string) LSN {
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		r.log.Debug("reading the commit position", logMember, node, "error", err)
		return LSNUnknown
	}
	lsn, err := ParseLSN(s)
	if err != nil {
		return LSNUnknown
	}
	return lsn
}

func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// Read runs fn in a read-only transaction on a connection chosen as Replica
// chooses it (opts.After gives read-your-writes), retrying, on another node
// if need be, after errors SafeToRetry accepts, with backoff bounded by ctx.
// fn may run more than once.
func (r *Router) Read(ctx context.Context, opts ReadOptions, fn func(pgx.Tx) error) error {
	var b *retrier
	for attempt := 1; ; attempt++ {
		st := r.state.Load()
		err := r.readOnce(ctx, opts, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !SafeToRetry(err) {
			return err
		}
		r.stats.retries.Add(1)
		if h := r.cfg.Hooks.OnRetry; h != nil {
			h("read", attempt, err)
		}
		if b == nil {
			b = r.newRetrier()
		}
		if werr := r.waitAnyChange(ctx, st, b.next(err)); werr != nil {
			return fmt.Errorf("%w (gave up: %w)", err, werr)
		}
	}
}

func (r *Router) readOnce(ctx context.Context, opts ReadOptions, fn func(pgx.Tx) error) error {
	conn, p, err := r.readConn(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return &NodeError{Node: p.node, Op: "begin", Err: err}
	}
	if err := fn(tx); err != nil {
		rollback(tx)
		return &NodeError{Node: p.node, Op: "tx", Err: err}
	}
	if err := tx.Commit(ctx); err != nil {
		return &NodeError{Node: p.node, Op: "commit", Err: err}
	}
	return nil
}

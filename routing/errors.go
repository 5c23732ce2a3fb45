package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors the router returns (wrapped; test them with errors.Is).
var (
	// ErrClosed: the router was closed.
	ErrClosed = errors.New("routing: router closed")
	// ErrNoPrimary: ctx ended while there was no usable primary (no leader,
	// a switchover hold, or the primary did not accept connections). The
	// error also wraps ctx's error and, when there was one, the last
	// connection error.
	ErrNoPrimary = errors.New("routing: no primary")
	// ErrNoNode: ctx ended while no node matched a read's criterion (no
	// replica within the lag bound and no fallback allowed or available).
	ErrNoNode = errors.New("routing: no node for the criterion")
	// ErrAmbiguousCommit: the connection failed while COMMIT was in flight
	// (or the server was shutting down), so whether the transaction
	// committed is unknown. The router never retries it; the caller must
	// find out (an idempotency key, a read of the row) before running it
	// again.
	ErrAmbiguousCommit = errors.New("routing: commit outcome unknown")
	// ErrFenced: the connection belonged to a primary whose epoch ended (the
	// leader changed): the router closed it so it writes no more. Safe to
	// retry on the new primary.
	ErrFenced = errors.New("routing: connection fenced: its primary's tenure ended")
	// ErrNotPrimary: a connection to the node the router follows as primary
	// found it in recovery (read-only); the check runs on every new
	// connection of a primary pool, as target_session_attrs=primary does.
	// It is normal for a moment while a new leader promotes. Safe to retry.
	ErrNotPrimary = errors.New("routing: server is in recovery, not a primary")
)

// NodeError is an error that happened on one node.
type NodeError struct {
	// Node is the node's name.
	Node string
	// Op is what the router was doing: "acquire", "begin", "tx", "commit",
	// "lsn".
	Op string
	// Err is the cause.
	Err error
}

// Error implements error.
func (e *NodeError) Error() string { return fmt.Sprintf("routing: %s on %s: %v", e.Op, e.Node, e.Err) }

// Unwrap returns the cause.
func (e *NodeError) Unwrap() error { return e.Err }

// retryableStates are the SQLSTATEs after which a transaction that did not
// reach COMMIT can run again on the (new) primary.
var retryableStates = map[string]bool{
	"25006": true, // read_only_sql_transaction: the node was demoted
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: starting up or shutting down
	"53300": true, // too_many_connections
}

// SafeToRetry reports whether err, from a transaction that had not reached
// COMMIT (or from an acquisition), means the work can run again, on the
// same or a new primary: a lost or refused connection, a connection the
// router fenced, a node in recovery, a read-only transaction (25006), a
// server shutting down or starting (57P01, 57P02, 57P03), SQLSTATE class 08,
// or too many connections. It is false for ErrAmbiguousCommit, ErrClosed,
// context errors, and every other server error (constraint violations,
// serialization failures, syntax errors, authentication failures).
func SafeToRetry(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrAmbiguousCommit), errors.Is(err, ErrClosed),
		errors.Is(err, ErrNoPrimary), errors.Is(err, ErrNoNode):
		return false
	case errors.Is(err, ErrFenced), errors.Is(err, errRetired), errors.Is(err, ErrNotPrimary),
		errors.Is(err, pgconn.ErrConnClosed):
		// Checked before context errors: a pool closed by the router
		// cancels its own dials.
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return retryableStates[pgErr.Code] || (len(pgErr.Code) == 5 && pgErr.Code[:2] == "08")
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// outcome classifies an error returned by COMMIT: retry (COMMIT was never
// sent, so nothing committed), definite (the server answered: the
// transaction did not commit) or ambiguous.
type outcome int

const (
	outcomeRetry outcome = iota
	outcomeDefinite
	outcomeAmbiguous
)

// commitOutcome classifies err, returned by a COMMIT on a connection that
// was open when COMMIT was called.
func commitOutcome(err error) outcome {
	if pgconn.SafeToRetry(err) && !errors.Is(err, pgconn.ErrConnClosed) {
		// Failed before anything was written (e.g. the socket was already
		// cut by fencing): COMMIT never reached the server. "conn closed"
		// is not trusted: pgx reports it also for a connection that died
		// while COMMIT was waiting for its answer.
		return outcomeRetry
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// An ERROR answer means the server rolled back (deferred constraint,
		// serialization failure). A FATAL or PANIC, a shutdown or a lost
		// connection may come after the commit record was written (e.g. a
		// backend terminated while waiting for synchronous replication).
		class := ""
		if len(pgErr.Code) == 5 {
			class = pgErr.Code[:2]
		}
		sev := pgErr.SeverityUnlocalized
		if sev == "" {
			sev = pgErr.Severity
		}
		if sev == "ERROR" && class != "57" && class != "08" && class != "XX" && class != "58" {
			return outcomeDefinite
		}
	}
	return outcomeAmbiguous
}

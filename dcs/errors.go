package dcs

import (
	"context"
	"errors"
)

// Sentinel errors every Store maps its native failures onto. Callers branch on
// them with errors.Is; implementations wrap them with %w to add detail.
var (
	// ErrNotLeader means a leader-only write (refresh, release, /sync, /status,
	// /history, /failsafe) failed its compare on the leader key: the key does not
	// hold this node's name attached to this node's current lease. The caller has
	// lost leadership and must demote.
	ErrNotLeader = errors.New("dcs: not the leader")

	// ErrConflict means a conditional write lost: the key already exists (a
	// create-if-absent race) or its revision is not the one the caller read.
	ErrConflict = errors.New("dcs: conflict")

	// ErrUnavailable means the store could not be reached or did not answer in
	// time. The outcome of a write that returned it is unknown. It is transient.
	ErrUnavailable = errors.New("dcs: unavailable")

	// ErrSessionExpired means the node's lease no longer exists in the store (it
	// expired or was revoked). Keys attached to it are gone; the next
	// KeepAlive grants a new lease.
	ErrSessionExpired = errors.New("dcs: session expired")

	// ErrNoSession means the operation needs a node identity (Name) or a lease
	// and the store has neither: for example a read-only client calling
	// AcquireLeader.
	ErrNoSession = errors.New("dcs: no session")

	// ErrClosed means the Store was closed.
	ErrClosed = errors.New("dcs: store closed")

	// ErrInvalidValue means a value could not be encoded or a stored value could
	// not be decoded. Decoding problems are also reported in Cluster.DecodeErrors
	// with the documented default used in place of the bad value.
	ErrInvalidValue = errors.New("dcs: invalid value")
)

// IsTransient reports whether err is a failure worth retrying with the same
// request: the store was unavailable or the request timed out. Conflicts,
// lost leadership and invalid values are definitive and are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrConflict) || errors.Is(err, ErrClosed) ||
		errors.Is(err, ErrInvalidValue) || errors.Is(err, ErrNoSession) {
		return false
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

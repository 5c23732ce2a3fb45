package etcddcs

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pgha/pgha/dcs"
)

// fail maps an etcd client error onto the dcs sentinels, keeping the original
// error in the chain (errors.Is works on both). ctx is the caller's context:
// a cancellation by the caller is reported as such, not as unavailability.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case s.isClosed():
		return fmt.Errorf("etcddcs: %s: %w", op, dcs.ErrClosed)
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("etcddcs: %s: %w: %w", op, dcs.ErrSessionExpired, err)
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("etcddcs: %s: %w", op, ctx.Err())
	case isUnavailable(err):
		return fmt.Errorf("etcddcs: %s: %w: %w", op, dcs.ErrUnavailable, err)
	case isAuth(err):
		return fmt.Errorf("etcddcs: %s: authentication or permission failure (check Username/Password and the role's permissions on the prefix): %w", op, err)
	}
	return fmt.Errorf("etcddcs: %s: %w", op, err)
}

// isUnavailable reports whether err means etcd could not be reached or did
// not answer in time: worth retrying, outcome of a write unknown.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, clientv3.ErrNoAvailableEndpoints) {
		return true
	}
	for _, e := range []error{
		rpctypes.ErrNoLeader, rpctypes.ErrNotLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable,
		rpctypes.ErrStopped, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrUnhealthy,
		rpctypes.ErrTooManyRequests,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	switch code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// isAuth reports whether err is an authentication or authorization failure.
func isAuth(err error) bool {
	for _, e := range []error{
		rpctypes.ErrAuthFailed, rpctypes.ErrPermissionDenied, rpctypes.ErrInvalidAuthToken,
		rpctypes.ErrAuthOldRevision, rpctypes.ErrUserEmpty, rpctypes.ErrUserNotFound,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	switch code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// code extracts the gRPC code of err, or codes.Unknown.
func code(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}

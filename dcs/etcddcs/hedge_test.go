package etcddcs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func TestHedgeSendsAgainWhileAnAttemptHangs(t *testing.T) {
	var calls, ended atomic.Int32
	v, err := hedge(context.Background(), 10*time.Second, 3, func(ctx context.Context) (int, error) {
		n := calls.Add(1)
		defer ended.Add(1)
		if n == 1 { // the hung member: answers only when cancelled
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return int(n), nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, v, "the second attempt answered")
	require.Equal(t, calls.Load(), ended.Load(), "every attempt returned before hedge did")
}

func TestHedgeRetriesTransientErrorsAtOnce(t *testing.T) {
	var calls atomic.Int32
	start := time.Now()
	v, err := hedge(context.Background(), time.Hour, 3, func(context.Context) (int, error) {
		if calls.Add(1) < 3 {
			return 0, rpctypes.ErrNoLeader
		}
		return 7, nil
	})
	require.NoError(t, err)
	require.Equal(t, 7, v)
	// Not a timing assertion on the machine's speed: without the immediate
	// retry the third attempt would wait two delays of 15 minutes.
	require.Less(t, time.Since(start), 10*time.Minute)
}

func TestHedgeStopsAtAFinalError(t *testing.T) {
	var calls atomic.Int32
	_, err := hedge(context.Background(), time.Hour, 3, func(context.Context) (int, error) {
		calls.Add(1)
		return 0, rpctypes.ErrLeaseNotFound
	})
	require.ErrorIs(t, err, rpctypes.ErrLeaseNotFound)
	require.EqualValues(t, 1, calls.Load(), "a final error is not sent again")
}

func TestHedgeReportsTheLastErrorWhenEveryAttemptFails(t *testing.T) {
	var calls atomic.Int32
	_, err := hedge(context.Background(), time.Hour, 3, func(context.Context) (int, error) {
		calls.Add(1)
		return 0, rpctypes.ErrTimeout
	})
	require.ErrorIs(t, err, rpctypes.ErrTimeout)
	require.EqualValues(t, 3, calls.Load())
}

func TestHedgeHonoursTheTimeoutAndTheCaller(t *testing.T) {
	hang := func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() }
	_, err := hedge(context.Background(), 100*time.Millisecond, 3, hang)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = hedge(ctx, time.Hour, 3, hang)
	require.ErrorIs(t, err, context.Canceled)
}

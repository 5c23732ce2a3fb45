package memdcs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
)

func fakeServer(t *testing.T) (*memdcs.Server, *memdcs.FakeClock, func(name string) *memdcs.Store) {
	clock := memdcs.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := memdcs.NewServer(memdcs.Options{Clock: clock})
	return srv, clock, func(name string) *memdcs.Store {
		s, err := srv.Client(memdcs.ClientConfig{Path: dcs.Path{Scope: "t"}, Name: name})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestLeaseExpiresOnFakeClock(t *testing.T) {
	ctx := context.Background()
	_, clock, client := fakeServer(t)
	a, b := client("a"), client("b")
	l, err := a.KeepAlive(ctx, 10*time.Second)
	require.NoError(t, err)
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)

	clock.Advance(9 * time.Second)
	c, _ := b.Cluster(ctx)
	require.True(t, c.IsLocked(), "still locked 1 s before the deadline")
	require.True(t, clock.Now().Before(l.Deadline()))

	// A renewal moves the deadline.
	l2, err := a.RefreshLeader(ctx)
	require.NoError(t, err)
	require.Equal(t, l.Deadline().Add(9*time.Second), l2.Deadline())
	clock.Advance(9 * time.Second)
	c, _ = b.Cluster(ctx)
	require.True(t, c.IsLocked())

	clock.Advance(time.Second)
	c, _ = b.Cluster(ctx)
	require.False(t, c.IsLocked(), "expired exactly at the deadline")
	require.Equal(t, l2.Deadline(), clock.Now())
}

func TestPartitionHoldsWatchAndFailsCalls(t *testing.T) {
	ctx := context.Background()
	srv, _, client := fakeServer(t)
	a, w := client("a"), client("w")
	ch, err := w.Watch(ctx)
	require.NoError(t, err)

	srv.Partition("w")
	_, err = w.Cluster(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	require.True(t, dcs.IsTransient(err))
	_, err = a.SetConfig(ctx, map[string]any{"n": 1}, dcs.Unconditional)
	require.NoError(t, err, "other nodes are not affected")
	select {
	case ev := <-ch:
		t.Fatalf("a partitioned watch delivered %v", ev)
	case <-time.After(50 * time.Millisecond):
	}
	srv.Heal("w")
	ev := <-ch
	require.Equal(t, "config", ev.Key)
}

func TestFailNextAndDelayNext(t *testing.T) {
	ctx := context.Background()
	srv, clock, client := fakeServer(t)
	a := client("a")
	boom := errors.New("boom")
	srv.FailNext("a", 2, boom)
	_, err := a.AcquireLeader(ctx)
	require.ErrorIs(t, err, boom)
	_, err = a.AcquireLeader(ctx)
	require.ErrorIs(t, err, boom)
	c, _ := a.Cluster(ctx)
	require.False(t, c.IsLocked(), "failed calls change nothing")
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)

	srv.FailNext("a", 1, nil)
	_, err = a.RefreshLeader(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)

	// A delayed refresh reports the time it was sent, not when it landed: the
	// deadline stays conservative.
	srv.DelayNext("a", 1, 3*time.Second)
	sentAt := clock.Now()
	type result struct {
		l   dcs.Lease
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := a.RefreshLeader(ctx)
		done <- result{l, err}
	}()
	select {
	case <-done:
		t.Fatal("delayed call returned before the clock moved")
	case <-time.After(50 * time.Millisecond):
	}
	require.Eventually(t, func() bool {
		clock.Advance(time.Second)
		select {
		case r := <-done:
			require.NoError(t, r.err)
			require.Equal(t, sentAt, r.l.Sent)
			return true
		default:
			return false
		}
	}, 5*time.Second, 10*time.Millisecond)

	// A canceled context ends a delay.
	srv.DelayNext("a", 1, time.Hour)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = a.RefreshLeader(cctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
}

func TestExpireLeaseByName(t *testing.T) {
	ctx := context.Background()
	srv, _, client := fakeServer(t)
	a := client("a")
	require.NoError(t, a.PutMember(ctx, dcs.MemberData{State: "running"}))
	require.True(t, srv.ExpireLease("a"))
	require.False(t, srv.ExpireLease("a"), "nothing left to expire")
	require.False(t, srv.ExpireLeaseID(12345))
	c, _ := a.Cluster(ctx)
	require.Empty(t, c.Members)
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	srv := memdcs.NewServer(memdcs.Options{})
	_, err := srv.Client(memdcs.ClientConfig{})
	require.Error(t, err, "a path without scope is refused")
	a, err := memdcs.New(memdcs.ClientConfig{Path: dcs.Path{Scope: "x"}, Name: "a"})
	require.NoError(t, err)
	defer a.Close()
	_, err = a.KeepAlive(ctx, 0)
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
	_, err = a.SetConfig(ctx, map[string]any{"bad": make(chan int)}, dcs.Unconditional)
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
}

func TestSlowWatcherGetsReset(t *testing.T) {
	ctx := context.Background()
	_, _, client := fakeServer(t)
	a, w := client("a"), client("w")
	ch, err := w.Watch(ctx)
	require.NoError(t, err)
	for i := range 3000 {
		_, err := a.SetConfig(ctx, map[string]any{"n": i}, dcs.Unconditional)
		require.NoError(t, err)
	}
	var last dcs.Event
	resets := 0
	deadline := time.After(5 * time.Second)
	for last.Cluster == nil || last.Cluster.Config.Data["n"] == nil || last.Cluster.Config.Data["n"].(interface{ String() string }).String() != "2999" {
		select {
		case last = <-ch:
			if last.Type == dcs.EventReset {
				resets++
			}
		case <-deadline:
			t.Fatal("watcher never caught up")
		}
	}
	require.GreaterOrEqual(t, resets, 1, "a reader that fell behind gets a reset instead of an unbounded backlog")
}

func TestConfirmFailsWhilePartitioned(t *testing.T) {
	ctx := context.Background()
	srv, _, client := fakeServer(t)
	r := client("r")
	_, err := r.Confirm(ctx)
	require.NoError(t, err)
	srv.Partition("r")
	_, err = r.Confirm(ctx)
	require.ErrorIs(t, err, dcs.ErrUnavailable)
	srv.Heal("r")
	_, err = r.Confirm(ctx)
	require.NoError(t, err)
}

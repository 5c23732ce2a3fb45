package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/pgtest"
)

// E5, deposed-leader writes fenced, at the store level on the real 3-member
// etcd cluster: store A leads, then stops renewing (its agent paused) past
// its lease; store B takes the leader key. A then tries every leader-only
// write and a refresh, first on its expired lease, then after a renewal
// that grants it a new one, then once more after the etcd leader itself
// was paused and replaced (the fence must not depend on which etcd member
// answers). Every attempt must fail with dcs.ErrNotLeader, and the keys
// must still hold B's values.
func TestEtcdE5DeposedLeaderWritesFenced(t *testing.T) {
	skipShort(t)
	ec := newEtcd(t)
	eps := make([]string, 0, 3)
	for _, a := range ec.Endpoints() {
		eps = append(eps, "http://"+a)
	}
	path := dcs.Path{Namespace: "pgha-faultsuite-e5", Scope: "e5"}
	open := func(name string) *etcddcs.Store {
		s, err := etcddcs.New(context.Background(), etcddcs.Config{Endpoints: eps, Path: path, Name: name,
			RetryTimeout: 3 * time.Second, Logger: pgtest.Logger(t, name)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open("a"), open("b")
	ctx := within(t, 2*time.Minute)
	const leaseTTL = 2 * time.Second

	_, err := a.KeepAlive(ctx, leaseTTL)
	require.NoError(t, err)
	_, err = a.AcquireLeader(ctx)
	require.NoError(t, err)
	_, err = a.SetSync(ctx, dcs.SyncState{Leader: "a", Standbys: []string{"b"}}, dcs.Unconditional)
	require.NoError(t, err)
	require.NoError(t, a.SetStatus(ctx, dcs.Status{Optime: 100}))

	// A's agent is paused: no renewal. B waits for the key to go, then
	// takes it and writes its own state.
	_, err = b.KeepAlive(ctx, leaseTTL)
	require.NoError(t, err)
	paused := time.Now()
	var took time.Duration
	for {
		if _, err := b.AcquireLeader(ctx); err == nil {
			took = time.Since(paused)
			break
		} else if !errors.Is(err, dcs.ErrConflict) && !errors.Is(err, dcs.ErrUnavailable) {
			require.NoError(t, err)
		}
		require.Less(t, time.Since(paused), 30*time.Second, "A's lease never expired")
		_, _ = b.KeepAlive(ctx, leaseTTL)
		time.Sleep(100 * time.Millisecond)
	}
	bSync, err := b.SetSync(ctx, dcs.SyncState{Leader: "b", Standbys: []string{"a"}}, dcs.Unconditional)
	require.NoError(t, err)
	require.NoError(t, b.SetStatus(ctx, dcs.Status{Optime: 200}))

	type attempt struct {
		name string
		do   func(context.Context) error
	}
	writes := []attempt{
		{"SetSync", func(ctx context.Context) error {
			_, err := a.SetSync(ctx, dcs.SyncState{Leader: "a", Standbys: []string{"b"}}, dcs.Unconditional)
			return err
		}},
		{"SetSync(IfRevision)", func(ctx context.Context) error {
			_, err := a.SetSync(ctx, dcs.SyncState{Leader: "a"}, dcs.IfRevision(bSync))
			return err
		}},
		{"DeleteSync", func(ctx context.Context) error { return a.DeleteSync(ctx, dcs.Unconditional) }},
		{"SetStatus", func(ctx context.Context) error { return a.SetStatus(ctx, dcs.Status{Optime: 999}) }},
		{"SetHistory", func(ctx context.Context) error {
			return a.SetHistory(ctx, []dcs.HistoryLine{{Timeline: 1, LSN: 1, Reason: "deposed"}})
		}},
		{"SetFailsafe", func(ctx context.Context) error { return a.SetFailsafe(ctx, map[string]string{"a": "x"}) }},
		{"RefreshLeader", func(ctx context.Context) error { _, err := a.RefreshLeader(ctx); return err }},
		{"ReleaseLeader", func(ctx context.Context) error { return a.ReleaseLeader(ctx, &dcs.Status{Optime: 999}) }},
	}
	tried := 0
	try := func(phase string) {
		t.Helper()
		for _, w := range writes {
			// Retry only while etcd itself is unavailable (a paused
			// member); any answer must be the fence's refusal.
			var err error
			require.NoError(t, func() error {
				deadline := time.Now().Add(30 * time.Second)
				for {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					err = w.do(cctx)
					cancel()
					if !errors.Is(err, dcs.ErrUnavailable) || time.Now().After(deadline) {
						return nil
					}
					time.Sleep(100 * time.Millisecond)
				}
			}())
			require.ErrorIs(t, err, dcs.ErrNotLeader, "%s: deposed leader's %s must be fenced", phase, w.name)
			tried++
		}
	}
	try("expired lease")
	_, err = a.KeepAlive(ctx, leaseTTL) // a new lease for A: still not the leader's
	require.NoError(t, err)
	try("new lease")

	el, err := ec.Leader(ctx)
	require.NoError(t, err)
	require.NoError(t, el.Pause())
	var el2 string
	require.NoError(t, func() error {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if m, err := ec.Leader(ctx); err == nil {
				el2 = m.Name
				return nil
			}
		}
		return fmt.Errorf("no new etcd leader after pausing %s", el.Name)
	}())
	// B keeps its lease alive meanwhile (it has only 2 s).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := b.RefreshLeader(ctx); err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "B cannot renew through the other members")
	}
	keep, stopKeep := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		for keep.Err() == nil {
			_, _ = b.RefreshLeader(keep)
			select {
			case <-keep.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	try("etcd leader " + el.Name + " paused, " + el2 + " leads")
	stopKeep()
	<-kept
	require.NoError(t, el.Resume())

	cl, err := b.Cluster(ctx)
	require.NoError(t, err)
	require.NotNil(t, cl.Leader)
	require.Equal(t, "b", cl.Leader.Name)
	require.NotNil(t, cl.Sync)
	require.Equal(t, "b", cl.Sync.Leader, "/sync is B's")
	require.Equal(t, int64(200), cl.Status.Optime, "/status is B's")
	require.Nil(t, cl.Failsafe, "no /failsafe written")
	require.Nil(t, cl.History, "no /history written")
	t.Logf("E5: injected: leader store A stopped renewing; B took the key %s later; A then tried %d leader-only writes "+
		"(SetSync, SetSync on B's revision, DeleteSync, SetStatus, SetHistory, SetFailsafe, RefreshLeader, ReleaseLeader) "+
		"on its expired lease, on a new lease, and with the etcd leader %s paused (%s led); "+
		"verified: every one failed with dcs.ErrNotLeader and the keys hold B's values. "+
		"Not fenced by design: /failover (an operator's key, written by anyone, as in Patroni)",
		took.Round(time.Millisecond), tried, el.Name, el2)
}

package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
)

// The watchdog scenarios (RELIABILITY.md C2 and B5 "with fencer/watchdog"):
// every node drives a watchdog device in required mode, emulated by the
// harness (cluster.Options.Watchdog, cluster.Fencer): when the keepalives
// stop, the harness kills the node's Postgres and agent, as the kernel
// would reset the host. They run on a cluster of their own with ttl=6
// (loop_wait=1, retry_timeout=2) and safety_margin=1s: the nodes arm their
// device with ttl - safety_margin = 5s, which leaves the watchdog 1s before
// the leader key can expire, and fires after the agent's own fence
// (deadline - 1.2s) when only the DCS is lost.
const (
	wdTTL          = 6 * time.Second
	wdSafetyMargin = time.Second
)

// TestWorkloadWatchdog runs C2 (the primary's agent frozen past the ttl)
// and B5 (the primary's agent killed, Postgres orphaned) with the emulated
// watchdog in async mode: the watchdog must kill the old primary's
// Postgres before its lease expires, so there are never two writers, the
// property the no-watchdog B5 (TestWorkloadAsync) shows broken. In the
// default set: about 80 s on two cores, its cluster included.
func TestWorkloadWatchdog(t *testing.T) {
	wlSkipShort(t)
	e := wlNewEnv(t, "async", func(o *cluster.Options) {
		o.Dynamic["ttl"] = int(wdTTL / time.Second)
		o.Dynamic["retry_timeout"] = 2
		o.Watchdog = &cluster.WatchdogOptions{Mode: "required", SafetyMargin: wdSafetyMargin}
	})
	t.Run("C2", func(t *testing.T) { wlWatchdogScenario(t, e, "C2") })
	t.Run("B5", func(t *testing.T) { wlWatchdogScenario(t, e, "B5") })
}

// wdLeaderWatch records the changes of the leader key, as etcd reports
// them to a watch from the test process.
type wdLeaderWatch struct {
	mu     sync.Mutex
	events []wdLeaderEvent
}

type wdLeaderEvent struct {
	at      time.Time
	value   string
	deleted bool
}

// wdWatchLeader watches the leader key from its current revision on, until
// the test ends.
func wdWatchLeader(t *testing.T, c *cluster.Cluster) *wdLeaderWatch {
	t.Helper()
	key := c.Path().Key(dcs.KeyLeader)
	resp, err := c.Etcd().Get(wlWithin(t, 10*time.Second), key)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	wch := c.Etcd().Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1))
	w := &wdLeaderWatch{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for r := range wch {
			now := time.Now()
			w.mu.Lock()
			for _, ev := range r.Events {
				w.events = append(w.events, wdLeaderEvent{at: now, value: string(ev.Kv.Value), deleted: ev.Type == clientv3.EventTypeDelete})
			}
			w.mu.Unlock()
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// change returns when the key naming old was deleted (its lease expired)
// and when another node first put its name in it.
func (w *wdLeaderWatch) change(old string) (deleted, taken time.Time, by string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		switch {
		case ev.deleted && deleted.IsZero():
			deleted = ev.at
		case !ev.deleted && ev.value != old && taken.IsZero():
			taken, by = ev.at, ev.value
		}
	}
	if deleted.IsZero() || taken.IsZero() {
		err = fmt.Errorf("leader key events seen: %d (no deletion, or no new holder, yet)", len(w.events))
	}
	return deleted, taken, by, err
}

// wlWatchdogScenario injects C2 or B5 on the primary of a watchdog cluster
// under the workload, with a client pinned to the old primary too, and
// verifies that the emulated watchdog killed the old Postgres before etcd
// deleted its leader key, before another node took the key and before the
// new primary's first acknowledged write; then restarts the fenced node
// and checks the history: no two writers (I2), no unexpected values,
// convergence.
func wlWatchdogScenario(t *testing.T, e *wlEnv, id string) {
	s := e.begin(t, id)
	p := s.current(t)
	fz := p.Fencer()
	require.NotNil(t, fz, "%s has an emulated watchdog", p.Name)
	want := wdTTL - wdSafetyMargin
	require.NoError(t, cluster.Eventually(wlWithin(t, time.Minute), func(context.Context) error {
		if !fz.Armed() || fz.Timeout() != want {
			return fmt.Errorf("%s's watchdog: armed %v, timeout %s (want %s)", p.Name, fz.Armed(), fz.Timeout(), want)
		}
		return nil
	}), "the primary armed its required watchdog with ttl - safety_margin")
	pm, err := p.PostmasterPID()
	require.NoError(t, err)
	lw := wdWatchLeader(t, e.c)
	stopOld := s.pinnedWriter(p) // a client that stays on the old primary
	defer stopOld()

	// The history's clock, as wall-clock times.
	base := time.Now().Add(-s.h.Since())
	at := s.h.Since()
	atWall := base.Add(at)
	var injected string
	switch id {
	case "C2":
		require.NoError(t, p.Freeze())
		t.Cleanup(func() {
			if p.Frozen() {
				_ = p.Thaw()
			}
		})
		injected = fmt.Sprintf("SIGSTOP of primary %s's agent alone (postmaster %d running) for longer than the ttl (%s)", p.Name, pm, wdTTL)
	case "B5":
		pid := p.PID()
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		require.NoError(t, cluster.Eventually(wlWithin(t, 10*time.Second), func(context.Context) error {
			if p.Running() {
				return fmt.Errorf("agent %d still running", pid)
			}
			return nil
		}))
		_, err := p.PostmasterPID()
		require.NoError(t, err, "the old primary's postmaster %d survives its agent", pm)
		injected = fmt.Sprintf("SIGKILL of primary %s's agent alone (postmaster %d kept running)", p.Name, pm)
	default:
		t.Fatalf("unknown scenario %s", id)
	}

	fire, err := fz.WaitFire(wlWithin(t, 2*time.Minute), atWall)
	require.NoError(t, err, "the emulated watchdog fires")
	require.NoError(t, fire.Err, "the emulated host reset")
	_, err = p.PostmasterPID()
	require.ErrorIs(t, err, cluster.ErrNoPostmaster, "the reset killed the old primary's Postgres")
	require.False(t, p.Running(), "the reset killed the agent")
	oldAcks := s.okCount(p.Name, at)
	require.Positive(t, oldAcks, "the old primary's Postgres went on acknowledging writes until the reset (the fault is real)")

	q := e.waitLeaderChange(t, p)
	require.NoError(t, s.waitOK(wlWithin(t, time.Minute), q.Name, at, 5))
	first, _ := s.firstOK(q.Name, at)
	firstWall := base.Add(first)
	var deleted, taken time.Time
	var by string
	require.NoError(t, cluster.Eventually(wlWithin(t, 30*time.Second), func(context.Context) error {
		var err error
		deleted, taken, by, err = lw.change(p.Name)
		return err
	}))
	require.Equal(t, q.Name, by)

	// The safety property, as orderings (no durations are asserted).
	require.False(t, fire.At.Before(fire.LastKeepalive.Add(fire.Timeout)), "the watchdog fired before its timeout")
	require.True(t, fire.Done.Before(deleted), "the old Postgres was killed (%s) before etcd deleted the leader key (%s)",
		fire.Done.Format("15:04:05.000"), deleted.Format("15:04:05.000"))
	require.True(t, fire.Done.Before(taken), "killed before %s took the leader key", q.Name)
	require.True(t, fire.Done.Before(firstWall), "killed before %s's first acknowledged write", q.Name)
	// An acknowledgement the old primary gave ended before the reset.
	var lastOld time.Time
	for _, op := range s.h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == p.Name && op.Invoke > at {
			if c := base.Add(op.Complete); c.After(lastOld) {
				lastOld = c
			}
		}
	}
	require.True(t, lastOld.Before(firstWall), "the old primary's last ack precedes the new primary's first")

	stopOld()
	// The reset postmaster's parent (the agent) is dead too: PostgreSQL
	// refuses to start while the old pid exists at all, even as a zombie
	// waiting for init to reap it.
	require.NoError(t, cluster.Eventually(wlWithin(t, time.Minute), func(context.Context) error {
		if err := syscall.Kill(pm, 0); err == nil || !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("postmaster %d not reaped yet", pm)
		}
		return nil
	}))
	require.NoError(t, p.Start(wlWithin(t, time.Minute)))
	rewinds := wlRewinds(p)

	o := s.finish(wlExpect{TwoWriters: 0})
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	t.Logf("%s async with the emulated watchdog (required, timeout %s = ttl %s - safety_margin %s): injected %s; the watchdog fired %s after the last keepalive "+
		"and the reset (SIGKILL of %s's Postgres and agent) took %s; the old Postgres had acknowledged %d writes since the fault; "+
		"the reset finished %s before etcd deleted the leader key, %s before %s took it and %s before %s's first acknowledged write "+
		"(fire to new leader key %s, fire to first new ack %s); %s restarted and rejoined (%d pg_rewind runs); "+
		"verified: the watchdog fired and its reset finished before etcd revoked the lease (deleted the leader key), no old-timeline ack after the first new-timeline ack, no two writers, no unexpected values, %s",
		id, fire.Timeout, wdTTL, wdSafetyMargin, injected, ms(fire.Gap), p.Name, ms(fire.Done.Sub(fire.At)), oldAcks,
		ms(deleted.Sub(fire.Done)), ms(taken.Sub(fire.Done)), q.Name, ms(firstWall.Sub(fire.Done)), q.Name,
		ms(taken.Sub(fire.At)), ms(firstWall.Sub(fire.At)), p.Name, wlRewinds(p)-rewinds, o.summary())
}

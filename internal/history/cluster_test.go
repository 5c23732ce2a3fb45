package history_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
)

// TestMain removes the nodeproc build, if any, after every test ran.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cleanupRunner{m})
}

type cleanupRunner struct{ m *testing.M }

func (r cleanupRunner) Run() int {
	defer cluster.RemoveNodeProcForTest()
	return r.m.Run()
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connString(ports []int, attrs string) string {
	hosts := make([]string, len(ports))
	ps := make([]string, len(ports))
	for i, p := range ports {
		hosts[i], ps[i] = "127.0.0.1", fmt.Sprint(p)
	}
	s := fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-history",
		strings.Join(hosts, ","), strings.Join(ps, ","), cluster.SuperuserPassword)
	if attrs != "" {
		s += " target_session_attrs=" + attrs
	}
	return s
}

// waitOKCount waits for n acknowledged writes on node invoked after the
// given time.
func waitOKCount(ctx context.Context, h *history.History, node string, after time.Duration, n int) error {
	return cluster.Eventually(ctx, func(context.Context) error {
		got := 0
		for _, op := range h.Ops() {
			if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%d of %d acknowledged writes on %s", got, n, node)
		}
		return nil
	})
}

// waitOK waits for an acknowledged write on node after the given time.
func waitOK(ctx context.Context, h *history.History, node string, after time.Duration) error {
	return cluster.Eventually(ctx, func(context.Context) error {
		for _, op := range h.Ops() {
			if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after {
				return nil
			}
		}
		return fmt.Errorf("no acknowledged write on %s yet", node)
	})
}

// B4 through the history checker: the workload writes through a multi-host
// read-write connection string and reads from the primary and a replica
// while the primary's node (agent and postmaster) is SIGKILLed; the node is
// restarted and rejoins. Two writers, unexpected values and non-convergence
// fail every variant. The split-brain checker of package cluster runs
// alongside.
//
//   - async: a plain kill. Async replication may lose the unreplicated
//     tail, so lost writes are reported, not failed on.
//   - async with lagging replicas (C4): the primary's walsenders are frozen
//     before the kill, so the writes acknowledged meanwhile exist on the old
//     primary alone. They must be reported lost: this proves the checker
//     sees real losses on a real cluster.
//   - sync with lagging replicas: the same fault in synchronous mode;
//     commits wait for the frozen standby, so none is acknowledged and none
//     may be lost or disappear (I1).
func TestKillPrimaryHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: a 3-node cluster")
	}
	t.Run("async", func(t *testing.T) { killPrimary(t, false, false) })
	t.Run("async lagging replicas", func(t *testing.T) { killPrimary(t, false, true) })
	t.Run("sync lagging replicas", func(t *testing.T) { killPrimary(t, true, true) })
}

func killPrimary(t *testing.T, sync, lagging bool) {
	dyn := map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
	mode := "async"
	if sync {
		dyn["synchronous_mode"] = true
		mode = "sync"
	}
	if lagging {
		mode += " with lagging replicas (walsenders frozen before the kill)"
	}
	c := cluster.NewForTest(within(t, time.Minute), t, cluster.Options{Mode: cluster.Processes, NodeProc: cluster.NodeProcForTest(t),
		Dynamic: dyn, Namespace: "pgha-history-test"})

	p, err := c.WaitStable(within(t, 2*time.Minute))
	require.NoError(t, err)
	if sync {
		// Acknowledged writes are protected once a standby is synchronous.
		require.NoError(t, cluster.Eventually(within(t, time.Minute), func(ctx context.Context) error {
			n, err := p.QueryInt(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")
			if err == nil && n == 0 {
				err = fmt.Errorf("no synchronous standby yet")
			}
			return err
		}))
	}
	split := c.StartChecker()
	splitStopped := false
	t.Cleanup(func() {
		if !splitStopped {
			split.Stop()
		}
	})

	var ports []int
	names := map[int]string{}
	var targets []history.Target
	for _, n := range c.Nodes() {
		ports = append(ports, n.Port())
		names[n.Port()] = n.Name
		targets = append(targets, history.Target{Name: n.Name, ConnString: connString([]int{n.Port()}, "")})
	}
	w := history.Workload{ConnString: connString(ports, "read-write"), ReplicaConnString: connString(ports, "standby"),
		Nodes: names, Writers: 4, Interval: 20 * time.Millisecond}
	require.NoError(t, w.Setup(within(t, 30*time.Second)))
	h := history.NewHistory()
	run, err := w.Start(h)
	require.NoError(t, err)
	stopped := false
	stop := func() {
		if !stopped {
			run.Stop()
			stopped = true
		}
	}
	t.Cleanup(stop)

	ctx := within(t, 5*time.Minute)
	require.NoError(t, waitOK(ctx, h, p.Name, 0))
	time.Sleep(time.Second) // a second of load before the fault, not a wait for a condition
	if lagging {
		frozen, err := p.FreezeWALSenders(ctx)
		require.NoError(t, err)
		frozenAt := h.Since() // writes invoked from now on cannot reach a replica
		require.Len(t, frozen, 2, "two walsenders on the primary")
		if sync {
			time.Sleep(time.Second) // commits now wait for the frozen standby: none can be acknowledged
		} else {
			require.NoError(t, waitOKCount(ctx, h, p.Name, frozenAt, 20), "writes acknowledged by the old primary alone")
		}
	}
	killedAt := h.Since()
	require.NoError(t, p.Kill())
	q, err := c.WaitPrimary(within(t, time.Minute), p)
	require.NoError(t, err)
	require.NoError(t, waitOK(within(t, time.Minute), h, q.Name, killedAt))
	restartedAt := h.Since()
	require.NoError(t, p.Start(ctx))
	s, err := c.WaitStable(within(t, 2*time.Minute))
	require.NoError(t, err)
	rejoined := h.Since() - restartedAt
	require.NoError(t, waitOK(ctx, h, s.Name, h.Since()))
	stop()
	splitReport := split.Stop()
	splitStopped = true

	// Wait for convergence within the rejoin budget (RELIABILITY.md: 30 s,
	// x3 on a slow machine): the cluster can look stable for an instant
	// while a rejoining node still has to find out it diverged. Every
	// attempt that did not converge is logged.
	ops := h.Ops()
	var final history.Final
	var r history.Report
	healed := h.Since()
	for attempt := 1; ; attempt++ {
		if _, err := c.WaitStable(within(t, 2*time.Minute)); err != nil {
			t.Logf("final read %d: %v", attempt, err)
		}
		final, err = history.ReadFinal(within(t, 30*time.Second), w.Table, targets)
		require.NoError(t, err)
		if final.Leader, err = c.Leader(ctx); err != nil {
			t.Fatal(err)
		}
		r = history.Check(ops, final)
		conv := r.Of(history.CheckConvergence)
		if len(conv) == 0 || h.Since()-healed > 90*time.Second {
			break
		}
		t.Logf("final read %d at %s: not converged yet: %v", attempt, h.Since().Round(time.Millisecond), conv)
		time.Sleep(time.Second)
	}
	t.Logf("converged %s after the workload stopped", (h.Since() - healed).Round(time.Millisecond))
	t.Logf("history: %d operations; %s", len(ops), r.Summary())
	for _, v := range r.Violations {
		t.Logf("  %s", v)
	}
	t.Logf("split-brain checker: %s", splitReport)

	keep := func() {
		dir, err := os.MkdirTemp("", "pgha-history-artifact-")
		if err != nil {
			return
		}
		f, err := os.Create(filepath.Join(dir, "history.jsonl"))
		if err != nil {
			return
		}
		_ = history.WriteJSON(f, ops)
		_ = f.Close()
		t.Logf("history kept in %s", f.Name())
	}
	count := r.Count()
	if count[history.CheckTwoWriters]+count[history.CheckUnexpected]+count[history.CheckConvergence] > 0 || len(splitReport.Violations) > 0 {
		keep()
	}
	require.Empty(t, r.Of(history.CheckTwoWriters), "two writers")
	require.Empty(t, r.Of(history.CheckUnexpected), "unexpected values")
	require.Empty(t, r.Of(history.CheckConvergence), "convergence")
	require.Empty(t, splitReport.Violations, "split-brain checker")
	if sync {
		require.Empty(t, r.Of(history.CheckLost), "sync mode: lost acknowledged writes")
		require.Empty(t, r.Of(history.CheckDisappeared), "sync mode: values seen and then gone")
	} else if lagging {
		require.NotEmpty(t, r.Of(history.CheckLost), "the writes acknowledged while the walsenders were frozen existed on the old primary alone")
	}

	// The history is not vacuous: acknowledged writes on both timelines.
	tls := map[int64]bool{}
	for _, op := range ops {
		if op.Kind == history.Write && op.Result == history.OK {
			tls[op.Stamp.Timeline] = true
		}
	}
	require.GreaterOrEqual(t, len(tls), 2, "acknowledged writes on the old and the new timeline")
	require.NotEmpty(t, r.Stats.Gaps)
	g := r.Stats.Gaps[len(r.Stats.Gaps)-1]
	lossNote := "reported: %d lost acknowledged writes, %d disappeared, %d phantom replica reads (allowed in async)"
	switch {
	case sync:
		lossNote = "verified: %d lost acknowledged writes, %d disappeared (must be 0 in sync); reported: %d phantom replica reads"
	case lagging:
		lossNote = "verified: %d lost acknowledged writes (must be > 0: acknowledged by the old primary alone), reported: %d disappeared, %d phantom replica reads (allowed in async)"
	}
	if r.Stats.LostLSNMax > 0 {
		lossNote += fmt.Sprintf(" (lost LSN range %s..%s)", history.FormatLSN(r.Stats.LostLSNMin), history.FormatLSN(r.Stats.LostLSNMax))
	}
	lossNote += fmt.Sprintf("; %d indeterminate writes (%d present, %d absent)", r.Stats.WritesInfo, r.Stats.InfoPresent, r.Stats.InfoAbsent)
	t.Logf("B4 %s: injected SIGKILL of primary %s (agent and postmaster) at %s, restarted it at %s; "+
		"verified: no two writers (server stamps; split-brain checker %d rounds), no unexpected values, "+
		"convergence (one primary %s named by the leader key, replicas streaming on its timeline, equal tables: %d rows); "+
		lossNote+"; write gap tl%d->tl%d %s; %s rejoined %s after its restart",
		mode, p.Name, killedAt.Round(time.Millisecond), restartedAt.Round(time.Millisecond), splitReport.Rounds, s.Name,
		len(final.Nodes[0].Values), count[history.CheckLost], count[history.CheckDisappeared], count[history.CheckPhantom],
		g.From, g.To, (g.First - g.Last).Round(time.Millisecond), p.Name, rejoined.Round(time.Millisecond))
}

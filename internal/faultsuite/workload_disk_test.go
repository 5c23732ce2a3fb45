package faultsuite

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
)

// Disk-full scenarios (RELIABILITY.md I1, I2) on a sync-mode cluster of
// their own whose nodes each keep their data directory on a 512 MiB tmpfs
// (cluster.Options.NodeTmpfsSize). The fault is cluster.Node.FillDisk; a
// WAL pump (pg_logical_emit_message, WAL without heap) on the primary
// makes the filled node need a new 16 MiB WAL segment within seconds
// instead of minutes of the workload's small rows.

const (
	wlDiskSize = 512 << 20
	// wlDiskLeave is what FillDisk leaves free: less than one WAL segment.
	wlDiskLeave = 4 << 20
	// wlPumpMax bounds the WAL one pump writes, so the other nodes' disks
	// never fill.
	wlPumpMax = 160 << 20
)

// TestWorkloadDisk runs I1 (pg_wal full on the primary) and I2 (disk full
// on the synchronous standby) under the history workload, about a minute.
// I2StaleRestartpoint is I2 on a standby whose last restartpoint predates
// the leader's timeline (right after I1's failover). It found a bug, fixed
// in package pg: a replica with no WAL receiver reported the timeline of
// its last restartpoint, so after a failover it looked behind the leader's
// timeline and a healthy replica was run through pg_rewind, in a loop
// while its receiver stayed down (and after each rewind); the replay
// timeline now comes from IDENTIFY_SYSTEM.
func TestWorkloadDisk(t *testing.T) {
	wlSkipShort(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (tmpfs mounts)")
	}
	if err := cluster.CanMountTmpfs(); err != nil {
		t.Skipf("this machine does not let root mount a tmpfs (a restricted container?): %v", err)
	}
	e := wlNewEnv(t, "sync", func(o *cluster.Options) { o.NodeTmpfsSize = wlDiskSize })
	t.Run("I1", func(t *testing.T) { wlI1(t, e) })
	t.Run("I2StaleRestartpoint", func(t *testing.T) {
		wlI2(t, e, true)
	})
	t.Run("I2", func(t *testing.T) { wlI2(t, e, false) })
}

// wlPump writes WAL on a node (1 MiB logical messages, non-transactional:
// no heap, no commit to wait for) until stop is called, an error occurs or
// wlPumpMax bytes were written (wlStartPump starts one).
type wlPump struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	bytes  int64
	err    error
}

func wlStartPump(n *cluster.Node) *wlPump {
	ctx, cancel := context.WithCancel(context.Background())
	p := &wlPump{cancel: cancel}
	p.wg.Go(func() {
		cn, err := n.Connect(ctx)
		if err != nil {
			p.setErr(err)
			return
		}
		defer cn.Close(context.Background())
		for ctx.Err() == nil {
			p.mu.Lock()
			done := p.bytes >= wlPumpMax
			p.mu.Unlock()
			if done {
				return
			}
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cn.Exec(qctx, "SELECT pg_logical_emit_message(false, 'pgha-faultsuite', repeat('x', 1048576))")
			qcancel()
			if err != nil {
				if ctx.Err() == nil {
					p.setErr(err)
				}
				return
			}
			p.mu.Lock()
			p.bytes += 1 << 20
			p.mu.Unlock()
		}
	})
	return p
}

func (p *wlPump) setErr(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// stop ends the pump and returns what it wrote and why it ended.
func (p *wlPump) stop() (int64, error) {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes, p.err
}

// wlLogMarks returns the current size of every node's log, to read what
// they log from now on (wlLogSince).
func wlLogMarks(c *cluster.Cluster) map[string]int64 {
	out := map[string]int64{}
	for _, n := range c.Nodes() {
		if st, err := os.Stat(n.LogFile()); err == nil {
			out[n.Name] = st.Size()
		}
	}
	return out
}

// wlLogSince returns the lines node n logged since the mark.
func wlLogSince(n *cluster.Node, marks map[string]int64) []string {
	b, err := os.ReadFile(n.LogFile())
	if err != nil {
		return nil
	}
	if m := marks[n.Name]; m <= int64(len(b)) {
		b = b[m:]
	}
	return strings.Split(string(b), "\n")
}

// wlSyncSteps counts the synchronous-mode planner's steps (log lines
// with "step=", ha/sync.go) per node and kind since the marks, and
// returns the total and a readable breakdown.
func wlSyncSteps(c *cluster.Cluster, marks map[string]int64) (int, string) {
	total := 0
	var parts []string
	for _, n := range c.Nodes() {
		kinds := map[string]int{}
		for _, l := range wlLogSince(n, marks) {
			i := strings.Index(l, "step=")
			if i < 0 {
				continue
			}
			if k := wlLogValue(l[i+len("step="):]); k != "" {
				kinds[k]++
				total++
			}
		}
		var ks []string
		for k, v := range kinds {
			ks = append(ks, fmt.Sprintf("%s×%d", k, v))
		}
		sort.Strings(ks)
		parts = append(parts, fmt.Sprintf("%s: %s", n.Name, strings.Join(ks, " ")))
	}
	return total, strings.Join(parts, "; ")
}

// wlLogValue returns the value at the start of v (an hclog key's value,
// quoted when it holds spaces).
func wlLogValue(v string) string {
	if strings.HasPrefix(v, `"`) {
		if j := strings.IndexByte(v[1:], '"'); j >= 0 {
			return v[1 : j+1]
		}
	}
	if f := strings.Fields(v); len(f) > 0 {
		return f[0]
	}
	return ""
}

// wlActions counts the actions n logged since the mark ("action=" lines,
// "action failed" apart), as "kind×count" sorted.
func wlActions(n *cluster.Node, marks map[string]int64) string {
	kinds := map[string]int{}
	for _, l := range wlLogSince(n, marks) {
		i := strings.Index(l, "action=")
		if i < 0 || strings.Contains(l, "action=refresh_leader") || strings.Contains(l, "action=none") {
			continue
		}
		k := wlLogValue(l[i+len("action="):])
		if strings.Contains(l, "action failed") {
			k += "(failed)"
		}
		kinds[k]++
	}
	var ks []string
	for k, v := range kinds {
		ks = append(ks, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

// wlCountLines counts n's log lines since the mark that contain s.
func wlCountLines(n *cluster.Node, marks map[string]int64, s string) int {
	got := 0
	for _, l := range wlLogSince(n, marks) {
		if strings.Contains(l, s) {
			got++
		}
	}
	return got
}

// wlPostgresLogCount counts the lines of n's Postgres log that contain s.
func wlPostgresLogCount(n *cluster.Node, s string) int {
	b, _ := os.ReadFile(n.PostgresLogFile())
	return strings.Count(string(b), s)
}

// wlLongestGap returns the longest time between two consecutive
// acknowledged writes completed after the given time (the write outage).
func wlLongestGap(ops []history.Op, after time.Duration) time.Duration {
	var done []time.Duration
	for _, op := range ops {
		if op.Kind == history.Write && op.Result == history.OK && op.Complete > after {
			done = append(done, op.Complete)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	var gap time.Duration
	for i := 1; i < len(done); i++ {
		gap = max(gap, done[i]-done[i-1])
	}
	return gap
}

// wlMaxSyncSteps bounds the synchronous-mode steps all nodes may log
// during one disk-full fault: a failover or a sync reassignment takes a
// handful (names, then /sync, on each change); a loop that clears and
// sets the sync state again takes dozens.
const wlMaxSyncSteps = 12

// wlDiskHold is how long a disk stays full after the cluster reacted
// (failover, sync reassignment): a window to watch for loops, not a
// budget.
const wlDiskHold = 15 * time.Second

// wlCheckpointReplicas runs CHECKPOINT (a restartpoint) on every replica
// of p, so that each one's last restartpoint is on p's timeline.
func wlCheckpointReplicas(t *testing.T, e *wlEnv, p *cluster.Node) {
	for _, r := range e.replicas(p) {
		require.NoError(t, r.Exec(wlWithin(t, time.Minute), "CHECKPOINT"))
	}
}

// wlI1: pg_wal full on the primary.
func wlI1(t *testing.T, e *wlEnv) {
	s := e.begin(t, "I1")
	p := s.current(t)
	sync0, err := wlWaitSync(wlWithin(t, time.Minute), p)
	require.NoError(t, err)
	marks := wlLogMarks(e.c)
	panics0 := wlPostgresLogCount(p, "PANIC")
	at := s.h.Since()
	require.NoError(t, p.FillDisk(wlDiskLeave))
	pump := wlStartPump(p)

	// Observe until another node is the writable leader and acknowledges
	// writes, or for 60 s (an observation window, not a budget): staying
	// fenced is allowed too. Then keep the disk full for wlDiskHold more.
	var q *cluster.Node
	_ = cluster.Eventually(wlWithin(t, 60*time.Second), func(ctx context.Context) error {
		l, err := e.c.Leader(ctx)
		if err != nil {
			return err
		}
		if l == "" || l == p.Name {
			return fmt.Errorf("leader key: %q", l)
		}
		n := e.c.Node(l)
		if n == nil || s.okCount(n.Name, at) == 0 {
			return fmt.Errorf("%s holds the leader key, no write acknowledged there yet", l)
		}
		q = n
		return nil
	})
	reacted := s.h.Since() - at
	pumped, pumpErr := pump.stop()
	time.Sleep(wlDiskHold)
	steps, stepDesc := wlSyncSteps(e.c, marks)
	panics := wlPostgresLogCount(p, "PANIC") - panics0
	actions := wlActions(p, marks)
	var rewinds []string
	for _, n := range e.c.Nodes() {
		rewinds = append(rewinds, fmt.Sprintf("%s×%d", n.Name, wlCountLines(n, marks, "action=rewind")))
	}
	leader, err := e.c.Leader(wlWithin(t, 10*time.Second))
	require.NoError(t, err)
	t.Logf("I1 observed with the disk full (%s): pump wrote %d MiB, ended by %v; %d PANIC lines in %s's Postgres log; %s's actions: %s; leader key %q; failover: %v; sync steps: %d (%s)",
		(s.h.Since() - at).Round(time.Millisecond), pumped>>20, pumpErr, panics, p.Name, p.Name, actions, leader, q != nil, steps, stepDesc)

	outcome, measured := "", ""
	if q != nil {
		require.Equal(t, sync0, q.Name, "failover only to the synchronous standby named before the fault")
		first, _ := s.firstOK(q.Name, at)
		outcome = fmt.Sprintf("failover to the synchronous standby %s (%s's actions with the disk full: %s)", q.Name, p.Name, actions)
		measured = fmt.Sprintf("first new-timeline ack %s after the fill", (first - at).Round(time.Millisecond))
	} else {
		outcome = fmt.Sprintf("no failover within %s: leader key %q (%s's actions: %s)", reacted.Round(time.Millisecond), leader, p.Name, actions)
	}
	require.LessOrEqual(t, steps, wlMaxSyncSteps, "no loop that clears and sets the sync state: %s", stepDesc)

	healAt := s.h.Since()
	require.NoError(t, p.FreeDisk())
	o := s.finish(wlExpect{NoLoss: true, NoDisappeared: true})
	gap := wlLongestGap(o.ops, at-time.Second)
	if measured == "" {
		if first, ok := s.firstOK(p.Name, healAt); ok {
			measured = fmt.Sprintf("%s acknowledged again %s after the disk was freed", p.Name, (first - healAt).Round(time.Millisecond))
		}
	}
	t.Logf("I1 sync: injected FillDisk on primary %s (512 MiB tmpfs, %d MiB left, < one WAL segment) with a WAL pump (%d MiB written; it ended with: %v), "+
		"%d PANIC lines in its Postgres log; %s; %d sync-planner steps with the disk full (%s); pg_rewind runs with the disk full: %s (known bug, see I2StaleRestartpoint); disk freed after %s; "+
		"verified: failover only to the sync standby or none, no sync-state loop (<= %d steps), no acknowledged write lost, no two writers, recovery and %s; "+
		"measured: %s, longest write outage %s",
		p.Name, wlDiskLeave>>20, pumped>>20, pumpErr, panics, outcome, steps, stepDesc, strings.Join(rewinds, " "), (healAt - at).Round(time.Millisecond),
		wlMaxSyncSteps, o.summary(), measured, gap.Round(time.Millisecond))
}

// wlI2: disk full on the synchronous standby. stale leaves the replicas'
// last restartpoints where they are (after I1's failover, on the old
// timeline); otherwise every replica first runs CHECKPOINT.
func wlI2(t *testing.T, e *wlEnv, stale bool) {
	s := e.begin(t, "I2")
	p := s.current(t)
	if !stale {
		wlCheckpointReplicas(t, e, p)
	}
	name, err := wlWaitSync(wlWithin(t, time.Minute), p)
	require.NoError(t, err)
	victim := e.c.Node(name)
	require.NotNil(t, victim)
	marks := wlLogMarks(e.c)
	at := s.h.Since()
	require.NoError(t, victim.FillDisk(wlDiskLeave))
	pump := wlStartPump(p)
	other, err := wlWaitSync(wlWithin(t, 2*time.Minute), p, victim.Name)
	movedAfter := s.h.Since() - at
	pumped, pumpErr := pump.stop()
	require.NoError(t, err, "another node becomes synchronous")
	require.NoError(t, s.waitOK(wlWithin(t, time.Minute), p.Name, s.h.Since(), 10), "writes go on on %s", p.Name)
	time.Sleep(wlDiskHold)
	l, err := e.c.Leader(wlWithin(t, 10*time.Second))
	require.NoError(t, err)
	require.Equal(t, p.Name, l, "no failover")
	steps, stepDesc := wlSyncSteps(e.c, marks)
	actions := wlActions(victim, marks)
	t.Logf("I2 observed with the disk full (%s): %s's actions: %s; sync steps: %d (%s)",
		(s.h.Since() - at).Round(time.Millisecond), victim.Name, actions, steps, stepDesc)
	require.LessOrEqual(t, steps, wlMaxSyncSteps, "no loop that clears and sets the sync state: %s", stepDesc)
	require.Zero(t, wlCountLines(victim, marks, "action=rewind"),
		"no pg_rewind of %s: it streamed on %s's timeline; its actions: %s", victim.Name, p.Name, actions)

	healAt := s.h.Since()
	require.NoError(t, victim.FreeDisk())
	// The victim rejoins: it streams from p again (finish then requires it
	// on p's timeline with an equal table).
	require.NoError(t, cluster.Eventually(wlWithin(t, 2*time.Minute), func(ctx context.Context) error {
		cn, err := p.Connect(ctx)
		if err != nil {
			return err
		}
		defer cn.Close(context.Background())
		rows, err := cn.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, n := range names {
			if n == victim.Name {
				return nil
			}
		}
		return fmt.Errorf("%s does not stream from %s yet (%v)", victim.Name, p.Name, names)
	}), "%s rejoins after FreeDisk; its actions: %s", victim.Name, wlActions(victim, marks))
	rejoined := s.h.Since() - healAt
	o := s.finish(wlExpect{NoLoss: true, NoDisappeared: true})
	require.Empty(t, o.r.Stats.Gaps, "no failover: every acknowledged write on one timeline")
	require.Equal(t, p.Name, o.leader, "no failover")
	gap := wlLongestGap(o.ops, at-time.Second)
	t.Logf("I2 sync: injected FillDisk on the synchronous standby %s (512 MiB tmpfs, %d MiB left) with a WAL pump on %s (%d MiB written; ended with: %v); "+
		"%s became synchronous %s after the fill; %s's actions with the disk full: %s; %d sync-planner steps (%s); "+
		"verified: no failover, no sync-state loop (<= %d steps), no pg_rewind of the standby, writes go on, %s streams again %s after FreeDisk, no acknowledged write lost, no two writers, %s; "+
		"measured: longest write outage %s",
		victim.Name, wlDiskLeave>>20, p.Name, pumped>>20, pumpErr, other, movedAfter.Round(time.Millisecond), victim.Name, actions, steps, stepDesc,
		wlMaxSyncSteps, victim.Name, rejoined.Round(time.Millisecond), o.summary(), gap.Round(time.Millisecond))
}

package faultsuite

// Workload-side fault scenarios (RELIABILITY.md section 2), each checked
// with the internal/history workload and checker: lost acknowledged writes,
// unexpected values, values seen and gone, two writers (from the server's
// stamps) and convergence after healing.
//
// Flags (pass them to this package only, e.g.
// `go test ./internal/faultsuite -run TestWorkload -faultsuite.wlslow`):
//
//	-faultsuite.wlslow     also run the slow workload scenarios
//	                       (TestWorkloadSlowAsync: B4, C4, C3, D1/H1, B6;
//	                       TestWorkloadSlowSync: B4, C3, D1, F1;
//	                       TestWorkloadSlowStrict: C1, B1, B2, B4, B6, C3,
//	                       F1; TestWorkloadRouter: K1, K2;
//	                       TestWorkloadReplicationStall: D6 in sync and
//	                       strict mode). Without it only
//	                       the fast set runs (TestWorkloadAsync: C1, B1, B2,
//	                       F1, B5; TestWorkloadSync: C1, B1, B2, B6, C4, B5;
//	                       TestBootstrap: A1, A2 on fresh clusters of their
//	                       own; TestWorkloadWatchdog: C2, B5 with the
//	                       emulated watchdog, on a cluster of its own, about
//	                       80 s; TestWorkloadDisk: I1, I2 on per-node
//	                       tmpfs, about 70 s), about four and a half to
//	                       five minutes on two cores without those two.
//	                       -faultsuite.slow (see main_test.go)
//	                       turns them on too, with the slow
//	                       DCS-side scenarios.
//	-faultsuite.soak=D     run the seeded random soak R1 (TestWorkloadSoak)
//	                       for D (e.g. 90s); 0 (the default) skips it. CI:
//	                       go test -count=1 -timeout 20m -run TestWorkloadSoak
//	                       ./internal/faultsuite -faultsuite.soak=3m
//	-faultsuite.seed=N     the soak's seed, to replay a failed run (default:
//	                       the clock). The seed is printed at the start and
//	                       in every failure message.
//
// Every scenario shares its cluster with the other scenarios of its mode
// (one 3-node process cluster per mode, ttl=3 loop_wait=1 retry_timeout=1),
// writes its own table, heals what it broke, and ends with a t.Log line that
// says what it injected and what it verified.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
	"github.com/pgha/pgha/internal/pgtest"
)

var (
	wlSlow = flag.Bool("faultsuite.wlslow", false, "also run the slow workload fault scenarios")
	wlSoak = flag.Duration("faultsuite.soak", 0, "run the seeded random soak R1 for this long (0: skip)")
	wlSeed = flag.Int64("faultsuite.seed", 0, "seed of the random soak R1 (0: from the clock)")
)

func wlWithin(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wlConnString(ports []int, attrs string) string {
	hosts := make([]string, len(ports))
	ps := make([]string, len(ports))
	for i, p := range ports {
		hosts[i], ps[i] = "127.0.0.1", fmt.Sprint(p)
	}
	s := fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-faultsuite",
		strings.Join(hosts, ","), strings.Join(ps, ","), cluster.SuperuserPassword)
	if attrs != "" {
		s += " target_session_attrs=" + attrs
	}
	return s
}

// wlEnv is one cluster shared by the scenarios of one replication mode.
type wlEnv struct {
	c       *cluster.Cluster
	mode    string // async, sync, strict
	names   map[int]string
	ports   []int
	targets []history.Target
	seq     atomic.Int64
}

// wlNewEnv starts a 3-node process cluster in the given mode and waits
// until it is stable. Each tune, if any, edits the options first (the
// watchdog scenarios give the nodes an emulated watchdog and a longer ttl).
func wlNewEnv(t *testing.T, mode string, tune ...func(*cluster.Options)) *wlEnv {
	t.Helper()
	dyn := map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
	switch mode {
	case "async":
	case "sync":
		dyn["synchronous_mode"] = true
	case "strict":
		dyn["synchronous_mode"] = true
		dyn["synchronous_mode_strict"] = true
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	opts := cluster.Options{Mode: cluster.Processes, NodeProc: nodeProc(t), Dynamic: dyn, BinDir: pgtest.BinDir(t),
		Namespace: "pgha-faultsuite-wl", Logger: pgtest.Logger(t, "harness")}
	for _, f := range tune {
		f(&opts)
	}
	c, err := cluster.New(wlWithin(t, time.Minute), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	e := &wlEnv{c: c, mode: mode, names: map[int]string{}}
	for _, n := range c.Nodes() {
		e.ports = append(e.ports, n.Port())
		e.names[n.Port()] = n.Name
		e.targets = append(e.targets, history.Target{Name: n.Name, ConnString: wlConnString([]int{n.Port()}, "")})
	}
	_, err = c.WaitStable(wlWithin(t, 3*time.Minute))
	require.NoError(t, err)
	return e
}

func (e *wlEnv) sync() bool { return e.mode != "async" }

// syncStandbys returns the application names of p's synchronous standbys.
func wlSyncStandbys(ctx context.Context, p *cluster.Node) ([]string, error) {
	cn, err := p.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.Close(context.Background())
	rows, err := cn.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum') ORDER BY 1")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// wlWaitSync waits until p has a synchronous standby other than the
// excluded names, and returns it.
func wlWaitSync(ctx context.Context, p *cluster.Node, not ...string) (string, error) {
	var got string
	err := cluster.Eventually(ctx, func(ctx context.Context) error {
		names, err := wlSyncStandbys(ctx, p)
		if err != nil {
			return err
		}
		for _, n := range names {
			excluded := false
			for _, x := range not {
				excluded = excluded || n == x
			}
			if !excluded {
				got = n
				return nil
			}
		}
		return fmt.Errorf("no synchronous standby on %s other than %v (have %v)", p.Name, not, names)
	})
	return got, err
}

// wlReplicas returns the running nodes other than p.
func (e *wlEnv) replicas(p *cluster.Node) []*cluster.Node {
	var out []*cluster.Node
	for _, n := range e.c.Nodes() {
		if n != p && n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// wlExpect says which checks must be empty.
type wlExpect struct {
	// NoLoss: I1, no acknowledged write lost.
	NoLoss bool
	// NoDisappeared: no value seen by a primary read (or acknowledged) and
	// gone later. Not required where a frozen or unfenced old primary shows
	// its locally committed, never acknowledged rows to readers (G5 class).
	NoDisappeared bool
	// TwoWriters: 0 none allowed; 1 some required (a documented expected
	// failure); -1 only reported.
	TwoWriters int
}

// wlScenario is one scenario's workload on a shared cluster.
type wlScenario struct {
	e     *wlEnv
	t     *testing.T
	id    string
	p     *cluster.Node // the primary when the scenario began
	w     history.Workload
	h     *history.History
	run   *history.Running
	split *cluster.Checker

	extraCancel context.CancelFunc
	extraWG     sync.WaitGroup
	extraCtx    context.Context
	extraID     atomic.Int64
	stopped     bool
}

// begin waits for a stable cluster (and, in sync modes, a synchronous
// standby), creates the scenario's table, starts the workload and the
// split-brain checker, and waits for the first acknowledged write.
func (e *wlEnv) begin(t *testing.T, id string) *wlScenario {
	t.Helper()
	p, err := e.c.WaitStable(wlWithin(t, 3*time.Minute))
	require.NoError(t, err)
	if e.sync() {
		_, err := wlWaitSync(wlWithin(t, time.Minute), p)
		require.NoError(t, err)
	}
	var b strings.Builder
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	table := fmt.Sprintf("wl_%s_%d", b.String(), e.seq.Add(1))
	s := &wlScenario{e: e, t: t, id: id, p: p, h: history.NewHistory()}
	s.w = history.Workload{ConnString: wlConnString(e.ports, "read-write"), ReplicaConnString: wlConnString(e.ports, "standby"),
		Table: table, Nodes: e.names, Writers: 4, Interval: 20 * time.Millisecond}
	require.NoError(t, s.w.Setup(wlWithin(t, 30*time.Second)))
	s.extraCtx, s.extraCancel = context.WithCancel(context.Background())
	s.extraID.Store(1 << 40)
	s.run, err = s.w.Start(s.h)
	require.NoError(t, err)
	s.split = e.c.StartChecker()
	t.Cleanup(s.stop)
	require.NoError(t, s.waitOK(wlWithin(t, time.Minute), p.Name, 0, 1))
	time.Sleep(time.Second) // a second of load before the fault, not a wait for a condition
	return s
}

// stop ends the workload, the extra writers and the split-brain checker
// (idempotent) and returns the checker's report.
func (s *wlScenario) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	s.extraCancel()
	s.extraWG.Wait()
	s.run.Stop()
	s.split.Stop()
}

// okCount counts acknowledged writes on node invoked after the given time.
func (s *wlScenario) okCount(node string, after time.Duration) int {
	got := 0
	for _, op := range s.h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after {
			got++
		}
	}
	return got
}

// waitOK waits for n acknowledged writes on node invoked after the given
// time.
func (s *wlScenario) waitOK(ctx context.Context, node string, after time.Duration, n int) error {
	return cluster.Eventually(ctx, func(context.Context) error {
		if got := s.okCount(node, after); got < n {
			return fmt.Errorf("%d of %d acknowledged writes on %s after %s", got, n, node, after.Round(time.Millisecond))
		}
		return nil
	})
}

// firstOK returns the completion of the first acknowledged write on node
// invoked after the given time.
func (s *wlScenario) firstOK(node string, after time.Duration) (time.Duration, bool) {
	for _, op := range s.h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after {
			return op.Complete, true
		}
	}
	return 0, false
}

const wlInsert = `INSERT INTO %s (id, process, node, port, timeline, lsn) VALUES ($1, $2,
	current_setting('cluster_name'), inet_server_port(),
	('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint, pg_current_wal_lsn())
	RETURNING port, timeline, lsn::text`

// pinnedWriter starts a writer that talks to node n alone over a direct
// connection (as a client holding a stale address would, or a client that
// already followed the new leader), recording into the scenario's history
// with ids of its own range. It runs until the scenario stops or the
// returned function is called.
func (s *wlScenario) pinnedWriter(n *cluster.Node) (stop func()) {
	cs := wlConnString([]int{n.Port()}, "")
	ctx, cancel := context.WithCancel(s.extraCtx)
	s.extraWG.Go(func() {
		var cn *pgx.Conn
		defer func() {
			if cn != nil {
				_ = cn.Close(context.Background())
			}
		}()
		process := s.h.NewProcess()
		for ctx.Err() == nil {
			if cn == nil {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				c, err := pgx.Connect(cctx, cs)
				cancel()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				cn = c
			}
			id := s.extraID.Add(1)
			op := history.Op{Process: process, Kind: history.Write, Value: id, Invoke: s.h.Since()}
			octx, cancel := context.WithTimeout(ctx, 2*time.Second)
			op.Result, op.Stamp, op.Err = wlInsertOne(octx, cn, s.w.Table, id, process, s.e.names)
			cancel()
			op.Complete = s.h.Since()
			if ctx.Err() != nil && op.Result == history.Fail {
				return
			}
			s.h.Add(op)
			if op.Result != history.OK {
				_ = cn.Close(context.Background())
				cn = nil
				if op.Result == history.Info {
					process = s.h.NewProcess()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return cancel
}

// wlInsertOne inserts id in one explicit transaction and classifies the
// outcome as package history does: errors before COMMIT fail, an error
// during COMMIT is indeterminate unless the server rolled back.
func wlInsertOne(ctx context.Context, cn *pgx.Conn, table string, id int64, process int, names map[int]string) (history.Result, history.Stamp, string) {
	var st history.Stamp
	tx, err := cn.Begin(ctx)
	if err != nil {
		return history.Fail, st, "begin: " + err.Error()
	}
	var lsn string
	if err := tx.QueryRow(ctx, fmt.Sprintf(wlInsert, table), id, process).Scan(&st.Port, &st.Timeline, &lsn); err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = tx.Rollback(rctx)
		cancel()
		return history.Fail, history.Stamp{}, "insert: " + err.Error()
	}
	st.Node = names[st.Port]
	st.LSN, _ = history.ParseLSN(lsn)
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrTxCommitRollback) || (errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "40")) {
			return history.Fail, st, "commit rolled back: " + err.Error()
		}
		return history.Info, st, "commit: " + err.Error()
	}
	return history.OK, st, ""
}

// wlOutcome is what finish found.
type wlOutcome struct {
	r      history.Report
	final  history.Final
	split  cluster.Report
	ops    []history.Op
	leader string
}

// finish waits for the cluster to be stable, stops the workload, reads the
// final state (retrying until it converged, within the rejoin budget),
// checks the history and asserts what want requires. Convergence and the
// absence of unexpected values are always required.
func (s *wlScenario) finish(want wlExpect) wlOutcome {
	t := s.t
	t.Helper()
	if _, err := s.e.c.WaitStable(wlWithin(t, 3*time.Minute)); err != nil {
		t.Logf("%s: not stable before the final read: %v", s.id, err)
	}
	if q, err := s.e.c.Primary(wlWithin(t, 30*time.Second)); err == nil {
		if err := s.waitOK(wlWithin(t, time.Minute), q.Name, s.h.Since(), 1); err != nil {
			t.Logf("%s: no acknowledged write on %s after healing: %v", s.id, q.Name, err)
		}
	}
	s.extraCancel()
	s.extraWG.Wait()
	s.run.Stop()
	split := s.split.Stop()
	s.stopped = true

	ops := s.h.Ops()
	var out wlOutcome
	healed := s.h.Since()
	for attempt := 1; ; attempt++ {
		if _, err := s.e.c.WaitStable(wlWithin(t, 2*time.Minute)); err != nil {
			t.Logf("%s: final read %d: %v", s.id, attempt, err)
		}
		final, err := history.ReadFinal(wlWithin(t, 30*time.Second), s.w.Table, s.e.targets)
		require.NoError(t, err)
		if final.Leader, err = s.e.c.Leader(wlWithin(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		out.r, out.final = history.Check(ops, final), final
		conv := out.r.Of(history.CheckConvergence)
		if len(conv) == 0 || s.h.Since()-healed > 90*time.Second {
			break
		}
		t.Logf("%s: final read %d: not converged yet: %v", s.id, attempt, conv)
		time.Sleep(time.Second)
	}
	out.split, out.ops, out.leader = split, ops, out.final.Leader
	r := out.r
	t.Logf("%s history: %d operations; %s", s.id, len(ops), r.Summary())
	for i, v := range r.Violations {
		if i == 20 {
			t.Logf("  ... %d more", len(r.Violations)-20)
			break
		}
		t.Logf("  %s", v)
	}
	t.Logf("%s split-brain checker: %s", s.id, split)

	// A commit whose wait for the synchronous standby was cancelled (the
	// client timed out: an indeterminate write) is visible on the old
	// primary at once although no standby has it, and vanishes at the
	// failover: PostgreSQL's behaviour (RELIABILITY.md G5/G6), reported
	// apart, never counted when the write was acknowledged.
	var disappeared []history.Violation
	cancelledGone := 0
	for _, v := range r.Of(history.CheckDisappeared) {
		if infoWrite(ops, v.Value) {
			cancelledGone++
		} else {
			disappeared = append(disappeared, v)
		}
	}
	if cancelledGone > 0 {
		t.Logf("%s: %d values of indeterminate writes (cancelled synchronous waits) seen by reads and gone after the failover (G5, reported)", s.id, cancelledGone)
	}
	count := r.Count()
	bad := count[history.CheckUnexpected]+count[history.CheckConvergence] > 0 ||
		(want.TwoWriters == 0 && (count[history.CheckTwoWriters] > 0 || len(split.Violations) > 0)) ||
		(want.NoLoss && count[history.CheckLost] > 0) || (want.NoDisappeared && len(disappeared) > 0)
	if bad {
		s.keep(ops)
	}
	require.Empty(t, r.Of(history.CheckUnexpected), "%s: unexpected values", s.id)
	require.Empty(t, r.Of(history.CheckConvergence), "%s: convergence", s.id)
	switch want.TwoWriters {
	case 0:
		require.Empty(t, r.Of(history.CheckTwoWriters), "%s: two writers", s.id)
		require.Empty(t, split.Violations, "%s: split-brain checker", s.id)
	case 1:
		require.NotEmpty(t, r.Of(history.CheckTwoWriters), "%s: the documented two-writer window was not witnessed", s.id)
	}
	if want.NoLoss {
		require.Empty(t, r.Of(history.CheckLost), "%s: lost acknowledged writes", s.id)
	}
	if want.NoDisappeared {
		require.Empty(t, disappeared, "%s: values seen and then gone (other than indeterminate writes)", s.id)
	}
	return out
}

// keep writes the history as JSON lines to a directory that outlives the
// test, and logs where.
func (s *wlScenario) keep(ops []history.Op) {
	dir, err := os.MkdirTemp("", "pgha-faultsuite-"+s.w.Table+"-")
	if err != nil {
		return
	}
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return
	}
	_ = history.WriteJSON(f, ops)
	_ = f.Close()
	s.t.Logf("%s: history kept in %s", s.id, f.Name())
}

// summary is the common tail of the closing lines.
func (o wlOutcome) summary() string {
	c := o.r.Count()
	rows := 0
	for _, n := range o.final.Nodes {
		if !n.InRecovery {
			rows = len(n.Values)
		}
	}
	gap := ""
	if g := o.r.Stats.Gaps; len(g) > 0 {
		last := g[len(g)-1]
		gap = fmt.Sprintf("; write gap tl%d->tl%d %s", last.From, last.To, (last.First - last.Last).Round(time.Millisecond))
	}
	return fmt.Sprintf("convergence (one primary %s named by the leader key, replicas streaming on its timeline, equal tables: %d rows); "+
		"%d ok / %d fail / %d info writes; %d lost, %d disappeared, %d phantom, %d two-writer findings (max overlap %s), split-brain checker %d rounds %d findings%s",
		o.leader, rows, o.r.Stats.WritesOK, o.r.Stats.WritesFail, o.r.Stats.WritesInfo, c[history.CheckLost], c[history.CheckDisappeared],
		c[history.CheckPhantom], c[history.CheckTwoWriters], o.r.Stats.MaxOverlap.Round(time.Millisecond), o.split.Rounds, len(o.split.Violations), gap)
}

// wlWALReceiverPID returns the pid of n's WAL receiver.
func wlWALReceiverPID(ctx context.Context, n *cluster.Node) (int, error) {
	pid, err := n.QueryInt(ctx, "SELECT COALESCE((SELECT pid FROM pg_stat_wal_receiver), 0)")
	if err == nil && pid == 0 {
		err = fmt.Errorf("%s has no WAL receiver", n.Name)
	}
	return int(pid), err
}

// wlSignal sends sig to every pid, ignoring those already gone.
func wlSignal(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// wlRewinds counts the pg_rewind runs in n's log so far.
func wlRewinds(n *cluster.Node) int {
	b, _ := os.ReadFile(n.LogFile())
	// The agent logs "running pg_rewind from <leader>" and package pg
	// "running pg_rewind: ..." for the same run: count the agent's.
	return strings.Count(string(b), "running pg_rewind from ")
}

// wlWaitLeaderChange waits until the leader key names a node other than p
// whose Postgres accepts writes (p may still accept writes too), and
// returns it.
func (e *wlEnv) waitLeaderChange(t *testing.T, p *cluster.Node) *cluster.Node {
	t.Helper()
	var q *cluster.Node
	require.NoError(t, cluster.Eventually(wlWithin(t, 2*time.Minute), func(ctx context.Context) error {
		l, err := e.c.Leader(ctx)
		if err != nil {
			return err
		}
		if l == "" || l == p.Name {
			return fmt.Errorf("leader key: %q", l)
		}
		n := e.c.Node(l)
		if n == nil || !n.Writable(ctx) {
			return fmt.Errorf("%s holds the leader key but does not accept writes yet", l)
		}
		q = n
		return nil
	}))
	return q
}

// primaryAfter waits for a writable primary other than p named by the
// leader key.
func (e *wlEnv) primaryAfter(t *testing.T, p *cluster.Node) *cluster.Node {
	t.Helper()
	q, err := e.c.WaitPrimary(wlWithin(t, 2*time.Minute), p)
	require.NoError(t, err)
	return q
}

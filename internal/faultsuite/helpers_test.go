package faultsuite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/history"
	"github.com/pgha/pgha/internal/pgtest"
)

// Programs the suite builds once per test binary; TestMain removes them.
var (
	buildMu   sync.Mutex
	buildDirs []string

	nodeProcOnce sync.Once
	nodeProcPath string
	nodeProcErr  error

	memberOnce sync.Once
	memberPath string
	memberErr  error
)

func buildDir() (string, error) {
	d, err := os.MkdirTemp("", "pgha-faultsuite-")
	if err == nil {
		buildMu.Lock()
		buildDirs = append(buildDirs, d)
		buildMu.Unlock()
	}
	return d, err
}

func cleanupBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, d := range buildDirs {
		_ = os.RemoveAll(d)
	}
	buildDirs = nil
}

// nodeProc builds the nodeproc program once per test binary.
func nodeProc(t *testing.T) string {
	t.Helper()
	nodeProcOnce.Do(func() {
		dir, err := buildDir()
		if err != nil {
			nodeProcErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		nodeProcPath, nodeProcErr = cluster.BuildNodeProc(ctx, dir)
	})
	require.NoError(t, nodeProcErr, "building nodeproc")
	return nodeProcPath
}

// etcdMember builds the etcdmember program once per test binary.
func etcdMember(t *testing.T) string {
	t.Helper()
	memberOnce.Do(func() {
		dir, err := buildDir()
		if err != nil {
			memberErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		memberPath, memberErr = etcdtest.BuildMember(ctx, dir)
	})
	require.NoError(t, memberErr, "building etcdmember")
	return memberPath
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault scenario: starts etcd and PostgreSQL clusters")
	}
}

func requireSlow(t *testing.T) {
	t.Helper()
	if !*slow {
		t.Skip("slow DCS-side scenario: run with -faultsuite.slow")
	}
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Timing of the DCS-side scenarios: the validated shortest profile.
const (
	ttl          = 3 * time.Second
	loopWait     = time.Second
	retryTimeout = time.Second
)

// etcd's raft timing in these scenarios: an election takes 0.5-1 s, below
// retry_timeout, as RELIABILITY.md C5 assumes.
const (
	etcdHeartbeat = 50 * time.Millisecond
	etcdElection  = 500 * time.Millisecond
)

// newEtcd starts a 3-member etcd cluster of separate processes, stopped
// when the test ends.
func newEtcd(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	ec, err := etcdtest.StartCluster(within(t, 2*time.Minute), etcdtest.ClusterOptions{Binary: etcdMember(t),
		Heartbeat: etcdHeartbeat, ElectionTimeout: etcdElection})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := ec.Close(); err != nil {
			t.Errorf("closing etcd: %v", err)
		}
	})
	return ec
}

// env is one 3-node process cluster on a 3-member etcd cluster, shared by
// the scenarios of one replication mode.
type env struct {
	ec      *etcdtest.Cluster
	c       *cluster.Cluster
	mode    string // async or sync
	names   map[int]string
	ports   []int
	targets []history.Target
}

func dynamicConfig(mode string) map[string]any {
	d := map[string]any{"ttl": int(ttl / time.Second), "loop_wait": int(loopWait / time.Second), "retry_timeout": int(retryTimeout / time.Second),
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
	switch mode {
	case "sync":
		d["synchronous_mode"] = true
	case "strict":
		d["synchronous_mode"] = true
		d["synchronous_mode_strict"] = true
	}
	return d
}

// sync reports whether the env runs in synchronous mode (sync or strict).
func (e *env) sync() bool { return e.mode != "async" }

// newEnv starts the etcd cluster and the nodes, and waits until the
// cluster is stable.
func newEnv(t *testing.T, mode string) *env {
	t.Helper()
	ec := newEtcd(t)
	opts := cluster.Options{Mode: cluster.Processes, NodeProc: nodeProc(t), Dynamic: dynamicConfig(mode),
		BinDir: pgtest.BinDir(t), EtcdEndpoints: ec.Endpoints(), Namespace: "pgha-faultsuite-etcd",
		Logger: pgtest.Logger(t, "harness")}
	c, err := cluster.New(within(t, time.Minute), opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, m := range ec.Members { // a node cut off would wait out its timeouts
			if m.Paused() {
				_ = m.Resume()
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	e := &env{ec: ec, c: c, mode: mode, names: map[int]string{}}
	for _, n := range c.Nodes() {
		e.ports = append(e.ports, n.Port())
		e.names[n.Port()] = n.Name
		e.targets = append(e.targets, history.Target{Name: n.Name, ConnString: connString([]int{n.Port()}, "")})
	}
	_, err = c.WaitStable(within(t, 3*time.Minute))
	require.NoError(t, err)
	return e
}

func connString(ports []int, attrs string) string {
	hosts := make([]string, len(ports))
	ps := make([]string, len(ports))
	for i, p := range ports {
		hosts[i], ps[i] = "127.0.0.1", fmt.Sprint(p)
	}
	s := fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-faultsuite-etcd",
		strings.Join(hosts, ","), strings.Join(ps, ","), cluster.SuperuserPassword)
	if attrs != "" {
		s += " target_session_attrs=" + attrs
	}
	return s
}

// run is one scenario on an env: the history workload (writers through a
// multi-host read-write connection string, a primary reader and a replica
// reader) on its own table, and the split-brain Checker.
type run struct {
	t     *testing.T
	e     *env
	id    string
	p     *cluster.Node // the primary when the scenario began
	w     history.Workload
	h     *history.History
	r     *history.Running
	split *cluster.Checker

	stopOnce sync.Once
	splitRep cluster.Report
}

// heal undoes whatever a failed scenario left behind, so the next one on
// the same env starts from a whole cluster: paused or killed etcd members
// run again, every node reaches etcd, frozen nodes run, stopped or killed
// nodes are started.
func (e *env) heal(t *testing.T) {
	for _, m := range e.ec.Members {
		if m.Paused() {
			_ = m.Resume()
		} else if !m.Running() {
			if err := m.Start(); err != nil {
				t.Logf("heal: etcd member %s: %v", m.Name, err)
			}
		}
	}
	for _, n := range e.c.Nodes() {
		n.HealDCS()
		if n.Frozen() {
			_ = n.Thaw()
		}
		if !n.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := n.Start(ctx); err != nil {
				t.Logf("heal: node %s: %v", n.Name, err)
			}
			cancel()
		}
	}
}

// stable waits for a stable cluster and, in sync mode, for a synchronous
// standby, and returns the primary.
func (e *env) stable(t *testing.T) *cluster.Node {
	t.Helper()
	p, err := e.c.WaitStable(within(t, 3*time.Minute))
	require.NoError(t, err)
	if e.sync() {
		require.NoError(t, cluster.Eventually(within(t, time.Minute), func(ctx context.Context) error {
			n, err := p.QueryInt(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")
			if err == nil && n == 0 {
				err = errors.New("no synchronous standby yet")
			}
			if err != nil {
				return err
			}
			// /sync too (a linearizable read, not a watch cache that a
			// paused etcd member may hold back): only a standby it names
			// may be promoted.
			return dcsSyncNamesStandby(ctx, e.c, p.Name)
		}))
	}
	return p
}

// dcsSync reads /sync linearizably (from etcd, not from a watch cache):
// its leader and standbys ("" and nil when the key is absent).
func dcsSync(ctx context.Context, c *cluster.Cluster) (string, []string, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.Etcd().Get(rctx, c.Path().Key(dcs.KeySync))
	if err != nil || len(resp.Kvs) == 0 {
		return "", nil, err
	}
	var st struct {
		Leader      string  `json:"leader"`
		SyncStandby *string `json:"sync_standby"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return "", nil, fmt.Errorf("/sync: %w", err)
	}
	var standbys []string
	if st.SyncStandby != nil && *st.SyncStandby != "" {
		standbys = strings.Split(*st.SyncStandby, ",")
	}
	return st.Leader, standbys, nil
}

// dcsSyncNamesStandby fails unless /sync names leader and at least one
// standby: until then, in synchronous mode, no standby may be promoted
// (the primary may have acknowledged commits while it ran alone), so a
// fault that needs a failover must wait for it.
func dcsSyncNamesStandby(ctx context.Context, c *cluster.Cluster, leader string) error {
	l, standbys, err := dcsSync(ctx, c)
	if err != nil {
		return err
	}
	if l != leader || len(standbys) == 0 {
		return fmt.Errorf("/sync does not name a standby of %s yet (leader %q, standbys %v)", leader, l, standbys)
	}
	return nil
}

// begin waits for a stable cluster (and a synchronous standby in sync
// mode), then starts the workload and the checker and waits for a first
// acknowledged write.
func (e *env) begin(t *testing.T, id string) *run {
	t.Helper()
	t.Cleanup(func() { e.heal(t) })
	p := e.stable(t)
	r := &run{t: t, e: e, id: id, p: p, h: history.NewHistory()}
	r.w = history.Workload{ConnString: connString(e.ports, "read-write"), ReplicaConnString: connString(e.ports, "standby"),
		Table: "h_" + strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(id)), Nodes: e.names, Writers: 3,
		Interval: 20 * time.Millisecond, OpTimeout: 2 * time.Second}
	require.NoError(t, r.w.Setup(within(t, 30*time.Second)))
	r.split = e.c.StartChecker()
	var err error
	r.r, err = r.w.Start(r.h)
	require.NoError(t, err)
	t.Cleanup(r.stop)
	require.NoError(t, r.waitOK(within(t, time.Minute), p.Name, 0), "a first acknowledged write")
	return r
}

func (r *run) stop() {
	r.stopOnce.Do(func() {
		r.r.Stop()
		r.splitRep = r.split.Stop()
	})
}

// waitOK waits for an acknowledged write on node invoked after the given
// time (on the history's clock).
func (r *run) waitOK(ctx context.Context, node string, after time.Duration) error {
	return cluster.Eventually(ctx, func(context.Context) error {
		for _, op := range r.h.Ops() {
			if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after {
				return nil
			}
		}
		return fmt.Errorf("no acknowledged write on %s after %s yet", node, after.Round(time.Millisecond))
	})
}

// outcome is what finish found.
type outcome struct {
	report  history.Report
	split   cluster.Report
	primary string
	rows    int
	ops     int
	// cancelledGone counts values seen by a read and later gone whose
	// write was indeterminate (a cancelled or cut synchronous wait: G5/G6).
	cancelledGone int
	// frozenStale counts values missing from a later read served by the
	// frozen deposed primary (expect.frozen).
	frozenStale int
}

// readOn reports whether one of the ops is a read served by node.
func readOn(ops []history.Op, ids []int, node string) bool {
	for _, op := range ops {
		if slices.Contains(ids, op.ID) && op.Kind != history.Write && op.Stamp.Node == node {
			return true
		}
	}
	return false
}

// infoWrite reports whether value v was written by an indeterminate write.
func infoWrite(ops []history.Op, v int64) bool {
	for _, op := range ops {
		if op.Kind == history.Write && op.Value == v {
			return op.Result == history.Info
		}
	}
	return false
}

// overlap returns, from the split-brain checker's acknowledged writes, the
// window in which an older timeline still acknowledged writes after a newer
// one had: from the first acknowledgement on the newer timeline to the last
// invocation acknowledged on an older one (0 when there is none).
func (o outcome) overlap() time.Duration {
	var worst time.Duration
	for _, n := range o.split.Writes {
		for _, w := range o.split.Writes {
			if w.Timeline < n.Timeline && w.Invoke > n.Complete && w.Invoke-n.Complete > worst {
				worst = w.Invoke - n.Complete
			}
		}
	}
	return worst
}

func (o outcome) String() string {
	c := o.report.Count()
	return fmt.Sprintf("%d ops (%d ok, %d fail, %d info writes), %d rows on converged primary %s; lost %d, disappeared %d, phantom %d, two-writers %d, split-brain checker %d rounds/%d violations",
		o.ops, o.report.Stats.WritesOK, o.report.Stats.WritesFail, o.report.Stats.WritesInfo, o.rows, o.primary,
		c[history.CheckLost], c[history.CheckDisappeared], c[history.CheckPhantom], c[history.CheckTwoWriters],
		o.split.Rounds, len(o.split.Violations)) + o.g5()
}

// g5 notes the tolerated read findings, if any.
func (o outcome) g5() string {
	s := ""
	if o.cancelledGone > 0 {
		s += fmt.Sprintf("; EXPECTED (PostgreSQL, RELIABILITY.md G5/G6): %d values of indeterminate writes (sync wait cancelled by the client's timeout) were read on the old primary and then gone", o.cancelledGone)
	}
	if o.frozenStale > 0 {
		s += fmt.Sprintf("; EXPECTED (frozen-agent limit, no watchdog): %d values the new primary had acknowledged were missing from later primary reads served by the frozen node's Postgres", o.frozenStale)
	}
	return s
}

// expect says which findings finish tolerates.
type expect struct {
	// twoWriters: a documented known limit (a frozen agent without a
	// watchdog in async mode): two writers are reported, not failed on.
	twoWriters bool
	// frozen names a node whose agent the scenario froze while its
	// Postgres ran: its stale primary reads are reported, not failed on.
	frozen string
}

// finish waits for the cluster to be stable with an acknowledged write on
// its primary, stops the workload and the checker, reads the final state
// once it converged (within the rejoin budget, x3), and checks the history.
// Always: no unexpected values, convergence, and (unless want.twoWriters)
// no two writers by either checker. In sync mode also: no lost
// acknowledged write and no value seen and gone.
func (r *run) finish(want expect) outcome {
	t := r.t
	t.Helper()
	s, err := r.e.c.WaitStable(within(t, 3*time.Minute))
	require.NoError(t, err, "the cluster is stable after healing")
	require.NoError(t, r.waitOK(within(t, time.Minute), s.Name, r.h.Since()), "the converged primary acknowledges writes")
	r.stop()
	ops := r.h.Ops()
	var final history.Final
	var rep history.Report
	healed := time.Now()
	for attempt := 1; ; attempt++ {
		if _, err := r.e.c.WaitStable(within(t, 2*time.Minute)); err != nil {
			t.Logf("final read %d: %v", attempt, err)
		}
		final, err = history.ReadFinal(within(t, 30*time.Second), r.w.Table, r.e.targets)
		require.NoError(t, err)
		final.Leader, err = r.e.c.Leader(within(t, 10*time.Second))
		require.NoError(t, err)
		rep = history.Check(ops, final)
		conv := rep.Of(history.CheckConvergence)
		if len(conv) == 0 || time.Since(healed) > 90*time.Second {
			break
		}
		t.Logf("final read %d: not converged yet: %v", attempt, conv)
		time.Sleep(time.Second)
	}
	o := outcome{report: rep, split: r.splitRep, primary: final.Leader, ops: len(ops)}
	for _, n := range final.Nodes {
		if n.Name == final.Leader {
			o.rows = len(n.Values)
		}
	}
	t.Logf("%s history: %s", r.id, rep.Summary())
	shown := map[history.CheckName]int{}
	for _, v := range rep.Violations {
		if shown[v.Check]++; shown[v.Check] <= 5 {
			t.Logf("  %s", v)
		}
	}
	for c, n := range shown {
		if n > 5 {
			t.Logf("  ... %d more %s findings", n-5, c)
		}
	}
	sr := r.splitRep
	if len(sr.Violations) > 5 {
		sr.Violations = append(sr.Violations[:5:5], fmt.Sprintf("... %d more", len(r.splitRep.Violations)-5))
	}
	t.Logf("%s split-brain checker: %s", r.id, sr)
	bad := len(rep.Of(history.CheckUnexpected)) + len(rep.Of(history.CheckConvergence))
	if !want.twoWriters {
		bad += len(rep.Of(history.CheckTwoWriters)) + len(r.splitRep.Violations)
	}
	// A commit whose wait for the synchronous standby was cancelled or cut
	// (the client timed out, the connection died) is visible on the old
	// primary at once although no standby has it: reads may see it and it
	// may vanish at the failover. That is PostgreSQL's documented behaviour
	// (RELIABILITY.md G5/G6, an expected failure in Postgres): such values
	// are counted apart, and only when their write was indeterminate.
	// With want.frozen, the deposed primary's Postgres keeps answering
	// reads as a primary while its agent is frozen (the frozen-agent limit,
	// DESIGN.md): a read there that misses what the new primary already
	// acknowledged is counted apart too.
	var disappeared []history.Violation
	for _, v := range rep.Of(history.CheckDisappeared) {
		switch {
		case infoWrite(ops, v.Value):
			o.cancelledGone++
		case want.frozen != "" && readOn(ops, v.Ops, want.frozen):
			o.frozenStale++
		default:
			disappeared = append(disappeared, v)
		}
	}
	if r.e.sync() {
		bad += len(rep.Of(history.CheckLost)) + len(disappeared)
	}
	if bad > 0 || len(rep.Of(history.CheckTwoWriters)) > 0 {
		r.keep(ops)
	}
	require.Empty(t, rep.Of(history.CheckUnexpected), "unexpected values")
	require.Empty(t, rep.Of(history.CheckConvergence), "convergence")
	if !want.twoWriters {
		require.Empty(t, rep.Of(history.CheckTwoWriters), "two writers (server stamps)")
		require.Empty(t, r.splitRep.Violations, "two writable primaries (split-brain checker)")
	}
	if r.e.sync() {
		require.Empty(t, rep.Of(history.CheckLost), "sync mode: lost acknowledged writes")
		require.Empty(t, disappeared, "sync mode: values seen and then gone (other than indeterminate writes)")
	}
	return o
}

// keep writes the history to a kept directory for a post-mortem.
func (r *run) keep(ops []history.Op) {
	dir, err := os.MkdirTemp("", "pgha-faultsuite-artifact-")
	if err != nil {
		return
	}
	f, err := os.Create(filepath.Join(dir, r.id+".jsonl"))
	if err != nil {
		return
	}
	_ = history.WriteJSON(f, ops)
	_ = f.Close()
	r.t.Logf("history kept in %s", f.Name())
}

// writable polls the nodes' Postgres until d passed and calls check with
// the writable ones each time (every 100 ms).
func writableFor(ctx context.Context, c *cluster.Cluster, d time.Duration, check func(w []*cluster.Node, at time.Duration) error) error {
	start := time.Now()
	for time.Since(start) < d {
		if err := check(c.Writable(ctx), time.Since(start)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func names(ns []*cluster.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

// waitNoneWritable waits until no node's Postgres accepts writes and
// returns how long it took.
func waitNoneWritable(t *testing.T, c *cluster.Cluster, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, cluster.Eventually(within(t, d), func(ctx context.Context) error {
		if w := c.Writable(ctx); len(w) > 0 {
			return fmt.Errorf("still writable: %v", names(w))
		}
		return nil
	}))
	return time.Since(start)
}

// leaderRev reads the leader key and its create revision through the
// harness's etcd client, bounded by 5 s.
func leaderRev(t *testing.T, c *cluster.Cluster) (string, int64) {
	t.Helper()
	var name string
	var rev int64
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		name, rev, err = c.LeaderRevision(ctx)
		return err
	}))
	return name, rev
}

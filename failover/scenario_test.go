package failover_test

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scenarios")

// TestScenarios runs the multi-step stories in testdata/*.txt. Each block is
// one or more commands, a "----" line, and the expected output (until a
// blank line). Run with -rewrite to regenerate the expected output.
//
// Commands (arguments are key=value unless noted):
//
//	config k=v ...           set dynamic configuration (/config)
//	cluster n1 n2 ... lsn=   a healthy cluster: n1 primary and leader, the rest replicas following it
//	node NAME role=primary|replica|stopped|empty lsn= tl= upstream= tags...
//	set NAME k=v ...         change a node (see setField)
//	tick DURATION            advance time; live nodes renew their leases, others' expire
//	step [NAME ...]          decide and apply, node by node (all live nodes when none given)
//	race NAME ...            all decide on the same snapshot, then all apply
//	decide NAME              decide without applying
//	wal NAME +SIZE [REPLICA ...]  the primary writes WAL; the listed replicas receive it
//	kill NAME                agent and Postgres die (SIGKILL of both)
//	crash NAME               Postgres dies, the agent lives
//	start NAME               the agent starts again (fresh memory, new lease)
//	partition NAME / heal NAME   cut / restore the node's DCS traffic
//	failover leader= candidate= at=+DURATION   write /failover; "failover clear" clears it
//	status optime=           overwrite /status
//	show                     print the DCS state and every node
//
// After every applied decision the world is checked for two writable
// primaries; a violation fails the test.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

type block struct {
	pre      []string // comments and blank lines before the commands
	cmds     []string
	expected []string
	line     int
}

func parseScenario(t *testing.T, path string) []block {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var blocks []block
	var cur block
	state := 0 // 0: before commands, 1: commands, 2: output
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch state {
		case 0:
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
				cur.pre = append(cur.pre, line)
				continue
			}
			cur.cmds, cur.line, state = []string{line}, n, 1
		case 1:
			if line == "----" {
				state = 2
				continue
			}
			cur.cmds = append(cur.cmds, line)
		case 2:
			if strings.TrimSpace(line) == "" {
				blocks = append(blocks, cur)
				cur, state = block{}, 0
				continue
			}
			cur.expected = append(cur.expected, line)
		}
	}
	require.NoError(t, sc.Err())
	require.NotEqual(t, 1, state, "%s: block at line %d has no ---- line", path, cur.line)
	if state == 2 {
		blocks = append(blocks, cur)
	}
	// trailing comments are kept in a block without commands
	if state == 0 && len(cur.pre) > 0 {
		blocks = append(blocks, block{pre: cur.pre})
	}
	return blocks
}

func runScenario(t *testing.T, path string) {
	blocks := parseScenario(t, path)
	w := newWorld(t)
	var out strings.Builder
	for _, b := range blocks {
		for _, p := range b.pre {
			out.WriteString(p + "\n")
		}
		if len(b.cmds) == 0 {
			continue
		}
		w.out.Reset()
		for _, c := range b.cmds {
			w.run(c)
		}
		got := strings.TrimRight(w.out.String(), "\n")
		if got == "" {
			got = "ok"
		}
		out.WriteString(strings.Join(b.cmds, "\n") + "\n----\n" + got + "\n\n")
		if !*rewrite {
			require.Equal(t, strings.Join(b.expected, "\n"), got, "%s:%d: %s", path, b.line, strings.Join(b.cmds, "; "))
		}
	}
	if *rewrite {
		require.NoError(t, os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644))
	}
}

// ---- the simulated world ----

const margin = 2 * time.Second // fence margin before the lease deadline

type simNode struct {
	l          failover.Local
	up         bool // the agent runs and decides
	dcsOK      bool
	renewed    time.Time // last lease renewal (Sent)
	diverged   bool      // answer to a divergence check
	startMode  string    // ok, fail, slow
	checkpoint bool      // post-promote checkpoint pending
}

type world struct {
	t       *testing.T
	now     time.Time
	rev     int64
	cfg     map[string]any
	leader  *dcs.Leader
	init    *dcs.Initialize
	fo      *dcs.Failover
	status  dcs.Status
	history *dcs.History
	nodes   map[string]*simNode
	order   []string
	out     strings.Builder
	leases  int64
	nextSys int
}

func newWorld(t *testing.T) *world {
	return &world{t: t, now: t0, rev: 1, cfg: map[string]any{}, nodes: map[string]*simNode{}, leases: 1000}
}

func (w *world) printf(format string, args ...any) { fmt.Fprintf(&w.out, format+"\n", args...) }

func (w *world) bump() int64 { w.rev++; return w.rev }

func (w *world) dyn() dcs.DynamicConfig { return dcs.ParseDynamicConfig(w.cfg) }

func (w *world) node(name string) *simNode {
	n, ok := w.nodes[name]
	require.True(w.t, ok, "no node %q", name)
	return n
}

func (w *world) addNode(name string) *simNode {
	if n, ok := w.nodes[name]; ok {
		return n
	}
	w.leases++
	n := &simNode{up: true, dcsOK: true, renewed: w.now, startMode: "ok",
		l: failover.Local{Name: name, LeaseID: w.leases, BootstrapAllowed: true}}
	w.nodes[name] = n
	w.order = append(w.order, name)
	return n
}

func (w *world) leaseAlive(n *simNode) bool {
	return n.l.LeaseID != 0 && w.now.Before(n.renewed.Add(w.dyn().TTL))
}

// snapshot is the DCS as node viewer sees it.
func (w *world) snapshot() *dcs.Cluster {
	c := &dcs.Cluster{Revision: w.rev, Initialize: w.init, Failover: w.fo, Status: w.status, History: w.history}
	if len(w.cfg) > 0 {
		c.Config = &dcs.Config{Data: w.cfg, ModRevision: 3}
	}
	for _, name := range w.order {
		n := w.nodes[name]
		if !w.leaseAlive(n) {
			continue
		}
		c.Members = append(c.Members, dcs.Member{Name: name, Lease: n.l.LeaseID, ModRevision: w.rev, Data: w.memberData(n)})
	}
	sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
	if w.leader != nil {
		l := *w.leader
		if m, ok := c.Member(l.Name); ok {
			l.Member = m
		} else {
			l.Member = dcs.Member{Name: l.Name}
		}
		c.Leader = &l
	}
	return c
}

func (w *world) memberData(n *simNode) dcs.MemberData {
	l := n.l
	d := dcs.MemberData{ConnURL: "postgres://" + l.Name + ":5432/postgres", APIURL: "http://" + l.Name + ":8008/patroni",
		State: l.State, Role: l.Role, Tags: l.Tags, Timeline: l.Timeline}
	if l.Running {
		p := l.Position()
		d.XLogLocation = &p
	}
	if n.checkpoint {
		d.CheckpointAfterPromote = ptr(false)
	}
	return d
}

func (w *world) peerOf(name string) failover.Peer {
	n, ok := w.nodes[name]
	if !ok || !n.up {
		return failover.Peer{Name: name, Err: "connection refused"}
	}
	l := n.l
	p := failover.Peer{Name: name, Reachable: true, Role: l.Role, State: l.State, InRecovery: true, Timeline: l.Timeline, Tags: l.Tags}
	if l.Running && !l.InRecovery {
		p.InRecovery, p.Location = false, l.FlushLSN
	} else if l.Running {
		p.ReceivedLocation, p.ReplayedLocation = l.ReceiveLSN, l.ReplayLSN
	}
	return p
}

// decide runs Decide for a node, resolving probe and divergence requests
// the way ha will, and prints every decision.
func (w *world) decide(name string) failover.Decision {
	n := w.node(name)
	if !n.up {
		w.printf("%s: (down)", name)
		return failover.Decision{}
	}
	snap := w.snapshot()
	in := failover.Input{Cluster: snap, DCSReachable: n.dcsOK, Config: w.dyn(), Local: n.l, Now: w.now}
	// The lease keeper's view: the key is on my lease and the deadline
	// minus the margin has not passed.
	in.Local.LeaderValid = w.leader != nil && w.leader.Name == name && w.leader.Lease == n.l.LeaseID &&
		w.now.Before(n.renewed.Add(w.dyn().TTL-margin))
	if !n.dcsOK {
		in.Cluster = nil
	}
	var d failover.Decision
	for range 4 {
		d = failover.Decide(in)
		switch d.Action {
		case failover.ActionProbePeers:
			var names []string
			in.Peers = []failover.Peer{}
			for _, p := range d.Probe {
				names = append(names, p.Name)
				in.Peers = append(in.Peers, w.peerOf(p.Name))
			}
			w.printf("%s: probe_peers [%s]", name, strings.Join(names, " "))
			continue
		case failover.ActionCheckDivergence:
			in.Local.Divergence = failover.DivergenceNone
			if n.diverged {
				in.Local.Divergence = failover.DivergenceFound
			}
			w.printf("%s: check_divergence target=%s -> %s", name, d.Target, in.Local.Divergence)
			continue
		}
		break
	}
	w.printf("%s: %s", name, d)
	n.l.Memory = d.Memory
	n.l.Result = nil
	n.l.Divergence = failover.DivergenceUnknown
	return d
}

// apply carries out a decision in the simulated world, as ha would.
func (w *world) apply(name string, d failover.Decision) {
	n := w.node(name)
	l := &n.l
	say := func(format string, args ...any) { w.printf("  -> "+format, args...) }
	holds := func() bool { return w.leader != nil && w.leader.Name == name && w.leader.Lease == l.LeaseID }
	release := func(withStatus bool) {
		if holds() {
			w.leader = nil
			if withStatus {
				w.status = dcs.Status{Optime: l.Position(), ModRevision: w.bump()}
			}
			w.bump()
			say("leader key released")
		}
	}
	asReplica := func(upstream string) {
		p := l.Position()
		l.Running, l.InRecovery, l.State, l.Role, l.Upstream, l.StandbySignal = true, true, failover.StateRunning, dcs.RoleReplica, upstream, true
		l.ReceiveLSN, l.ReplayLSN = max(p, l.ReceiveLSN, l.FlushLSN), max(p, l.ReplayLSN, l.FlushLSN)
		l.ControlState = failover.ControlInArchiveRecovery
		w.followTimeline(n)
	}
	if d.SetInitialize && (w.init == nil && d.InitializeRevision == 0 || w.init != nil && w.init.ModRevision == d.InitializeRevision) {
		w.init = &dcs.Initialize{SysID: l.SysID, ModRevision: w.bump()}
		say("/initialize = %s", l.SysID)
	}
	if d.WriteConfig {
		say("/config written")
	}
	switch d.Action {
	case failover.ActionRefreshLeader, failover.ActionClearFailover:
		n.checkpoint = false
		if l.IsPrimary() && w.status.Optime != l.FlushLSN {
			w.status = dcs.Status{Optime: l.FlushLSN, ModRevision: w.bump()}
			say("/status optime=%s", lsn(l.FlushLSN))
		}
	case failover.ActionAcquireLeader:
		if w.leader != nil {
			say("lost the race to %s", w.leader.Name)
			break
		}
		r := w.bump()
		w.leader = &dcs.Leader{Name: name, CreateRevision: r, ModRevision: r, Lease: l.LeaseID}
		n.renewed = w.now
		say("leader key acquired (rev %d)", r)
	case failover.ActionPromote:
		tl := l.Timeline
		h := &dcs.History{Valid: true, ModRevision: w.bump()}
		if w.history != nil {
			h.Lines = slices.Clone(w.history.Lines)
		}
		h.Lines = append(h.Lines, dcs.HistoryLine{Timeline: tl, LSN: l.Position(), Reason: "no recovery target specified", NewLeader: name})
		w.history = h
		l.FlushLSN = l.Position()
		l.Running, l.InRecovery, l.Role, l.Upstream, l.StandbySignal, l.Timeline = true, false, dcs.RolePrimary, "", false, tl+1
		l.ControlState = failover.ControlInProduction
		n.checkpoint = true
		for _, other := range w.order {
			if o := w.nodes[other]; o.l.Running && o.l.InRecovery && o.l.Upstream == name {
				w.followTimeline(o)
			}
		}
		say("promoted: timeline %d at %s", l.Timeline, lsn(l.FlushLSN))
	case failover.ActionDemote:
		switch d.DemoteMode {
		case failover.DemoteOffline:
			asReplica("")
			say("stopped fast, restarted read-only without upstream; leader key kept")
		case failover.DemoteGraceful:
			// Candidates streaming from me receive the shutdown checkpoint.
			for _, other := range w.order {
				o := w.nodes[other]
				if o.up && o.l.Running && o.l.InRecovery && o.l.Upstream == name {
					o.l.ReceiveLSN, o.l.ReplayLSN = l.FlushLSN, l.FlushLSN
				}
			}
			release(true)
			asReplica(d.Target)
			say("checkpoint, stopped fast; now a replica of %q", d.Target)
		default:
			if d.DemoteMode.ReleasesKey() {
				release(false)
			}
			asReplica(d.Target)
			say("stopped immediately; now a replica of %q", d.Target)
		}
	case failover.ActionRestartPrimary:
		switch n.startMode {
		case "fail":
			l.Running, l.State = false, failover.StateStartFailed
			say("start failed")
		case "slow":
			l.Running, l.InRecovery, l.State = true, false, failover.StateStarting
			say("starting (slow)")
		default:
			l.Running, l.InRecovery, l.State, l.ControlState = true, false, failover.StateRunning, failover.ControlInProduction
			say("started as primary")
		}
	case failover.ActionReleaseLeader:
		if l.Running && !l.InRecovery {
			l.Running, l.State = false, failover.StateStopped
		}
		release(false)
	case failover.ActionStartAsReplica:
		asReplica(d.Target)
		say("started read-only, upstream %q", d.Target)
	case failover.ActionFollow:
		l.Upstream = d.Target
		w.followTimeline(n)
		say("upstream %q", d.Target)
	case failover.ActionCrashRecovery:
		if l.StandbySignal {
			l.ControlState = failover.ControlShutDownInRecovery
		} else {
			l.ControlState = failover.ControlShutDown
		}
		say("single-user crash recovery: %s", l.ControlState)
	case failover.ActionRewind:
		src := w.node(d.Target).l
		l.Running, l.State, l.Timeline = false, failover.StateStopped, src.Timeline
		l.ControlState, l.StandbySignal = failover.ControlShutDownInRecovery, true
		l.FlushLSN, l.ReceiveLSN, l.ReplayLSN = 0, src.Position(), src.Position()
		n.diverged = false
		l.Result = &failover.Result{Action: failover.ActionRewind}
		say("pg_rewind from %s done", d.Target)
	case failover.ActionClone, failover.ActionReinitialize:
		src := w.node(d.Target).l
		l.DataDirEmpty, l.SysID, l.Timeline = false, w.init.SysID, src.Timeline
		l.FlushLSN, l.ReceiveLSN, l.ReplayLSN = 0, src.Position(), src.Position()
		n.diverged = false
		asReplica(w.snapshot().LeaderName())
		l.Result = &failover.Result{Action: d.Action}
		say("cloned from %s; streaming from %q", d.Target, l.Upstream)
	case failover.ActionBootstrap:
		if w.init != nil {
			say("failed to acquire initialize lock")
			break
		}
		w.nextSys++
		sys := fmt.Sprintf("73%017d", w.nextSys)
		w.init = &dcs.Initialize{SysID: sys, ModRevision: w.bump()}
		l.DataDirEmpty, l.SysID, l.Timeline, l.FlushLSN = false, sys, 1, 0x1000000
		l.Running, l.InRecovery, l.State, l.Role = true, false, failover.StateRunning, dcs.RolePrimary
		l.ControlState = failover.ControlInProduction
		r := w.bump()
		w.leader = &dcs.Leader{Name: name, CreateRevision: r, ModRevision: r, Lease: l.LeaseID}
		w.history = &dcs.History{Valid: true, ModRevision: w.bump()}
		if len(w.cfg) == 0 {
			w.cfg["ttl"] = 30
		}
		say("initdb done, /initialize = %s, leader key taken (rev %d)", sys, r)
	case failover.ActionCancelAsync:
		l.Async = failover.ActionNone
		say("cancelled")
	case failover.ActionRefuse:
		say("refused")
	}
	if d.ClearFailover && w.fo != nil && w.fo.ModRevision == d.FailoverRevision {
		w.fo = nil
		w.bump()
		say("/failover cleared")
	}
	w.checkPrimaries()
}

// followTimeline: a replica that has not diverged follows its upstream
// primary onto its timeline.
func (w *world) followTimeline(n *simNode) {
	up, ok := w.nodes[n.l.Upstream]
	if ok && !n.diverged && up.l.Running && !up.l.InRecovery && up.l.Timeline > n.l.Timeline {
		n.l.Timeline = up.l.Timeline
	}
}

// checkPrimaries: never two writable primaries.
func (w *world) checkPrimaries() {
	var ps []string
	for _, name := range w.order {
		l := w.nodes[name].l
		if l.Running && !l.InRecovery {
			ps = append(ps, name)
		}
	}
	if len(ps) > 1 {
		w.printf("!! two writable primaries: %s", strings.Join(ps, ", "))
		w.t.Errorf("two writable primaries at %s: %v", w.now, ps)
	}
}

func (w *world) tick(d time.Duration) {
	w.now = w.now.Add(d)
	for _, name := range w.order {
		n := w.nodes[name]
		if n.up && n.dcsOK {
			n.renewed = w.now
		}
	}
	if w.leader != nil {
		for _, name := range w.order {
			n := w.nodes[name]
			if n.l.LeaseID == w.leader.Lease && !w.leaseAlive(n) {
				w.printf("lease of %s expired: leader key deleted", name)
				w.leader = nil
				w.bump()
				break
			}
		}
	}
}

func (w *world) run(cmd string) {
	f := strings.Fields(cmd)
	args := f[1:]
	switch f[0] {
	case "config":
		for k, v := range kv(args) {
			w.cfg[k] = parseValue(v)
		}
	case "cluster":
		var names []string
		opts := map[string]string{}
		for _, a := range args {
			if k, v, ok := strings.Cut(a, "="); ok {
				opts[k] = v
			} else {
				names = append(names, a)
			}
		}
		p := pos
		if v, ok := opts["lsn"]; ok {
			p = parseLSN(w.t, v)
		}
		w.init = &dcs.Initialize{SysID: sysID, ModRevision: w.bump()}
		w.history = &dcs.History{Valid: true, ModRevision: w.bump()}
		if len(w.cfg) == 0 {
			w.cfg["ttl"] = 30
		}
		for i, name := range names {
			n := w.addNode(name)
			if i == 0 {
				n.l = primary(name, p)
			} else {
				n.l = replica(name, p)
				n.l.Upstream = names[0]
			}
			n.l.Name, n.l.LeaseID, n.l.LeaderValid = name, w.leases, false
		}
		r := w.bump()
		w.leader = &dcs.Leader{Name: names[0], CreateRevision: r, ModRevision: r, Lease: w.nodes[names[0]].l.LeaseID}
		w.status = dcs.Status{Optime: p, ModRevision: w.bump()}
	case "node":
		name := args[0]
		n := w.addNode(name)
		lease := n.l.LeaseID
		o := kv(args[1:])
		p := pos
		if v, ok := o["lsn"]; ok {
			p = parseLSN(w.t, v)
		}
		switch o["role"] {
		case "primary":
			n.l = primary(name, p)
		case "stopped":
			n.l = stopped(name)
		case "empty":
			n.l = empty(name)
		default:
			n.l = replica(name, p)
		}
		n.l.LeaseID, n.l.LeaderValid = lease, false
		delete(o, "role")
		delete(o, "lsn")
		w.set(n, o)
	case "set":
		w.set(w.node(args[0]), kv(args[1:]))
	case "tick":
		d, err := time.ParseDuration(args[0])
		require.NoError(w.t, err)
		w.tick(d)
		w.printf("t=+%s", w.now.Sub(t0))
	case "step":
		names := args
		if len(names) == 0 {
			for _, name := range w.order {
				if w.nodes[name].up {
					names = append(names, name)
				}
			}
		}
		for _, name := range names {
			d := w.decide(name)
			if w.node(name).up {
				w.apply(name, d)
			}
		}
	case "race":
		// Everyone decides on the same snapshot, then all act: a real race.
		ds := make([]failover.Decision, len(args))
		for i, name := range args {
			ds[i] = w.decide(name)
		}
		for i, name := range args {
			w.apply(name, ds[i])
		}
	case "decide":
		w.decide(args[0])
	case "wal":
		n := w.node(args[0])
		size := parseLSN(w.t, strings.TrimPrefix(args[1], "+"))
		n.l.FlushLSN += size
		for _, r := range args[2:] {
			rn := w.node(r)
			rn.l.ReceiveLSN, rn.l.ReplayLSN = n.l.FlushLSN, n.l.FlushLSN
		}
	case "kill":
		n := w.node(args[0])
		n.up = false
		w.stopPG(n)
	case "crash":
		w.stopPG(w.node(args[0]))
	case "start":
		n := w.node(args[0])
		w.leases++
		n.up, n.dcsOK, n.renewed = true, true, w.now
		n.l.LeaseID, n.l.Memory, n.l.Async, n.l.Result = w.leases, failover.Memory{}, failover.ActionNone, nil
	case "partition":
		w.node(args[0]).dcsOK = false
	case "heal":
		w.node(args[0]).dcsOK = true
	case "failover":
		if len(args) == 1 && args[0] == "clear" {
			w.fo = nil
			w.bump()
			break
		}
		o := kv(args)
		f := &dcs.Failover{Leader: o["leader"], Candidate: o["candidate"], ModRevision: w.bump()}
		if at, ok := o["at"]; ok {
			d, err := time.ParseDuration(strings.TrimPrefix(at, "+"))
			require.NoError(w.t, err)
			f.ScheduledAt = w.now.Add(d)
		}
		w.fo = f
	case "status":
		o := kv(args)
		w.status = dcs.Status{Optime: parseLSN(w.t, o["optime"]), ModRevision: w.bump()}
		if r, ok := o["rev"]; ok {
			w.status.ModRevision, _ = strconv.ParseInt(r, 10, 64)
		}
	case "show":
		w.show()
	default:
		w.t.Fatalf("unknown command %q", cmd)
	}
}

func (w *world) stopPG(n *simNode) {
	l := &n.l
	if !l.Running {
		return
	}
	if l.InRecovery {
		l.ControlState = failover.ControlInArchiveRecovery
	} else {
		l.ControlState = failover.ControlInProduction
	}
	l.Running, l.State = false, failover.StateCrashed
}

func (w *world) set(n *simNode, o map[string]string) {
	l := &n.l
	for k, v := range o {
		switch k {
		case "lsn":
			p := parseLSN(w.t, v)
			if l.InRecovery {
				l.ReceiveLSN, l.ReplayLSN = p, p
			} else {
				l.FlushLSN = p
			}
		case "tl":
			l.Timeline, _ = strconv.ParseInt(v, 10, 64)
		case "upstream":
			l.Upstream = v
		case "state":
			l.State = v
			if v == failover.StateRunning {
				l.Running = true
			}
		case "canrewind":
			l.CanRewind = v == "true"
		case "removedata":
			l.RemoveDataOnDivergence = v == "true"
		case "diverged":
			n.diverged = v == "true"
		case "start":
			n.startMode = v
		case "sysid":
			l.SysID = v
		case "nofailover", "failover_priority", "clonefrom", "replicatefrom", "nostream":
			if l.Tags == nil {
				l.Tags = dcs.Tags{}
			}
			l.Tags[k] = parseValue(v)
		default:
			w.t.Fatalf("unknown node field %q", k)
		}
	}
}

func (w *world) show() {
	c := w.snapshot()
	leader := "none"
	if c.Leader != nil {
		leader = fmt.Sprintf("%s (rev %d)", c.Leader.Name, c.Leader.CreateRevision)
	}
	w.printf("leader: %s; timeline %d; /status optime=%s rev %d", leader, c.Timeline(), lsn(c.Status.Optime), c.Status.ModRevision)
	if w.fo != nil {
		at := ""
		if !w.fo.ScheduledAt.IsZero() {
			at = " at=+" + w.fo.ScheduledAt.Sub(t0).String()
		}
		w.printf("/failover: leader=%q candidate=%q%s", w.fo.Leader, w.fo.Candidate, at)
	}
	for _, name := range w.order {
		n := w.nodes[name]
		l := n.l
		role := "stopped"
		switch {
		case l.DataDirEmpty:
			role = "empty"
		case l.Running && !l.InRecovery:
			role = "primary"
		case l.Running:
			role = "replica of " + strconv.Quote(l.Upstream)
		}
		flags := ""
		if !n.up {
			flags += " [down]"
		}
		if !n.dcsOK {
			flags += " [partitioned]"
		}
		w.printf("  %s: %s tl=%d lsn=%s%s", name, role, l.Timeline, lsn(l.Position()), flags)
	}
}

func kv(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func parseValue(v string) any {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	return v
}

// parseLSN accepts X/Y (hex), decimal, or a size like 5MB or 512kB.
func parseLSN(t *testing.T, s string) int64 {
	if hi, lo, ok := strings.Cut(s, "/"); ok {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		require.NoError(t, err1)
		require.NoError(t, err2)
		return int64(h<<32 | l)
	}
	for suffix, mult := range map[string]int64{"MB": 1 << 20, "kB": 1 << 10, "GB": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n * mult
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

func lsn(n int64) string { return fmt.Sprintf("%X/%X", uint64(n)>>32, uint32(n)) }

package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/history"
)

// The DCS-side scenarios in async mode, on one 3-node cluster and one
// 3-member etcd cluster (see doc.go). Each subtest heals what it broke.
func TestEtcdAsync(t *testing.T) {
	skipShort(t)
	e := newEnv(t, "async")
	t.Run("C5", func(t *testing.T) { etcdC5(t, e) })
	t.Run("D11", func(t *testing.T) { etcdD11(t, e) })
	t.Run("D4", func(t *testing.T) { etcdD4(t, e) })
	t.Run("D2-failsafe", func(t *testing.T) { etcdD2Failsafe(t, e) })
	t.Run("D7", func(t *testing.T) { etcdD7(t, e) })
	t.Run("H5", func(t *testing.T) { etcdH5(t, e) })
	t.Run("D3", func(t *testing.T) { requireSlow(t); etcdD3(t, e, false) })
	t.Run("D3-failsafe", func(t *testing.T) { requireSlow(t); etcdD3(t, e, true) })
	t.Run("E2", func(t *testing.T) { requireSlow(t); etcdE2(t, e) })
}

// The scenarios whose guarantees change in synchronous mode (no lost or
// vanished acknowledged write, and E2's frozen primary cannot acknowledge
// once its standby follows the new primary). Slow: run with
// -faultsuite.slow.
func TestEtcdSync(t *testing.T) {
	skipShort(t)
	requireSlow(t)
	e := newEnv(t, "sync")
	t.Run("C5", func(t *testing.T) { etcdC5(t, e) })
	t.Run("D4", func(t *testing.T) { etcdD4(t, e) })
	t.Run("D7", func(t *testing.T) { etcdD7(t, e) })
	t.Run("E2", func(t *testing.T) { etcdE2(t, e) })
}

// The same in strict mode (synchronous_mode_strict: with no standby the
// primary's commits wait). Slow: run with -faultsuite.slow.
func TestEtcdStrict(t *testing.T) {
	skipShort(t)
	requireSlow(t)
	e := newEnv(t, "strict")
	t.Run("C5", func(t *testing.T) { etcdC5(t, e) })
	t.Run("D4", func(t *testing.T) { etcdD4(t, e) })
	t.Run("D7", func(t *testing.T) { etcdD7(t, e) })
	t.Run("D11", func(t *testing.T) { etcdD11(t, e) })
	t.Run("E2", func(t *testing.T) { etcdE2(t, e) })
}

// failoverBudget is RELIABILITY.md's failover budget at this suite's
// timing (ttl + 2 loop + promotion, 5 s allowed for the promotion) plus an
// etcd election, times 3 for a slow machine.
const failoverBudget = 3 * (ttl + 2*loopWait + etcdElection + 5*time.Second)

// waitEtcdLeader waits for an etcd leader other than not (which is paused
// or dead) and returns it with the time it took.
func waitEtcdLeader(t *testing.T, ec *etcdtest.Cluster, not *etcdtest.Member) (*etcdtest.Member, time.Duration) {
	t.Helper()
	start := time.Now()
	var m *etcdtest.Member
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		var err error
		m, err = ec.Leader(ctx)
		if err == nil && m == not {
			err = fmt.Errorf("%s still leads", m.Name)
		}
		return err
	}))
	return m, time.Since(start)
}

// resumeAll resumes every paused etcd member and starts every killed one,
// then waits until etcd is healthy.
func resumeAll(t *testing.T, ec *etcdtest.Cluster) {
	t.Helper()
	for _, m := range ec.Members {
		if m.Paused() {
			require.NoError(t, m.Resume())
		} else if !m.Running() {
			require.NoError(t, m.Start())
		}
	}
	require.NoError(t, ec.WaitHealthy(within(t, time.Minute)))
}

// C5: SIGSTOP the etcd leader process. etcd elects another leader in
// under a second; the agents renew through the other members. When that
// recovery is shorter than retry_timeout nothing may change: the same
// primary keeps the same leader tenure (key create revision) and keeps
// acknowledging writes. Then, with the member still paused, the primary's
// node is SIGKILLed: the failover must complete within the budget. Heal,
// restart, converge.
//
// A finding of this suite, fixed: etcd elected a new leader in under a
// second, yet the primary fenced about 2.4 s after the pause and a replica
// was promoted ~10 s later. dcs/etcddcs sent each renewal once, and
// clientv3's round-robin balancer kept giving every other request (and the
// watch stream) to the paused member's connection, still up at the TCP
// level, until gRPC's keepalive dropped it ~11 s later. Renewals are now
// hedged onto the next connection and a stalled watch stream is replaced
// (dcs/etcddcs doc, "A member that hangs").
func etcdC5(t *testing.T, e *env) {
	r := e.begin(t, "C5-"+e.mode)
	p := r.p
	_, rev := leaderRev(t, e.c)
	el, err := e.ec.Leader(within(t, 10*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() {
		if el.Paused() {
			_ = el.Resume()
		}
	})
	pausedAt := r.h.Since()
	require.NoError(t, el.Pause())
	nl, recovery := waitEtcdLeader(t, e.ec, el)

	// Three ttls with the member paused.
	var changes []string
	require.NoError(t, writableFor(within(t, time.Minute), e.c, 3*ttl, func(w []*cluster.Node, at time.Duration) error {
		if len(w) != 1 || w[0] != p {
			changes = append(changes, fmt.Sprintf("%s: writable %v", at.Round(time.Millisecond), names(w)))
		}
		return nil
	}))
	holder, rev2 := leaderRev(t, e.c)
	demoted := len(changes) > 0 || holder != p.Name || rev2 != rev
	verdict := fmt.Sprintf("the primary kept its leader tenure (key revision %d) and kept acknowledging writes through the other members", rev)
	if recovery < retryTimeout {
		if len(changes) > 12 {
			changes = append(changes[:12], "...")
		}
		// Not require: the failover half of the scenario still runs.
		if assert.False(t, demoted, "etcd elected %s %s after %s was paused (< retry_timeout %s): no demotion allowed; "+
			"leader key %s rev %d -> %q rev %d; writable nodes: %v", nl.Name, recovery.Round(time.Millisecond), el.Name, retryTimeout,
			p.Name, rev, holder, rev2, changes) {
			require.NoError(t, r.waitOK(within(t, 30*time.Second), p.Name, r.h.Since()), "%s acknowledges writes with the etcd leader paused", p.Name)
		} else {
			verdict = fmt.Sprintf("VIOLATION (false demotion): %s lost the leader key (now %q, revision %d -> %d) although etcd recovered in %s; no node writable for part of the pause: %d samples",
				p.Name, holder, rev, rev2, recovery.Round(time.Millisecond), len(changes))
		}
	} else {
		t.Logf("etcd took %s to elect %s (>= retry_timeout %s): a demotion is allowed; demoted: %v %v", recovery, nl.Name, retryTimeout, demoted, changes)
	}

	// The primary dies while the etcd member is still paused (after a false
	// demotion, once the cluster is stable again: in sync mode a primary
	// without a synchronous standby yet has no eligible successor).
	p = e.stable(t)
	killedAt := r.h.Since()
	require.NoError(t, p.Kill())
	killed := time.Now()
	q, err := e.c.WaitPrimary(within(t, failoverBudget), p)
	require.NoError(t, err, "failover with the etcd leader paused, within %s", failoverBudget)
	failover := time.Since(killed)
	require.NoError(t, r.waitOK(within(t, 30*time.Second), q.Name, killedAt))

	require.NoError(t, el.Resume())
	require.NoError(t, e.ec.WaitHealthy(within(t, time.Minute)))
	require.NoError(t, p.Start(within(t, time.Minute)))
	o := r.finish(expect{})
	t.Logf("C5 %s: injected: SIGSTOP of etcd leader %s at %s for %s, then SIGKILL of primary %s (agent and postmaster) with %s still paused; "+
		"verified: etcd elected %s in %s (retry_timeout %s); %s; "+
		"failover to %s in %s (budget %s); no two writers; converged after the member resumed and %s rejoined; %s",
		e.mode, el.Name, pausedAt.Round(time.Millisecond), (r.h.Since() - pausedAt).Round(time.Second), p.Name, el.Name,
		nl.Name, recovery.Round(time.Millisecond), retryTimeout, verdict, q.Name, failover.Round(time.Millisecond), failoverBudget, p.Name, o)
}

// D4: etcd quorum loss, two of three members SIGKILLed (the leader among
// them). The primary cannot renew: it must stop accepting writes (before
// its lease could expire) and nothing may be promoted while quorum is
// lost. After the members restart, the cluster converges to one primary.
func etcdD4(t *testing.T, e *env) {
	r := e.begin(t, "D4-"+e.mode)
	p := r.p
	el, err := e.ec.Leader(within(t, 10*time.Second))
	require.NoError(t, err)
	var victims []*etcdtest.Member
	victims = append(victims, el)
	for _, m := range e.ec.Members {
		if m != el && len(victims) < 2 {
			victims = append(victims, m)
		}
	}
	t.Cleanup(func() {
		for _, m := range victims {
			if !m.Running() {
				_ = m.Start()
			}
		}
	})
	killedAt := r.h.Since()
	for _, m := range victims {
		require.NoError(t, m.Kill())
	}
	demote := waitNoneWritable(t, e.c, 30*time.Second)
	require.NoError(t, writableFor(within(t, time.Minute), e.c, 3*ttl, func(w []*cluster.Node, at time.Duration) error {
		if len(w) > 0 {
			return fmt.Errorf("%v writable %s after the demotion, with etcd quorum lost", names(w), at.Round(time.Millisecond))
		}
		return nil
	}))
	lastOld := lastOK(r.h, p.Name)
	for _, m := range victims {
		require.NoError(t, m.Start())
	}
	restarted := time.Now()
	require.NoError(t, e.ec.WaitHealthy(within(t, time.Minute)))
	q, err := e.c.WaitPrimary(within(t, 2*time.Minute))
	require.NoError(t, err)
	back := time.Since(restarted)
	o := r.finish(expect{})
	t.Logf("D4 %s: injected: SIGKILL of etcd members %s and %s (quorum lost) at %s, restarted after %s; "+
		"verified: primary %s stopped accepting writes %s after the kill (ttl %s; last acknowledged write on it at %s), no node writable for 3 ttls after that, "+
		"a writable primary (%s) %s after the restart; no two writers; converged; %s",
		e.mode, victims[0].Name, victims[1].Name, killedAt.Round(time.Millisecond), (demote + 3*ttl).Round(time.Second),
		p.Name, demote.Round(time.Millisecond), ttl, lastOld.Round(time.Millisecond), q.Name, back.Round(time.Millisecond), o)
}

// lastOK returns the completion time of the last acknowledged write on
// node.
func lastOK(h *history.History, node string) time.Duration {
	var last time.Duration
	for _, op := range h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Complete > last {
			last = op.Complete
		}
	}
	return last
}

// setFailsafe turns failsafe_mode on or off and, when on, waits until
// /failsafe lists every node.
func setFailsafe(t *testing.T, e *env, on bool) {
	t.Helper()
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		return e.c.SetConfig(ctx, map[string]any{"failsafe_mode": on})
	}))
	if !on {
		return
	}
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		cl, err := e.c.Store().Cluster(ctx)
		if err != nil {
			return err
		}
		if cl.Failsafe == nil || len(cl.Failsafe.Members) != len(e.c.Nodes()) {
			return fmt.Errorf("/failsafe is %+v", cl.Failsafe)
		}
		return nil
	}))
}

// D3: the whole DCS down, every etcd member SIGSTOPped. Default mode: the
// primary stops accepting writes and nothing is promoted. Failsafe mode:
// the primary keeps running while every member acknowledges it (POST
// /failsafe), for four ttls here; then a replica's node is SIGKILLed and
// the primary, no longer acknowledged by every member, must demote.
func etcdD3(t *testing.T, e *env, failsafe bool) {
	id := "D3-" + e.mode
	if failsafe {
		id += "-failsafe"
		setFailsafe(t, e, true)
		t.Cleanup(func() { setFailsafe(t, e, false) })
	}
	r := e.begin(t, id)
	p := r.p
	t.Cleanup(func() {
		for _, m := range e.ec.Members {
			if m.Paused() {
				_ = m.Resume()
			}
		}
	})
	pausedAt := r.h.Since()
	for _, m := range e.ec.Members {
		require.NoError(t, m.Pause())
	}
	var note string
	if !failsafe {
		demote := waitNoneWritable(t, e.c, 30*time.Second)
		require.NoError(t, writableFor(within(t, time.Minute), e.c, 3*ttl, func(w []*cluster.Node, at time.Duration) error {
			if len(w) > 0 {
				return fmt.Errorf("%v writable %s after the demotion, with etcd down", names(w), at.Round(time.Millisecond))
			}
			return nil
		}))
		note = fmt.Sprintf("primary %s stopped accepting writes %s after etcd went down (ttl %s), no node writable for 3 ttls after that", p.Name, demote.Round(time.Millisecond), ttl)
	} else {
		require.NoError(t, writableFor(within(t, time.Minute), e.c, 4*ttl, func(w []*cluster.Node, at time.Duration) error {
			if len(w) != 1 || w[0] != p {
				return fmt.Errorf("failsafe: writable %v %s after etcd went down, want only %s", names(w), at.Round(time.Millisecond), p.Name)
			}
			return nil
		}))
		require.NoError(t, r.waitOK(within(t, 30*time.Second), p.Name, r.h.Since()), "failsafe: the primary acknowledges writes with etcd down")
		gone := e.c.Nodes()[0]
		if gone == p {
			gone = e.c.Nodes()[1]
		}
		require.NoError(t, gone.Kill())
		demote := waitNoneWritable(t, e.c, 30*time.Second)
		note = fmt.Sprintf("failsafe: primary %s kept acknowledging writes for 4 ttls with etcd down; after SIGKILL of member %s it stopped accepting writes %s later", p.Name, gone.Name, demote.Round(time.Millisecond))
	}
	resumeAll(t, e.ec)
	for _, n := range e.c.Nodes() {
		if !n.Running() {
			require.NoError(t, n.Start(within(t, time.Minute)))
		}
	}
	o := r.finish(expect{})
	t.Logf("%s: injected: SIGSTOP of all 3 etcd members at %s, resumed after %s; verified: %s; no two writers; converged; %s",
		id, pausedAt.Round(time.Millisecond), (r.h.Since() - pausedAt).Round(time.Second), note, o)
}

// D2 in failsafe mode: the primary alone is cut from etcd (every one of
// its etcd proxies blackholed) while it still reaches its replicas, and the
// replicas reach etcd. The members acknowledge its POST /failsafe, so they
// do not race even though its leader key expires: the primary stays the
// only writable node. (Default-mode D2 — the cut primary fences itself,
// exactly one new primary — is internal/cluster's TestSwitchover, and D7
// below with the history checker.)
func etcdD2Failsafe(t *testing.T, e *env) {
	setFailsafe(t, e, true)
	t.Cleanup(func() { setFailsafe(t, e, false) })
	r := e.begin(t, "D2-failsafe-"+e.mode)
	p := r.p
	t.Cleanup(p.HealDCS)
	cutAt := r.h.Since()
	p.CutFromDCS()
	var keyGone bool
	require.NoError(t, writableFor(within(t, time.Minute), e.c, 4*ttl, func(w []*cluster.Node, at time.Duration) error {
		if len(w) != 1 || w[0] != p {
			return fmt.Errorf("failsafe: writable %v %s after the cut, want only %s", names(w), at.Round(time.Millisecond), p.Name)
		}
		if l, _ := leaderRev(t, e.c); l == "" {
			keyGone = true
		} else if l != p.Name {
			return fmt.Errorf("failsafe: %s took the leader key %s after the cut", l, at.Round(time.Millisecond))
		}
		return nil
	}))
	require.NoError(t, r.waitOK(within(t, 30*time.Second), p.Name, r.h.Since()), "failsafe: the cut primary acknowledges writes")
	p.HealDCS()
	o := r.finish(expect{})
	t.Logf("D2 failsafe %s: injected: primary %s cut from every etcd member (proxies blackholed) at %s for 4 ttls, replicas still reaching etcd; "+
		"verified: %s stayed the only writable node and kept acknowledging writes (its leader key expired: %v; no other node took it); no two writers; converged after healing; %s",
		e.mode, p.Name, cutAt.Round(time.Millisecond), p.Name, keyGone, o)
}

// D7: asymmetric partition, default mode: the primary reaches its
// replicas (replication keeps flowing) but not etcd; the replicas reach
// etcd. The primary must stop accepting writes before a replica is
// promoted: no acknowledged write on the old timeline after the new one
// acknowledged one (history checker), and no instant with two writable
// primaries (split-brain checker).
func etcdD7(t *testing.T, e *env) {
	r := e.begin(t, "D7-"+e.mode)
	p := r.p
	t.Cleanup(p.HealDCS)
	cutAt := r.h.Since()
	p.CutFromDCS()
	cut := time.Now()
	q, err := e.c.WaitPrimary(within(t, failoverBudget), p)
	require.NoError(t, err)
	failover := time.Since(cut)
	require.NoError(t, r.waitOK(within(t, 30*time.Second), q.Name, cutAt))
	require.False(t, p.Writable(within(t, 5*time.Second)), "%s still writable after %s was promoted", p.Name, q.Name)
	lastOld, firstNew := lastOK(r.h, p.Name), firstOK(r.h, q.Name, cutAt)
	p.HealDCS()
	o := r.finish(expect{})
	t.Logf("D7 %s: injected: primary %s cut from etcd only (its replication to the replicas intact) at %s; "+
		"verified: %s promoted %s after the cut (budget %s); last acknowledged write on %s completed at %s, first on %s at %s (gap %s); "+
		"no overlap of acknowledged writes across timelines; converged after healing (%s rejoined); %s",
		e.mode, p.Name, cutAt.Round(time.Millisecond), q.Name, failover.Round(time.Millisecond), failoverBudget,
		p.Name, lastOld.Round(time.Millisecond), q.Name, firstNew.Round(time.Millisecond), (firstNew - lastOld).Round(time.Millisecond), p.Name, o)
}

// firstOK returns the completion time of the first acknowledged write on
// node invoked after the given time.
func firstOK(h *history.History, node string, after time.Duration) time.Duration {
	first := time.Duration(-1)
	for _, op := range h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == node && op.Invoke > after && (first < 0 || op.Complete < first) {
			first = op.Complete
		}
	}
	return first
}

// H5: cold start of an old primary while etcd is unreachable. The primary
// is SIGKILLed and a replica takes over; the old primary is then started
// again while every etcd member is out of its reach (its proxies
// blackholed). For three ttls it must never accept writes; once it reaches
// etcd it rejoins as a replica.
func etcdH5(t *testing.T, e *env) {
	r := e.begin(t, "H5-"+e.mode)
	p := r.p
	killedAt := r.h.Since()
	require.NoError(t, p.Kill())
	q, err := e.c.WaitPrimary(within(t, failoverBudget), p)
	require.NoError(t, err)
	require.NoError(t, r.waitOK(within(t, 30*time.Second), q.Name, killedAt))
	t.Cleanup(p.HealDCS)
	p.CutFromDCS()
	startedAt := r.h.Since()
	require.NoError(t, p.Start(within(t, time.Minute)))
	var pgUp time.Duration = -1
	start := time.Now()
	require.NoError(t, writableFor(within(t, time.Minute), e.c, 3*ttl, func(w []*cluster.Node, at time.Duration) error {
		if slices.Contains(w, p) {
			return fmt.Errorf("%s started as a writable primary %s after its cold start with etcd unreachable", p.Name, at.Round(time.Millisecond))
		}
		if pgUp < 0 {
			if _, err := p.PostmasterPID(); err == nil {
				pgUp = time.Since(start)
			}
		}
		return nil
	}))
	pg := "its Postgres did not start"
	if pgUp >= 0 {
		pg = fmt.Sprintf("its Postgres was up (read-only) %s after the start", pgUp.Round(time.Millisecond))
	}
	p.HealDCS()
	o := r.finish(expect{})
	t.Logf("H5 %s: injected: SIGKILL of primary %s at %s (failover to %s), cold start of %s at %s with every etcd member out of its reach for 3 ttls; "+
		"verified: %s never accepted writes (%s); after healing it rejoined as a replica of %s; no two writers; converged; %s",
		e.mode, p.Name, killedAt.Round(time.Millisecond), q.Name, p.Name, startedAt.Round(time.Millisecond), p.Name, pg, o.primary, o)
}

// E2: lease not found. The primary's agent is SIGSTOPped past its lease
// (Postgres keeps running), another node takes the leader key; the agent
// is resumed. Its lease is gone: it must not grant itself a new one and
// re-create the leader key the other node holds (the key keeps the new
// holder's create revision, and no put of its name is ever seen on the
// key), and it must demote. In async mode, without a watchdog, its
// Postgres may acknowledge writes from clients still connected to it while
// it is frozen: that is the documented frozen-agent limit (DESIGN.md, the
// lease and the fence, 5; RELIABILITY.md C2), reported with its window and
// not failed on. In sync mode its commits wait for a standby that now
// follows the new primary, so there must be no two writers and no lost
// acknowledged write; its Postgres still serves reads as a primary while
// the agent is frozen, so reads there may miss what the new primary
// acknowledged (same limit, reported, not failed on).
func etcdE2(t *testing.T, e *env) {
	r := e.begin(t, "E2-"+e.mode)
	p := r.p
	t.Cleanup(func() { _ = p.Thaw() })
	key := e.c.Path().Key(dcs.KeyLeader)
	frozenAt := r.h.Since()
	require.NoError(t, p.Freeze())
	var holder string
	var rev int64
	require.NoError(t, cluster.Eventually(within(t, failoverBudget), func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		holder, rev, err = e.c.LeaderRevision(ctx)
		if err == nil && (holder == "" || holder == p.Name) {
			err = fmt.Errorf("leader key: %q", holder)
		}
		return err
	}))
	took := r.h.Since() - frozenAt
	time.Sleep(ttl) // a ttl more frozen: the lease is certainly gone

	// Watch the leader key from now on for any put of p's name.
	wctx, cancel := context.WithCancel(context.Background())
	resp, err := e.c.Etcd().Get(within(t, 10*time.Second), key)
	require.NoError(t, err)
	var mu sync.Mutex
	var puts []string
	watched := make(chan struct{})
	wch := e.c.Etcd().Watch(clientv3.WithRequireLeader(wctx), key, clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer close(watched)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					mu.Lock()
					puts = append(puts, fmt.Sprintf("%s@%d", ev.Kv.Value, ev.Kv.CreateRevision))
					mu.Unlock()
				}
			}
		}
	}()
	stopWatch := func() {
		cancel()
		<-watched
	}
	t.Cleanup(stopWatch)

	thawAt := r.h.Since()
	require.NoError(t, p.Thaw())
	thawed := time.Now()
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		if p.Writable(ctx) {
			return errors.New(p.Name + " still writable")
		}
		return nil
	}), "%s demotes after the thaw", p.Name)
	demoted := time.Since(thawed)
	s, err := e.c.WaitStable(within(t, 2*time.Minute))
	require.NoError(t, err)
	h2, rev2 := leaderRev(t, e.c)
	mu.Lock()
	seen := append([]string(nil), puts...)
	mu.Unlock()
	for _, pu := range seen {
		require.NotContains(t, pu, p.Name+"@", "the thawed agent re-created the leader key (puts seen: %v)", seen)
	}
	require.Equal(t, holder, h2, "the leader key still names %s", holder)
	require.Equal(t, rev, rev2, "the leader key keeps %s's tenure (create revision)", holder)
	require.Equal(t, holder, s.Name)
	o := r.finish(expect{twoWriters: !e.sync(), frozen: p.Name})
	limit := "no two writers"
	if n := len(o.report.Of(history.CheckTwoWriters)) + len(o.split.Violations); n > 0 {
		limit = fmt.Sprintf("EXPECTED FAILURE (documented frozen-agent limit, async, no watchdog): %d two-writer findings "+
			"(history %d, split-brain checker %d), the old timeline acknowledged writes for %s after the new one did (history overlap %s); "+
			"%d writes acknowledged by the frozen node's Postgres were lost",
			n, len(o.report.Of(history.CheckTwoWriters)), len(o.split.Violations), o.overlap().Round(time.Millisecond),
			o.report.Stats.MaxOverlap.Round(time.Millisecond), len(o.report.Of(history.CheckLost)))
	} else if !e.sync() {
		limit = "no two writers witnessed (the frozen-agent limit allows them in async)"
	}
	t.Logf("E2 %s: injected: SIGSTOP of primary %s's agent at %s (Postgres running), %s took the leader key %s later (create revision %d), thawed at %s; "+
		"verified: %s never re-created the leader key (%d puts on it after the thaw, none of its name), the key keeps %s's tenure, %s stopped accepting writes %s after the thaw; %s; converged; %s",
		e.mode, p.Name, frozenAt.Round(time.Millisecond), holder, took.Round(time.Millisecond), rev, thawAt.Round(time.Millisecond),
		p.Name, len(seen), holder, p.Name, demoted.Round(time.Millisecond), limit, o)
}

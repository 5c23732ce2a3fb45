package faultsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
)

// The primary's etcd link degraded rather than cut (RELIABILITY.md D9 and
// E1), through the node's fault proxies: delay, a lossy link (connections
// reset at random), and a one-way cut that lets requests reach etcd but
// holds every reply. Async mode, one 3-node cluster on a 3-member etcd.
func TestEtcdLink(t *testing.T) {
	skipShort(t)
	requireSlow(t)
	e := newEnv(t, "async")
	t.Run("D9", func(t *testing.T) { linkD9(t, e) })
	t.Run("E1-replies-cut", func(t *testing.T) { linkE1(t, e, false) })
	t.Run("E1-replies-cut-no-orphan-renewal", func(t *testing.T) {
		linkE1(t, e, true)
	})
}

// nodeLog reads a node's log from an offset (its size when a phase began).
type nodeLog struct {
	path string
	from int64
}

func logFrom(n *cluster.Node) nodeLog {
	st, err := os.Stat(n.LogFile())
	if err != nil {
		return nodeLog{path: n.LogFile()}
	}
	return nodeLog{path: n.LogFile(), from: st.Size()}
}

// lines returns the log lines written since the offset that contain s.
func (l nodeLog) lines(s string) []string {
	f, err := os.Open(l.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(l.from, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	var out []string
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(line, []byte(s)) {
			out = append(out, string(line))
		}
	}
	return out
}

// Log messages of package ha that the scenarios count.
const (
	logRenewFailed = "lease renewal failed"
	logLeaderEnded = "leadership ended"
	logFencing     = "fencing: stopping postgres"
)

// watchTenure samples the writable nodes for d and returns every sample in
// which p was not the only writable node, and the sequence of nodes that
// were, in turn, the only writable one (starting with p).
func watchTenure(t *testing.T, e *env, p *cluster.Node, d time.Duration) (changes, primaries []string) {
	t.Helper()
	primaries = []string{p.Name}
	require.NoError(t, writableFor(within(t, d+time.Minute), e.c, d, func(w []*cluster.Node, at time.Duration) error {
		if len(w) != 1 || w[0] != p {
			changes = append(changes, fmt.Sprintf("%s: writable %v", at.Round(time.Millisecond), names(w)))
		}
		if len(w) == 1 && w[0].Name != primaries[len(primaries)-1] {
			primaries = append(primaries, w[0].Name)
		}
		return nil
	}))
	return changes, primaries
}

func firstFew(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... %d more", len(s)-n))
	}
	return s
}

// D9: a slow, then a lossy DCS link on the primary. First a 75±50 ms delay
// on each direction of every one of its etcd connections for 4 ttls: no
// flapping is allowed (a renewal takes a few hundred ms at most, far below
// ttl - margin): the primary keeps its leader tenure (same leader key
// create revision), is the only writable node throughout and keeps
// acknowledging writes. Then a lossy link, each chunk resetting its
// connection with probability 0.3, for 4 ttls: the primary may demote, as
// its fence fires only when no renewal succeeded for ttl - margin (the
// conservative demotion RELIABILITY.md allows); whether it did is recorded.
// Either way: no two writers, and convergence after healing.
func linkD9(t *testing.T, e *env) {
	r := e.begin(t, "D9-"+e.mode)
	p := r.p
	t.Cleanup(p.HealDCS)
	_, rev := leaderRev(t, e.c)

	// Phase 1: delay.
	const base, jitter = 75 * time.Millisecond, 50 * time.Millisecond
	l1 := logFrom(p)
	delayAt := r.h.Since()
	require.NoError(t, p.DelayDCS(base, jitter))
	changes, _ := watchTenure(t, e, p, 4*ttl)
	holder, rev2 := leaderRev(t, e.c)
	require.NoError(t, r.waitOK(within(t, 30*time.Second), p.Name, r.h.Since()), "%s acknowledges writes with its etcd link delayed", p.Name)
	delayFailed, delayEnded := len(l1.lines(logRenewFailed)), l1.lines(logLeaderEnded)
	require.Empty(t, changes, "delay %s±%s: %s must stay the only writable node (no flapping)", base, jitter, p.Name)
	require.Equal(t, p.Name, holder, "delay: the leader key still names %s", p.Name)
	require.Equal(t, rev, rev2, "delay: %s keeps its leader tenure (create revision)", p.Name)
	require.Empty(t, delayEnded, "delay: %s's leadership must not end", p.Name)
	p.HealDCS()

	// Phase 2: a lossy link.
	const drop = 0.3
	seed := uint64(time.Now().UnixNano())
	for i, px := range p.EtcdProxies() {
		px.Seed(seed + uint64(i))
	}
	l2 := logFrom(p)
	dropAt := r.h.Since()
	require.NoError(t, p.DropDCS(drop))
	changes, primaries := watchTenure(t, e, p, 4*ttl)
	drops := p.DCSDrops()
	holder3, rev3 := leaderRev(t, e.c)
	p.HealDCS()
	dropFailed, dropEnded, dropFenced := len(l2.lines(logRenewFailed)), l2.lines(logLeaderEnded), len(l2.lines(logFencing))
	demoted := len(changes) > 0 || holder3 != p.Name || rev3 != rev || len(dropEnded) > 0
	verdict := fmt.Sprintf("no demotion: %s stayed the only writable node and kept its tenure (revision %d)", p.Name, rev)
	if demoted {
		verdict = fmt.Sprintf("DEMOTED (conservative; allowed when no renewal succeeds for ttl - margin): leader key %q revision %d -> %d; leadership ended: %v; "+
			"sole writable node in turn: %v (%d failovers); writable samples not {%s}: %v",
			holder3, rev, rev3, firstFew(dropEnded, 3), primaries, len(primaries)-1, p.Name, firstFew(changes, 6))
	}
	if len(dropEnded) > 0 {
		// A conservative demotion, not a flap: the first end of leadership
		// is the fence, after no renewal succeeded for ttl - margin.
		require.Contains(t, dropEnded[0], "could not be renewed before its deadline", "lossy link: why %s's leadership ended", p.Name)
	}
	o := r.finish(expect{})
	t.Logf("D9 %s: injected: %s±%s delay on each direction of primary %s's etcd links at %s for 4 ttls (%s), then connection resets with p=%.1f per chunk (seed %d) at %s for 4 ttls; "+
		"verified: with the delay %s stayed the only writable node, kept its leader tenure (revision %d) and kept acknowledging writes, %d renewals failed; "+
		"lossy link: %d connections reset, %d renewals failed, %d fencing stops, %s; no two writers; converged after healing; %s",
		e.mode, base, jitter, p.Name, delayAt.Round(time.Millisecond), 4*ttl, drop, seed, dropAt.Round(time.Millisecond),
		p.Name, rev, delayFailed, drops, dropFailed, dropFenced, verdict, o)
}

// E1-like, a one-way cut: every reply etcd sends to the primary is held
// (its requests still reach etcd and take effect) for at least 3 ttls and
// until a replica took over. The primary cannot know the outcome of any
// renewal, so its fence must fire by its deadline: it stops accepting
// writes before a replica is promoted (the split-brain and history
// checkers), and a replica takes over. After healing (the held replies are
// delivered late), the old primary must resolve that it is not the leader
// (the key names another node) and rejoin: the leader key names the
// converged primary and lives on that node's own lease (no orphan key
// kept alive by the old primary), and there is one leader.
//
// Measured, and asserted only with strict: the TTL of the lease that
// carries the leader key, polled through the harness's own etcd client.
// A rise after the primary fenced itself means the fenced node renewed
// the leader key's lease (its requests still reach etcd): the key is then
// an orphan, kept alive by a node that no longer acts as leader, and no
// replica can take over until those renewals stop. Right behaviour: no
// renewal of that lease after the fence, so the key expires within a ttl.
func linkE1(t *testing.T, e *env, strict bool) {
	id := "E1-replies-" + e.mode
	if strict {
		id += "-strict" // a table of its own: ids restart at 1
	}
	r := e.begin(t, id)
	p := r.p
	t.Cleanup(p.HealDCS)
	_, rev := leaderRev(t, e.c)
	lw := watchLease(t, e, leaseOf(t, e, dcs.KeyLeader))
	l := logFrom(p)
	cutAt := r.h.Since()
	cut := time.Now()
	lw.start(cut)
	p.CutDCSReplies()
	require.NoError(t, cluster.Eventually(within(t, time.Minute), func(ctx context.Context) error {
		if p.Writable(ctx) {
			return errors.New(p.Name + " still writable")
		}
		return nil
	}), "%s stops accepting writes with its etcd replies cut", p.Name)
	fenced := time.Since(cut)
	q, err := e.c.WaitPrimary(within(t, failoverBudget), p)
	require.NoError(t, err, "a replica takes over within %s while %s's replies are cut", failoverBudget, p.Name)
	failover := time.Since(cut)
	require.False(t, p.Writable(within(t, 5*time.Second)), "%s writable after %s was promoted", p.Name, q.Name)
	require.NoError(t, r.waitOK(within(t, 30*time.Second), q.Name, cutAt))
	holderCut, revCut := leaderRev(t, e.c)
	if left := 3*ttl - time.Since(cut); left > 0 {
		time.Sleep(left)
	}
	held := time.Since(cut)
	failed, ended, fencing := len(l.lines(logRenewFailed)), l.lines(logLeaderEnded), len(l.lines(logFencing))
	samples := lw.stop()
	renewals, expired := leaseRenewals(samples, fenced+500*time.Millisecond)
	orphan := fmt.Sprintf("no renewal of the leader key's lease after the fence; it expired %s after the cut", expired.Round(time.Millisecond))
	if len(renewals) > 0 {
		orphan = fmt.Sprintf("FINDING (orphan key): the leader key's lease was renewed %d times after %s fenced itself (at %v after the cut), "+
			"it expired only %s after the cut", len(renewals), p.Name, firstFew(renewals, 4), expired.Round(time.Millisecond))
	}
	if strict {
		require.Empty(t, renewals, "the fenced %s must not renew the lease carrying the leader key (it expired %s after the cut)", p.Name, expired)
	}
	p.HealDCS()
	o := r.finish(expect{})

	// The leader key names the converged primary, on that node's lease.
	holder, rev2 := leaderRev(t, e.c)
	require.Equal(t, o.primary, holder)
	require.NotEqual(t, rev, rev2, "a new leader tenure")
	key, owner := leaseOf(t, e, dcs.KeyLeader), leaseOf(t, e, dcs.KeyMembers+holder)
	require.NotZero(t, key, "the leader key is on a lease")
	require.Equal(t, owner, key, "the leader key lives on %s's own lease (the one of its member key)", holder)
	t.Logf("E1 %s: injected: primary %s's etcd replies held (requests still reaching etcd) at %s for %s; "+
		"verified: %s stopped accepting writes %s after the cut (ttl %s), %s took the leader key (revision %d -> %d) and was writable %s after the cut (budget %s), %s not writable then; "+
		"%d renewals failed on %s, leadership ended: %v, %d fencing stops; %s; after healing %s resolved it was not the leader and rejoined, "+
		"the leader key names %s on its own lease %x; no two writers; converged; %s",
		e.mode, p.Name, cutAt.Round(time.Millisecond), held.Round(time.Millisecond),
		p.Name, fenced.Round(time.Millisecond), ttl, holderCut, rev, revCut, failover.Round(time.Millisecond), failoverBudget, p.Name,
		failed, p.Name, firstFew(ended, 2), fencing, orphan, p.Name, holder, key, o)
}

// leaseOf returns the lease of a key of the cluster (0 when it has none
// or does not exist).
func leaseOf(t *testing.T, e *env, rel string) clientv3.LeaseID {
	t.Helper()
	resp, err := e.c.Etcd().Get(within(t, 10*time.Second), e.c.Path().Key(rel))
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

// leaseSample is one reading of a lease's remaining TTL (-1 once it is
// gone), at a time since the cut.
type leaseSample struct {
	at  time.Duration
	ttl int64
}

// leaseWatch polls a lease's TTL through the harness's etcd client.
type leaseWatch struct {
	t       *testing.T
	e       *env
	id      clientv3.LeaseID
	cancel  context.CancelFunc
	done    chan struct{}
	samples []leaseSample
}

func watchLease(t *testing.T, e *env, id clientv3.LeaseID) *leaseWatch {
	require.NotZero(t, id, "the leader key is on a lease")
	return &leaseWatch{t: t, e: e, id: id}
}

// start polls every 100 ms, from cut on, until stop or the lease is gone.
func (w *leaseWatch) start(cut time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := w.e.c.Etcd().TimeToLive(rctx, w.id)
			rcancel()
			if err == nil {
				w.samples = append(w.samples, leaseSample{at: time.Since(cut), ttl: resp.TTL})
				if resp.TTL < 0 {
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	w.t.Cleanup(func() { w.stop() })
}

// stop ends the polling and returns the samples.
func (w *leaseWatch) stop() []leaseSample {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
	return w.samples
}

// leaseRenewals returns the times after the given one at which the
// lease's TTL rose (a renewal reached etcd), and when the lease was first
// seen gone (-1 if never).
func leaseRenewals(samples []leaseSample, after time.Duration) ([]string, time.Duration) {
	var rises []string
	gone := time.Duration(-1)
	for i, s := range samples {
		if s.ttl < 0 {
			gone = s.at
			break
		}
		if i > 0 && s.ttl > samples[i-1].ttl && s.at > after {
			rises = append(rises, s.at.Round(time.Millisecond).String())
		}
	}
	return rises, gone
}

package ha_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/fakepg"
	"github.com/pgha/pgha/pg"
)

// These tests run N nodes in one process on memdcs and fakepg, inside
// testing/synctest bubbles: TTLs and loop waits pass in virtual time, and the
// REST probes between nodes go through an in-process transport, so no test
// opens a socket or sleeps for real.

// --- harness ---------------------------------------------------------------

// apiNet routes HTTP requests to the handler registered for their host, in
// process. A host that is down (its agent stopped or frozen) refuses.
type apiNet struct {
	mu       sync.Mutex
	handlers map[string]http.Handler
	down     map[string]bool
}

func (a *apiNet) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	h, down := a.handlers[req.URL.Host], a.down[req.URL.Host]
	a.mu.Unlock()
	if h == nil || down {
		return nil, fmt.Errorf("dial tcp %s: connect: connection refused", req.URL.Host)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

func (a *apiNet) setDown(host string, down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down[host] = down
}

// tLogger sends a node's logs (Info and up) to t.Log, so they show only when
// a test fails.
// PGHA_TEST_LOG=debug shows every decision.
func tLogger(t *testing.T, name string) hclog.Logger {
	level := hclog.Info
	if l := os.Getenv("PGHA_TEST_LOG"); l != "" {
		level = hclog.LevelFromString(l)
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: &tWriter{t: t}, DisableTime: true})
}

type tWriter struct{ t *testing.T }

func (w *tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fnode is one member: its fake Postgres, its DCS client and its Node.
type fnode struct {
	name  string
	inst  *fakepg.Instance
	store *memdcs.Store
	node  *ha.Node
	cfg   ha.Config

	cancel context.CancelFunc
	done   chan error
	err    error // Run's result, once it returned
}

// fcluster is a set of nodes on one memdcs server and one fakepg world.
type fcluster struct {
	t     *testing.T
	srv   *memdcs.Server
	world *fakepg.World
	net   *apiNet
	path  dcs.Path
	nodes []*fnode
}

// defaultDCS is the /config the bootstrap writes: Patroni's timing (virtual
// time makes it free), pg_rewind allowed.
func defaultDCS() map[string]any {
	return map[string]any{"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1 << 20,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
}

// newCluster makes the nodes (not running). edit, if not nil, adjusts each
// node's Config before New.
func newFakeCluster(t *testing.T, names []string, edit func(cfg *ha.Config)) *fcluster {
	t.Helper()
	c := &fcluster{
		t: t, srv: memdcs.NewServer(memdcs.Options{}), world: fakepg.NewWorld(),
		net:  &apiNet{handlers: map[string]http.Handler{}, down: map[string]bool{}},
		path: dcs.Path{Scope: "demo"},
	}
	dir := t.TempDir()
	for _, name := range names {
		inst, err := c.world.NewInstance(fakepg.Config{Name: name, DataDir: filepath.Join(dir, name)})
		require.NoError(t, err)
		store, err := c.srv.Client(memdcs.ClientConfig{Path: c.path, Name: name})
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		cfg := ha.Config{
			Name: name, Scope: c.path.Scope, Store: store, Postgres: inst,
			APIURL:     "http://" + name + ":8008/patroni",
			Bootstrap:  &ha.Bootstrap{DCS: defaultDCS()},
			HTTPClient: &http.Client{Transport: c.net},
			Logger:     tLogger(t, name),
		}
		if edit != nil {
			edit(&cfg)
		}
		node, err := ha.New(cfg)
		require.NoError(t, err)
		c.net.handlers[name+":8008"] = node.Handler()
		c.nodes = append(c.nodes, &fnode{name: name, inst: inst, store: store, node: node, cfg: cfg})
	}
	t.Cleanup(c.stopAll)
	return c
}

// start runs every node that is not running.
func (c *fcluster) start() *fcluster {
	for _, n := range c.nodes {
		if n.done == nil {
			c.run(n)
		}
	}
	return c
}

func (c *fcluster) run(n *fnode) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done, n.err = cancel, make(chan error, 1), nil
	c.net.setDown(n.name+":8008", false)
	go func() { n.done <- n.node.Run(ctx) }()
}

// stop cancels a node's Run and waits for it to return; its API goes down.
func (c *fcluster) stop(n *fnode) error {
	if n.done == nil {
		return n.err
	}
	n.cancel()
	n.err = <-n.done
	n.done = nil
	c.net.setDown(n.name+":8008", true)
	return n.err
}

func (c *fcluster) stopAll() {
	for _, n := range c.nodes {
		if err := c.stop(n); err != nil {
			c.t.Logf("%s: Run: %v", n.name, err)
		}
	}
}

func (c *fcluster) node(name string) *fnode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

func (c *fcluster) dump() string {
	var b strings.Builder
	for _, n := range c.nodes {
		s := n.node.Status()
		i := n.inst.Info()
		fmt.Fprintf(&b, "\n  %s: role=%s state=%s leader=%v pg{running=%v primary=%v tl=%d lsn=%s up=%q streaming=%v} decision=%q",
			n.name, s.Role, s.State, s.IsLeader, i.Running, i.Primary, i.Timeline, i.LSN, i.Upstream, i.Streaming, s.LastDecision)
	}
	return b.String()
}

// waitFor polls cond in virtual time (every 100ms, up to limit) and fails
// the test with the cluster's state if it never holds.
func (c *fcluster) waitFor(limit time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s: %s never happened; cluster:%s", limit, what, c.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leader returns the node that is the writable primary holding the leader
// key, when exactly one node is, and every other running node streams from
// it; else nil.
func (c *fcluster) stableLeader() *fnode {
	var leader *fnode
	for _, n := range c.nodes {
		if n.inst.Writable() {
			if leader != nil {
				return nil
			}
			leader = n
		}
	}
	if leader == nil || !leader.node.Status().IsLeader {
		return nil
	}
	for _, n := range c.nodes {
		if n == leader || n.done == nil {
			continue
		}
		i := n.inst.Info()
		if !i.Streaming || i.Upstream != leader.name+":5432" || i.LSN != leader.inst.Info().LSN {
			return nil
		}
		if s := n.node.Status(); s.Role != dcs.RoleReplica || s.State != failover.StateRunning {
			return nil
		}
	}
	return leader
}

func (c *fcluster) waitStable(limit time.Duration) *fnode {
	c.t.Helper()
	var l *fnode
	c.waitFor(limit, "one primary that every node streams from", func() bool { l = c.stableLeader(); return l != nil })
	return l
}

// waitLeaderIs waits until n is the stable leader.
func (c *fcluster) waitLeaderIs(limit time.Duration, n *fnode) {
	c.t.Helper()
	c.waitFor(limit, n.name+" the stable leader", func() bool { return c.stableLeader() == n })
}

// keyWatch records when the leader key disappears from the DCS, as seen by
// an outside observer: the earliest instant another node can take it.
type keyWatch struct {
	mu      sync.Mutex
	deletes []time.Time
}

func (c *fcluster) watchLeaderKey() *keyWatch {
	obs, err := c.srv.Client(memdcs.ClientConfig{Path: c.path})
	require.NoError(c.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := obs.Watch(ctx)
	require.NoError(c.t, err)
	kw := &keyWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			if ev.Key == dcs.KeyLeader && ev.Type == dcs.EventDelete {
				kw.mu.Lock()
				kw.deletes = append(kw.deletes, time.Now())
				kw.mu.Unlock()
			}
		}
	}()
	c.t.Cleanup(func() { cancel(); <-done; _ = obs.Close() })
	return kw
}

// firstDeleteAfter returns the first deletion of the leader key at or after t.
func (kw *keyWatch) firstDeleteAfter(t time.Time) (time.Time, bool) {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	for _, d := range kw.deletes {
		if !d.Before(t) {
			return d, true
		}
	}
	return time.Time{}, false
}

// others returns the nodes other than n.
func (c *fcluster) others(n *fnode) []*fnode {
	var out []*fnode
	for _, o := range c.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// eventIndex returns the position of the first event of inst with op (and
// detail prefix) at or after from, or -1.
func eventIndex(evs []fakepg.Event, from int, inst string, op fakepg.Op, detail string) int {
	for k := from; k < len(evs); k++ {
		if evs[k].Instance == inst && evs[k].Op == op && strings.HasPrefix(evs[k].Detail, detail) {
			return k
		}
	}
	return -1
}

func eventsString(evs []fakepg.Event) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}

// requireNoSplitBrain checks the fake's writability log: never two writable
// instances at one instant.
func (c *fcluster) requireNoSplitBrain() {
	c.t.Helper()
	require.LessOrEqual(c.t, c.world.MaxWritable(), 1, "two writable primaries at once:%s", eventsString(c.world.Events()))
}

func (c *fcluster) initdbs() int {
	k := 0
	for _, n := range c.nodes {
		k += n.inst.Calls(fakepg.OpInitdb)
	}
	return k
}

var names3 = []string{"node1", "node2", "node3"}

// --- bootstrap ---------------------------------------------------------------

func TestBootstrapThreeNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		l := c.waitStable(time.Minute)

		require.Equal(t, 1, c.initdbs(), "exactly one node runs initdb")
		require.Equal(t, 1, l.inst.Calls(fakepg.OpInitdb))
		for _, o := range c.others(l) {
			require.Equal(t, 1, o.inst.Calls(fakepg.OpClone), "%s clones once", o.name)
			require.Equal(t, l.inst.Info().SystemID, o.inst.Info().SystemID)
		}
		cl, err := l.store.Cluster(context.Background())
		require.NoError(t, err)
		require.Equal(t, l.name, cl.LeaderName())
		require.NotNil(t, cl.Initialize)
		require.Equal(t, fmt.Sprint(l.inst.Info().SystemID), cl.Initialize.SysID)
		require.Len(t, cl.Members, 3)
		lm, _ := cl.Member(l.name)
		require.Equal(t, dcs.RolePrimary, lm.Data.Role)
		require.Equal(t, failover.StateRunning, lm.Data.State)
		require.Equal(t, "http://"+l.name+":8008/patroni", lm.Data.APIURL)
		require.Equal(t, "postgres://"+l.name+":5432/postgres", lm.Data.ConnURL)
		// The WAL a write produces reaches the replicas.
		lsn, err := l.inst.Write(4096)
		require.NoError(t, err)
		for _, o := range c.others(l) {
			require.Equal(t, lsn, o.inst.Info().LSN)
		}
		// Quiet for several TTLs: nothing changes hands.
		time.Sleep(2 * time.Minute)
		require.True(t, c.stableLeader() == l, "%s still leads", l.name)
		c.requireNoSplitBrain()
	})
}

// --- lease expiry and the fence ----------------------------------------------

// The leader loses the DCS. Its fence stops Postgres before its lease can
// have expired, so before anyone else can be promoted; another node takes
// over; after the partition heals the old leader rejoins as a replica.
func TestLeaderPartitionFencesBeforePromotion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		kw := c.watchLeaderKey()
		old := c.waitStable(time.Minute)
		_, _ = old.inst.Write(1 << 10)
		cut := len(c.world.Events())

		c.srv.Partition(old.name)
		cutAt := time.Now()
		var next *fnode
		c.waitFor(2*time.Minute, "another node promoted", func() bool {
			for _, o := range c.others(old) {
				if o.inst.Writable() && o.node.Status().IsLeader {
					next = o
					return true
				}
			}
			return false
		})
		evs := c.world.Events()
		stop := eventIndex(evs, cut, old.name, fakepg.OpStop, "immediate")
		promote := eventIndex(evs, cut, next.name, fakepg.OpPromote, "")
		require.GreaterOrEqual(t, stop, 0, "the old leader was fenced:%s", eventsString(evs[cut:]))
		require.Greater(t, promote, stop, "fenced before the promotion:%s", eventsString(evs[cut:]))
		expired, ok := kw.firstDeleteAfter(cutAt)
		require.True(t, ok)
		require.True(t, evs[stop].At.Before(expired), "fenced at %s, before the lease expired at %s", evs[stop].At, expired)
		require.Empty(t, evs[stop].Writable)
		require.False(t, old.node.Status().IsLeader)
		c.requireNoSplitBrain()

		// While cut off, the old leader stays read-only however long it waits.
		time.Sleep(5 * time.Minute)
		require.False(t, old.inst.Writable())

		c.srv.Heal(old.name)
		c.waitLeaderIs(2*time.Minute, next)
		require.Equal(t, 2, old.inst.Info().Timeline)
		require.Equal(t, 1, c.initdbs())
		c.requireNoSplitBrain()
	})
}

// Once the fence has stopped Postgres, the node revokes the lease the
// fenced tenure ran on before it renews anything: the leader key goes at
// once when the DCS answers again, instead of being kept alive by the
// member key's renewals (which share its lease) with no primary behind it.
// (With etcd, renewals whose replies are lost reach etcd: the fault suite's
// TestEtcdLink/E1 shows the orphan key this prevents.)
func TestFencedTenureLeaseIsRevoked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		kw := c.watchLeaderKey()
		old := c.waitStable(time.Minute)
		cut := len(c.world.Events())
		c.srv.Partition(old.name)
		cutAt := time.Now()
		deadline := old.node.Status().LeaseDeadline
		c.waitFor(2*time.Minute, "the old leader fenced", func() bool {
			return eventIndex(c.world.Events(), cut, old.name, fakepg.OpStop, "immediate") >= 0
		})
		require.True(t, time.Now().Before(deadline), "fenced before the lease deadline")
		c.srv.Heal(old.name) // the DCS answers again before the lease ran out
		c.waitFor(time.Minute, "the leader key deleted", func() bool { _, ok := kw.firstDeleteAfter(cutAt); return ok })
		gone, _ := kw.firstDeleteAfter(cutAt)
		require.True(t, gone.Before(deadline), "the fenced tenure's key was revoked at %s, before its lease would have expired at %s", gone, deadline)
		c.waitStable(3 * time.Minute)
		c.requireNoSplitBrain()
	})
}

// The fence does not depend on the loop: with the loop stuck in a slow
// Postgres query, a renewal that finds the leader key taken over stops
// Postgres at once, long before the lease deadline.
func TestNotLeaderOnRefreshFencesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, func(cfg *ha.Config) { cfg.RenewInterval = 2 * time.Second }).start()
		old := c.waitStable(time.Minute)
		deadline := old.node.Status().LeaseDeadline

		// Every status query of the old leader's loop now hangs until its
		// timeout (retry_timeout, 10s); let the loop get stuck in one.
		for range 6 {
			old.inst.DelayNext(fakepg.OpStatus, time.Hour)
		}
		time.Sleep(11 * time.Second)
		cut := len(c.world.Events())

		// The lease expires early (beyond the lease's contract) and someone
		// else takes the leader key before the old leader's next renewal.
		intruder, err := c.srv.Client(memdcs.ClientConfig{Path: c.path, Name: "intruder"})
		require.NoError(t, err)
		defer intruder.Close()
		require.True(t, c.srv.ExpireLease(old.name))
		_, err = intruder.KeepAlive(context.Background(), 30*time.Second)
		require.NoError(t, err)
		_, err = intruder.AcquireLeader(context.Background())
		require.NoError(t, err)
		takeover := time.Now()

		c.waitFor(time.Minute, "the old leader fenced", func() bool { return !old.inst.Writable() })
		evs := c.world.Events()
		stop := eventIndex(evs, cut, old.name, fakepg.OpStop, "immediate")
		require.GreaterOrEqual(t, stop, 0, "stopped immediately:%s", eventsString(evs[cut:]))
		require.LessOrEqual(t, evs[stop].At.Sub(takeover), 2*time.Second, "fenced at the first renewal, while the loop was stuck")
		require.True(t, evs[stop].At.Before(deadline.Add(-10*time.Second)), "long before the lease deadline")
		require.Equal(t, 1, c.world.MaxWritable())

		// The intruder goes away; the cluster elects a leader again.
		require.NoError(t, intruder.Resign(context.Background()))
		c.waitStable(3 * time.Minute)
		c.requireNoSplitBrain()
	})
}

// The fence timer fires at deadline - margin even while the loop is stuck.
func TestFenceTimerWhileLoopIsStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		kw := c.watchLeaderKey()
		old := c.waitStable(time.Minute)
		for range 6 {
			old.inst.DelayNext(fakepg.OpStatus, time.Hour)
		}
		time.Sleep(11 * time.Second)
		cut := len(c.world.Events())
		c.srv.Partition(old.name)
		cutAt := time.Now()
		c.waitFor(time.Minute, "the old leader fenced", func() bool { return !old.inst.Writable() })
		evs := c.world.Events()
		stop := eventIndex(evs, cut, old.name, fakepg.OpStop, "immediate")
		require.GreaterOrEqual(t, stop, 0, "%s", eventsString(evs[cut:]))
		c.waitFor(time.Minute, "the lease expired", func() bool { _, ok := kw.firstDeleteAfter(cutAt); return ok })
		expired, _ := kw.firstDeleteAfter(cutAt)
		margin := 6 * time.Second // max(ttl/5, 500ms) for ttl 30s
		require.True(t, evs[stop].At.Before(expired), "fenced at %s, before the lease expired at %s", evs[stop].At, expired)
		require.LessOrEqual(t, expired.Sub(evs[stop].At), margin, "fenced at deadline - margin, not earlier")
		c.srv.Heal(old.name)
		c.waitStable(3 * time.Minute)
		c.requireNoSplitBrain()
	})
}

// --- switchover and failover -------------------------------------------------

func TestSwitchoverToNamedCandidateAndToAny(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		ctx := context.Background()
		old := c.waitStable(time.Minute)
		cand := c.others(old)[1]
		_, _ = old.inst.Write(1 << 12)
		cut := len(c.world.Events())

		// Any node may ask; the leader carries it out.
		require.NoError(t, c.others(old)[0].node.Switchover(ctx, cand.name, time.Time{}))
		c.waitLeaderIs(time.Minute, cand)
		l := cand
		evs := c.world.Events()
		stop := eventIndex(evs, cut, old.name, fakepg.OpStop, "fast")
		promote := eventIndex(evs, cut, cand.name, fakepg.OpPromote, "timeline 2")
		require.True(t, stop >= 0 && promote > stop, "a clean stop, then the promotion:%s", eventsString(evs[cut:]))
		require.Equal(t, 1, old.inst.Calls(fakepg.OpClone)+old.inst.Calls(fakepg.OpInitdb), "no re-clone after a switchover")
		require.Equal(t, 2, old.inst.Info().Timeline)
		cl, err := l.store.Cluster(ctx)
		require.NoError(t, err)
		require.True(t, cl.Failover == nil || cl.Failover.Candidate == "", "/failover cleared: %+v", cl.Failover)
		require.NotNil(t, cl.History)
		require.Len(t, cl.History.Lines, 1)
		require.Equal(t, cand.name, cl.History.Lines[0].NewLeader)

		// To any healthy member.
		cut = len(c.world.Events())
		require.NoError(t, l.node.Switchover(ctx, "", time.Time{}))
		c.waitFor(time.Minute, "another leader", func() bool {
			s := c.stableLeader()
			return s != nil && s != cand
		})
		evs = c.world.Events()
		require.GreaterOrEqual(t, eventIndex(evs, cut, cand.name, fakepg.OpStop, "fast"), 0, "%s", eventsString(evs[cut:]))
		require.Equal(t, 1, c.initdbs())
		for _, n := range c.nodes {
			require.Equal(t, 3, n.inst.Info().Timeline)
			require.Zero(t, n.inst.Calls(fakepg.OpRewind))
		}
		c.requireNoSplitBrain()
	})
}

func TestSwitchoverRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, func(cfg *ha.Config) {
			if cfg.Name == "node3" {
				cfg.Tags = dcs.Tags{"nofailover": true}
				cfg.Bootstrap = nil
			}
		}).start()
		ctx := context.Background()
		l := c.waitStable(time.Minute)

		err := l.node.Switchover(ctx, "node3", time.Time{})
		require.ErrorIs(t, err, ha.ErrInvalidRequest)
		require.ErrorIs(t, err, failover.ErrCandidateNoFailover)
		err = l.node.Switchover(ctx, "nobody", time.Time{})
		require.ErrorIs(t, err, ha.ErrInvalidRequest)
		require.ErrorIs(t, err, failover.ErrUnknownMember)
		err = l.node.Switchover(ctx, l.name, time.Time{})
		require.ErrorIs(t, err, ha.ErrInvalidRequest)
		err = l.node.Switchover(ctx, "", time.Now().Add(-time.Hour))
		require.ErrorIs(t, err, ha.ErrInvalidRequest)
		err = l.node.Failover(ctx, "")
		require.ErrorIs(t, err, ha.ErrInvalidRequest)

		cl, err := l.store.Cluster(ctx)
		require.NoError(t, err)
		require.Nil(t, cl.Failover, "nothing written for a refused request")
		time.Sleep(time.Minute)
		require.True(t, c.stableLeader() == l, "%s still leads", l.name)
	})
}

// With no leader and automatic failover blocked by lag, an operator's
// failover names the member to promote.
func TestFailoverWithoutLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		ctx := context.Background()
		old := c.waitStable(time.Minute)
		rest := c.others(old)
		for _, r := range rest {
			r.inst.PauseStreaming()
		}
		lsn, err := old.inst.Write(4 << 20) // more than maximum_lag_on_failover
		require.NoError(t, err)
		c.waitFor(time.Minute, "/status carries the new position", func() bool {
			cl, err := old.store.Cluster(ctx)
			return err == nil && cl.Status.Optime >= int64(lsn)
		})
		require.NoError(t, c.stop(old))
		c.waitFor(time.Minute, "failover blocked by lag", func() bool {
			return rest[0].node.Status().Blocked == string(failover.BlockLag) && rest[1].node.Status().Blocked == string(failover.BlockLag)
		})
		time.Sleep(time.Minute)
		require.Empty(t, c.world.Writable())

		require.NoError(t, rest[0].node.Failover(ctx, rest[1].name))
		for _, r := range rest {
			r.inst.ResumeStreaming()
		}
		c.waitLeaderIs(time.Minute, rest[1])
		c.requireNoSplitBrain()
	})
}

// --- a crashed primary ---------------------------------------------------------

// While the lease holds, a crashed primary is restarted in place at once:
// same timeline, nobody else promoted.
func TestPrimaryCrashRestartedInPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		l := c.waitStable(time.Minute)
		cut := len(c.world.Events())
		l.inst.Crash()
		c.waitFor(time.Minute, "the primary back", func() bool { return l.inst.Writable() })
		evs := c.world.Events()
		crash := eventIndex(evs, cut, l.name, fakepg.OpCrash, "")
		start := eventIndex(evs, cut, l.name, fakepg.OpStart, "primary")
		require.True(t, crash >= 0 && start > crash, "%s", eventsString(evs[cut:]))
		require.Less(t, evs[start].At.Sub(evs[crash].At), time.Second, "woken by the exit, not by loop_wait")
		for _, e := range evs[cut:] {
			require.NotEqual(t, fakepg.OpPromote, e.Op, "nobody promoted: %s", e)
		}
		require.Equal(t, 1, l.inst.Info().Timeline)
		c.waitLeaderIs(time.Minute, l)
		c.requireNoSplitBrain()
	})
}

// With primary_start_timeout 0 a crashed primary is not restarted in
// place: it stops, releases the leader key at once (no waiting for the TTL)
// and the cluster promotes a member onto a new timeline.
func TestPrimaryCrashFailsOverWithZeroStartTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, func(cfg *ha.Config) { cfg.Bootstrap.DCS["primary_start_timeout"] = 0 }).start()
		kw := c.watchLeaderKey()
		old := c.waitStable(time.Minute)
		cut := len(c.world.Events())
		crashAt := time.Now()
		old.inst.Crash()
		var next *fnode
		c.waitFor(time.Minute, "a primary on timeline 2", func() bool {
			for _, n := range c.nodes {
				if i := n.inst.Info(); i.Primary && i.Timeline == 2 {
					next = n
					return true
				}
			}
			return false
		})
		released, ok := kw.firstDeleteAfter(crashAt)
		require.True(t, ok, "the leader key was released")
		require.Less(t, released.Sub(crashAt), time.Second, "released at once, not left to expire")
		evs := c.world.Events()
		crash := eventIndex(evs, cut, old.name, fakepg.OpCrash, "")
		promote := eventIndex(evs, cut, next.name, fakepg.OpPromote, "timeline 2")
		require.True(t, crash >= 0 && promote > crash, "%s", eventsString(evs[cut:]))
		require.Equal(t, -1, eventIndex(evs, cut, old.name, fakepg.OpStart, "primary"), "not restarted in place:%s", eventsString(evs[cut:]))
		c.waitLeaderIs(2*time.Minute, next)
		c.requireNoSplitBrain()
	})
}

// With primary_start_timeout 0, while the crashed primary restarts as a
// replica, another member wins the race its release starts.
func TestPrimaryCrashFailsOverToAnotherMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, func(cfg *ha.Config) { cfg.Bootstrap.DCS["primary_start_timeout"] = 0 }).start()
		old := c.waitStable(time.Minute)
		old.inst.DelayNext(fakepg.OpStart, time.Second) // restarting takes a moment
		old.inst.Crash()
		c.waitFor(time.Minute, "another member promoted", func() bool {
			for _, o := range c.others(old) {
				if o.inst.Writable() {
					return true
				}
			}
			return old.inst.Writable() // fail fast below
		})
		require.False(t, old.inst.Writable(), "the crashed primary took the leader key again:%s", eventsString(c.world.Events()))
	})
}

// A member whose Postgres is starting (here a replica restarting slowly after
// a crash) does not look like a running primary to its peers, which would
// stop every race until its start finished.
func TestStartingMemberDoesNotBlockFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		old := c.waitStable(time.Minute)
		slow, other := c.others(old)[0], c.others(old)[1]
		slow.inst.DelayNext(fakepg.OpStart, 10*time.Minute)
		slow.inst.Crash()
		c.waitFor(time.Minute, slow.name+" starting", func() bool { return slow.node.Status().State == failover.StateStarting })
		stopAt := time.Now()
		require.NoError(t, c.stop(old))
		c.waitFor(time.Minute, other.name+" promoted", func() bool { return other.inst.Writable() })
		require.Less(t, time.Since(stopAt), 10*time.Second)
	})
}

// A member whose Postgres is starting answers GET /patroni as Patroni does
// when its status query fails: state and role, no xlog (a stale
// xlog.location makes Patroni-compatible peers see a running primary).
func TestStartingMemberReportsNoPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		slow := c.others(c.waitStable(time.Minute))[0]
		slow.inst.DelayNext(fakepg.OpStart, 10*time.Minute)
		slow.inst.Crash()
		c.waitFor(time.Minute, slow.name+" starting", func() bool { return slow.node.Status().State == failover.StateStarting })
		_, body := call(slow.node.Handler(), http.MethodGet, "/patroni")
		require.NotContains(t, string(body), `"xlog"`, "%s", body)
	})
}

// --- lifecycle -------------------------------------------------------------------

func TestRunLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil)
		// New starts nothing: no Postgres call, no DCS write.
		time.Sleep(time.Minute)
		require.Empty(t, c.world.Events())
		require.Zero(t, c.srv.Revision())
		for _, n := range c.nodes {
			require.Zero(t, n.inst.Calls(fakepg.OpStatus))
		}

		c.start()
		l := c.waitStable(time.Minute)
		require.ErrorIs(t, l.node.Run(context.Background()), ha.ErrRunning)

		// Shutting the leader down stops its Postgres cleanly, releases the
		// key and revokes the lease before Run returns: another node takes
		// over at once, not after the TTL.
		kw := c.watchLeaderKey()
		cut := len(c.world.Events())
		stopAt := time.Now()
		require.NoError(t, c.stop(l))
		synctest.Wait() // the observer's watch delivers
		_, running := l.inst.Running()
		require.False(t, running)
		require.Equal(t, pg.StateShutDown, l.inst.Info().ControlState)
		evs := c.world.Events()
		require.GreaterOrEqual(t, eventIndex(evs, cut, l.name, fakepg.OpStop, "fast"), 0, "%s", eventsString(evs[cut:]))
		released, ok := kw.firstDeleteAfter(stopAt)
		require.True(t, ok)
		require.Equal(t, stopAt, released, "released before Run returned")
		cl, err := c.others(l)[0].store.Cluster(context.Background())
		require.NoError(t, err)
		_, hasMember := cl.Member(l.name)
		require.False(t, hasMember, "lease revoked: the member key is gone")
		var next *fnode
		c.waitFor(10*time.Second, "a new primary", func() bool {
			for _, o := range c.others(l) {
				if o.inst.Writable() {
					next = o
					return true
				}
			}
			return false
		})
		require.Equal(t, 2, next.inst.Info().Timeline)

		// A stopped node runs again and rejoins (its clean shutdown needs no
		// rewind or re-clone).
		c.run(l)
		c.waitLeaderIs(time.Minute, next)
		require.Equal(t, 1, l.inst.Calls(fakepg.OpInitdb)+l.inst.Calls(fakepg.OpClone))
		c.requireNoSplitBrain()

		// Once every Run returned, no goroutine the nodes started is left.
		c.stopAll()
		synctest.Wait()
		require.Empty(t, haGoroutines())
	})
}

// When the fast stop fails on shutdown (here its signal), Run escalates to
// an immediate stop rather than return leaving a writable primary that
// nothing fences once its lease runs out.
func TestShutdownWithFailedStopLeavesNoWritablePrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		l := c.waitStable(time.Minute)
		l.inst.FailNext(fakepg.OpStop, fmt.Errorf("kill: operation not permitted"))
		_ = c.stop(l)
		time.Sleep(2 * time.Minute)
		require.LessOrEqual(t, c.world.MaxWritable(), 1, "Run returned with Postgres still a writable primary, and its lease ran out:%s", eventsString(c.world.Events()))
	})
}

// haGoroutines lists the goroutines that run ha code or were started by it.
func haGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/pgha/pgha/ha.") {
			out = append(out, g)
		}
	}
	return out
}

// --- hooks -------------------------------------------------------------------------

type hookLog struct {
	mu      sync.Mutex
	roles   map[string][]string
	started map[string][]context.Context
	stopped map[string]int
}

func (h *hookLog) install(cfg *ha.Config) {
	name := cfg.Name
	cfg.Hooks = ha.Hooks{
		OnRoleChange: func(role string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.roles[name] = append(h.roles[name], role)
		},
		OnStartedLeading: func(ctx context.Context) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.started[name] = append(h.started[name], ctx)
		},
		OnStoppedLeading: func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.stopped[name]++
		},
	}
}

func (h *hookLog) get(name string) (roles []string, started []context.Context, stopped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.roles[name]), slices.Clone(h.started[name]), h.stopped[name]
}

func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &hookLog{roles: map[string][]string{}, started: map[string][]context.Context{}, stopped: map[string]int{}}
		c := newFakeCluster(t, names3, h.install).start()
		l := c.waitStable(time.Minute)
		synctest.Wait()
		roles, started, stopped := h.get(l.name)
		require.Contains(t, roles, dcs.RolePrimary)
		require.Len(t, started, 1, "OnStartedLeading once per tenure")
		lctx := started[0]
		require.NoError(t, lctx.Err())
		require.Zero(t, stopped)
		for _, o := range c.others(l) {
			roles, started, _ := h.get(o.name)
			require.Contains(t, roles, dcs.RoleReplica)
			require.NotContains(t, roles, dcs.RolePrimary)
			require.Empty(t, started)
		}

		// Leadership moves: the old leader's context is cancelled and it is
		// told it stopped leading; the new one starts.
		cand := c.others(l)[0]
		require.NoError(t, l.node.Switchover(context.Background(), cand.name, time.Time{}))
		c.waitLeaderIs(time.Minute, cand)
		synctest.Wait()
		require.ErrorIs(t, lctx.Err(), context.Canceled)
		roles, _, stopped = h.get(l.name)
		require.Equal(t, 1, stopped)
		require.Contains(t, roles, dcs.RoleReplica) // calls are concurrent: no order
		roles, started, _ = h.get(cand.name)
		require.Len(t, started, 1)
		require.Contains(t, roles, dcs.RolePrimary)
		cctx := started[0]

		// On exit every node is told, whether it led or not; the leader's
		// context ends.
		c.stopAll()
		synctest.Wait()
		require.ErrorIs(t, cctx.Err(), context.Canceled)
		_, _, stopped = h.get(l.name)
		require.Equal(t, 2, stopped, "once for the switchover, once on exit")
		for _, o := range c.others(l) {
			_, _, stopped := h.get(o.name)
			require.Equal(t, 1, stopped, "%s: once on exit", o.name)
		}
	})
}

// --- REST API ----------------------------------------------------------------------

func call(h http.Handler, method, path string) (int, []byte) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.Bytes()
}

func TestRESTHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, nil).start()
		l := c.waitStable(time.Minute)
		r := c.others(l)[0]
		lsn, err := l.inst.Write(1 << 16)
		require.NoError(t, err)
		time.Sleep(11 * time.Second) // a loop cycle publishes /status

		code, body := call(l.node.Handler(), http.MethodGet, "/patroni")
		require.Equal(t, http.StatusOK, code)
		var p struct {
			State    string `json:"state"`
			Role     string `json:"role"`
			Timeline int    `json:"timeline"`
			SysID    string `json:"database_system_identifier"`
			Version  int    `json:"server_version"`
			XLog     struct {
				Location *int64 `json:"location"`
				Received *int64 `json:"received_location"`
				Replayed *int64 `json:"replayed_location"`
			} `json:"xlog"`
			Replication string `json:"replication_state"`
			Patroni     struct {
				Name, Scope, Version string
			} `json:"patroni"`
		}
		require.NoError(t, json.Unmarshal(body, &p), "%s", body)
		require.Equal(t, "running", p.State)
		require.Equal(t, "primary", p.Role)
		require.Equal(t, 1, p.Timeline)
		require.Equal(t, fmt.Sprint(l.inst.Info().SystemID), p.SysID)
		require.Equal(t, 150000, p.Version)
		require.NotNil(t, p.XLog.Location)
		require.Equal(t, int64(lsn), *p.XLog.Location)
		require.Equal(t, l.name, p.Patroni.Name)
		require.Equal(t, "demo", p.Patroni.Scope)
		require.Equal(t, ha.Version, p.Patroni.Version)

		p.XLog.Location = nil
		code, body = call(r.node.Handler(), http.MethodGet, "/patroni")
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal(body, &p), "%s", body)
		require.Equal(t, "replica", p.Role)
		require.Equal(t, "running", p.State)
		require.Nil(t, p.XLog.Location)
		require.NotNil(t, p.XLog.Received)
		require.Equal(t, int64(lsn), *p.XLog.Received)
		require.Equal(t, int64(lsn), *p.XLog.Replayed)
		require.Equal(t, "streaming", p.Replication)
		require.Equal(t, r.name, p.Patroni.Name)

		for _, tc := range []struct {
			path            string
			leader, replica int
		}{
			{"/primary", 200, 503},
			{"/master", 200, 503},
			{"/", 200, 503},
			{"/leader", 200, 503},
			{"/replica", 503, 200},
			{"/replica?lag=1MB", 503, 200},
			{"/read-only", 200, 200},
			{"/health", 200, 200},
		} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				code, body := call(l.node.Handler(), m, tc.path)
				require.Equal(t, tc.leader, code, "%s %s on the leader", m, tc.path)
				if m == http.MethodHead {
					require.Empty(t, body, "HEAD %s: no body", tc.path)
				} else {
					require.True(t, json.Valid(body), "GET %s: the status body", tc.path)
				}
				code, body = call(r.node.Handler(), m, tc.path)
				require.Equal(t, tc.replica, code, "%s %s on a replica", m, tc.path)
				if m == http.MethodHead {
					require.Empty(t, body)
				}
			}
		}

		// A fenced leader stops answering /primary at once, before its loop
		// catches up.
		c.srv.Partition(l.name)
		c.waitFor(time.Minute, "the fence", func() bool { return !l.inst.Writable() })
		code, _ = call(l.node.Handler(), http.MethodGet, "/primary")
		require.Equal(t, http.StatusServiceUnavailable, code)
		code, _ = call(l.node.Handler(), http.MethodGet, "/leader")
		require.Equal(t, http.StatusServiceUnavailable, code)
		c.srv.Heal(l.name)
	})
}

// Run owns every goroutine it starts, hooks included: a leader-scoped job
// started by OnStartedLeading has finished its clean-up when Run returns.
func TestRunWaitsForHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		finished := map[string]bool{}
		c := newFakeCluster(t, names3, func(cfg *ha.Config) {
			name := cfg.Name
			cfg.Hooks.OnStartedLeading = func(ctx context.Context) {
				<-ctx.Done()
				time.Sleep(time.Second) // clean-up
				mu.Lock()
				finished[name] = true
				mu.Unlock()
			}
		}).start()
		l := c.waitStable(time.Minute)
		synctest.Wait()
		require.NoError(t, c.stop(l))
		mu.Lock()
		done := finished[l.name]
		mu.Unlock()
		if !done {
			t.Error("Run returned before the OnStartedLeading goroutine it started had finished")
		}
		c.stopAll()
		time.Sleep(time.Minute) // let leftover hooks end, so the bubble can
	})
}

// A promotion that fails is given up: the member releases the key and backs
// off for a TTL (Patroni's pre_promote failure), others may race meanwhile,
// and the cluster gets a leader once a promotion succeeds. Fails now and
// then: the lease keeper's RefreshLeader, in flight while the loop releases
// the key, re-creates it (as the Store contract says it does for an absent
// key), and the releasing node then holds a key it does not act on, kept
// alive by its KeepAlive: no leader ever again. A short renew interval
// makes the race likelier.
func TestFailedPromotionsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newFakeCluster(t, names3, func(cfg *ha.Config) { cfg.RenewInterval = 5 * time.Millisecond }).start()
		old := c.waitStable(time.Minute)
		rest := c.others(old)
		for _, o := range rest {
			o.inst.FailNext(fakepg.OpPromote, fmt.Errorf("pg_promote: could not signal the postmaster"))
		}
		cut := len(c.world.Events())
		require.NoError(t, c.stop(old))
		var next *fnode
		c.waitFor(2*time.Minute, "a member promoted", func() bool {
			for _, o := range rest {
				if o.inst.Writable() {
					next = o
					return true
				}
			}
			return false
		})
		evs := c.world.Events()[cut:]
		require.Equal(t, 3, rest[0].inst.Calls(fakepg.OpPromote)+rest[1].inst.Calls(fakepg.OpPromote),
			"each failed once, then one succeeded:%s", eventsString(evs))
		c.waitLeaderIs(time.Minute, next)
		c.requireNoSplitBrain()
	})
}

// OnRoleChange reports the role changes in the order they happened, so the
// last role a hook saw is the node's role. Each call runs in its own
// goroutine today, so "demoted" can arrive after "replica".
func TestRoleChangesReportedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &hookLog{roles: map[string][]string{}, started: map[string][]context.Context{}, stopped: map[string]int{}}
		c := newFakeCluster(t, names3, h.install).start()
		l := c.waitStable(time.Minute)
		for range 10 {
			cand := c.others(l)[0]
			require.NoError(t, l.node.Switchover(context.Background(), cand.name, time.Time{}))
			c.waitLeaderIs(time.Minute, cand)
			synctest.Wait()
			for _, n := range c.nodes {
				roles, _, _ := h.get(n.name)
				require.Equal(t, n.node.Status().Role, roles[len(roles)-1], "%s: last role reported (of %v)", n.name, roles)
			}
			l = cand
		}
	})
}

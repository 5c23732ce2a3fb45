package ha_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/internal/fakepg"
)

// These tests run on memdcs and fakepg in synctest bubbles, like
// node_test.go: the BeforePromote hook's veto and the watchdog's life
// around a promotion. The callback scripts, which need real processes,
// are tested on real nodes in callbacks_cluster_test.go.

// --- BeforePromote -------------------------------------------------------------------

// vetoes counts BeforePromote calls per node and vetoes those of the nodes
// marked.
type vetoes struct {
	mu    sync.Mutex
	veto  map[string]bool
	calls map[string]int
}

func newVetoes() *vetoes { return &vetoes{veto: map[string]bool{}, calls: map[string]int{}} }

func (v *vetoes) install(cfg *ha.Config) {
	name := cfg.Name
	cfg.Hooks.BeforePromote = func(ctx context.Context) error {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.calls[name]++
		if v.veto[name] {
			return errors.New("not on this node")
		}
		return nil
	}
}

func (v *vetoes) set(name string, veto bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.veto[name] = veto
}

func (v *vetoes) count(name string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls[name]
}

// The only member that could take over vetoes its promotion: it takes the
// key, is refused, releases it and backs off for a TTL each time, never
// promotes and stays a replica. Once the veto is lifted it is promoted.
func TestBeforePromoteVetoKeepsTheNodeReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := newVetoes()
		c := newFakeCluster(t, names3, v.install).start()
		l := c.waitStable(time.Minute)
		cand, other := c.others(l)[0], c.others(l)[1]
		v.set(cand.name, true)
		require.NoError(t, c.stop(other))
		require.NoError(t, c.stop(l))

		start := time.Now()
		c.waitFor(time.Minute, cand.name+" asked BeforePromote", func() bool { return v.count(cand.name) > 0 })
		time.Sleep(3 * time.Minute)
		calls := v.count(cand.name)
		require.Zero(t, cand.inst.Calls(fakepg.OpPromote), "vetoed: pg_promote never called")
		require.False(t, cand.inst.Writable())
		require.True(t, cand.inst.Info().Running, "still a running replica")
		// One attempt per TTL at most (30s): the back-off of a failed
		// promotion.
		elapsed := time.Since(start)
		require.LessOrEqual(t, calls, int(elapsed/(30*time.Second))+1, "%d attempts in %s", calls, elapsed)
		require.GreaterOrEqual(t, calls, 2, "it tried again after the back-off")
		cl, err := cand.store.Cluster(context.Background())
		require.NoError(t, err)
		require.NotEqual(t, cand.name, cl.LeaderName(), "the key is released, not kept by a node that will not promote")

		v.set(cand.name, false)
		c.waitFor(2*time.Minute, cand.name+" promoted once allowed", func() bool {
			return cand.inst.Writable() && cand.node.Status().IsLeader
		})
		require.Equal(t, 1, cand.inst.Calls(fakepg.OpPromote))
		c.requireNoSplitBrain()
	})
}

// A member that vetoes is passed over: with the other replica cut off from
// the DCS, the vetoing one wins the key and gives it up; once the other is
// back, it is promoted.
func TestBeforePromoteVetoHandsOverToAnotherMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := newVetoes()
		c := newFakeCluster(t, names3, v.install).start()
		l := c.waitStable(time.Minute)
		cand, other := c.others(l)[0], c.others(l)[1]
		v.set(cand.name, true)
		c.srv.Partition(other.name)
		require.NoError(t, c.stop(l))
		c.waitFor(time.Minute, cand.name+" asked BeforePromote", func() bool { return v.count(cand.name) > 0 })
		c.srv.Heal(other.name)
		c.waitFor(2*time.Minute, other.name+" promoted", func() bool {
			return other.inst.Writable() && other.node.Status().IsLeader
		})
		require.Zero(t, cand.inst.Calls(fakepg.OpPromote))
		require.Equal(t, 1, v.count(other.name), "the other member's hook allowed it")
		c.waitFor(time.Minute, cand.name+" follows "+other.name, func() bool {
			i := cand.inst.Info()
			return i.Streaming && i.Upstream == other.name+":5432"
		})
		c.requireNoSplitBrain()
	})
}

// --- watchdog ------------------------------------------------------------------------

// wdDriver is a watchdog driver that records what the node does with the
// device, and whether the node's Postgres was writable when it was armed.
type wdDriver struct {
	inst *fakepg.Instance

	mu              sync.Mutex
	checkErr        error
	openErr         error
	opens, closes   int
	keepalives      int
	timeouts        []time.Duration
	writableAtOpen  []bool
	promotesAtOpen  []int
	open            bool
	keepalivesAtEnd int
}

func (d *wdDriver) Check(string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkErr
}

func (d *wdDriver) Open(string) (watchdog.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.openErr != nil {
		return nil, d.openErr
	}
	d.opens++
	d.open = true
	d.writableAtOpen = append(d.writableAtOpen, d.inst.Writable())
	d.promotesAtOpen = append(d.promotesAtOpen, d.inst.Calls(fakepg.OpPromote))
	return (*wdDevice)(d), nil
}

type wdDevice wdDriver

func (f *wdDevice) Keepalive() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepalives++
	return nil
}

func (f *wdDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timeouts = append(f.timeouts, t)
	return t, nil
}

func (f *wdDevice) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	f.open = false
	return nil
}

type wdSnapshot struct {
	opens, closes, keepalives int
	open                      bool
	timeouts                  []time.Duration
	writableAtOpen            []bool
	promotesAtOpen            []int
}

func (d *wdDriver) snap() wdSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return wdSnapshot{d.opens, d.closes, d.keepalives, d.open, append([]time.Duration(nil), d.timeouts...),
		append([]bool(nil), d.writableAtOpen...), append([]int(nil), d.promotesAtOpen...)}
}

func (d *wdDriver) fail(check, open error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.checkErr, d.openErr = check, open
}

// wdCluster makes a cluster whose nodes use the watchdog in mode, each
// with its own recording driver.
func wdCluster(t *testing.T, mode watchdog.Mode) (*fcluster, map[string]*wdDriver) {
	drivers := map[string]*wdDriver{}
	c := newFakeCluster(t, names3, func(cfg *ha.Config) {
		d := &wdDriver{inst: cfg.Postgres.(*fakepg.Instance)}
		drivers[cfg.Name] = d
		cfg.Watchdog = watchdog.Config{Mode: mode, Driver: d}
	})
	return c.start(), drivers
}

// The watchdog is armed (opened, timeout ttl - safety margin = 25s) before
// the new leader's Postgres is promoted, kept alive with every renewal of
// the leader key (every ttl/4 = 7.5s) while it leads, and disabled on the
// old leader once its Postgres stopped. Replicas never open it.
func TestWatchdogArmedBeforePromotionAndKeptAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeRequired)
		l := c.waitStable(time.Minute)
		synctest.Wait()
		ls := drivers[l.name].snap()
		require.True(t, ls.open, "the leader's watchdog is armed")
		require.Equal(t, []time.Duration{25 * time.Second}, ls.timeouts)
		for _, o := range c.others(l) {
			require.Zero(t, drivers[o.name].snap().opens, "%s: a replica does not arm it", o.name)
		}

		// Kept alive at every renewal: about 16 in two minutes.
		before := drivers[l.name].snap().keepalives
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		got := drivers[l.name].snap().keepalives - before
		require.GreaterOrEqual(t, got, 14, "keepalives in 2 minutes of renewals every 7.5s")
		require.LessOrEqual(t, got, 18)

		// Switchover: the candidate arms its watchdog before pg_promote;
		// the old leader disables its own once its Postgres stopped.
		cand := c.others(l)[0]
		require.NoError(t, l.node.Switchover(context.Background(), cand.name, time.Time{}))
		c.waitLeaderIs(time.Minute, cand)
		synctest.Wait()
		cs := drivers[cand.name].snap()
		require.Equal(t, 1, cs.opens)
		require.Equal(t, []bool{false}, cs.writableAtOpen, "armed while still a replica")
		require.Equal(t, []int{0}, cs.promotesAtOpen, "armed before pg_promote")
		require.True(t, cs.open)
		ls = drivers[l.name].snap()
		require.False(t, ls.open, "the old leader's watchdog is disabled")
		require.Equal(t, 1, ls.closes)
		oldKeepalives := ls.keepalives
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, oldKeepalives, drivers[l.name].snap().keepalives, "no keepalive once demoted")
		require.Greater(t, drivers[cand.name].snap().keepalives, cs.keepalives)

		// Shutdown disables it after Postgres stopped.
		c.stopAll()
		require.False(t, drivers[cand.name].snap().open)
		c.requireNoSplitBrain()
	})
}

func patroniJSON(t *testing.T, n *fnode) map[string]any {
	t.Helper()
	code, body := call(n.node.Handler(), http.MethodGet, "/patroni")
	require.Equal(t, http.StatusOK, code)
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	return m
}

// A replica whose required watchdog is unusable reports watchdog_failed,
// never takes the leader key and is passed over; the other replica is
// promoted.
func TestWatchdogRequiredButUnusableIsNotPromoted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeRequired)
		l := c.waitStable(time.Minute)
		bad, good := c.others(l)[0], c.others(l)[1]
		drivers[bad.name].fail(errors.New("/dev/watchdog: no such device"), nil)
		c.waitFor(time.Minute, bad.name+" reports watchdog_failed", func() bool {
			return patroniJSON(t, bad)["watchdog_failed"] == true
		})
		require.Nil(t, patroniJSON(t, good)["watchdog_failed"])
		require.True(t, bad.node.Status().WatchdogFailed)

		require.NoError(t, c.stop(l))
		c.waitFor(2*time.Minute, good.name+" promoted", func() bool {
			return good.inst.Writable() && good.node.Status().IsLeader
		})
		require.Zero(t, bad.inst.Calls(fakepg.OpPromote))
		require.Zero(t, drivers[bad.name].snap().opens)
		c.requireNoSplitBrain()
	})
}

// The device passes the check but cannot be opened: the member that won
// the key refuses to promote, releases the key, reports watchdog_failed
// from then on, and the other member is promoted.
func TestWatchdogActivationFailureRefusesPromotion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeRequired)
		l := c.waitStable(time.Minute)
		bad, good := c.others(l)[0], c.others(l)[1]
		drivers[bad.name].fail(nil, errors.New("device or resource busy"))
		c.srv.Partition(good.name) // bad is the only one that can take the key
		require.NoError(t, c.stop(l))
		c.waitFor(time.Minute, bad.name+" reports watchdog_failed", func() bool { return bad.node.Status().WatchdogFailed })
		require.Zero(t, bad.inst.Calls(fakepg.OpPromote), "refused before pg_promote")
		require.False(t, bad.inst.Writable())
		c.srv.Heal(good.name)
		c.waitFor(2*time.Minute, good.name+" promoted", func() bool {
			return good.inst.Writable() && good.node.Status().IsLeader
		})
		require.Zero(t, bad.inst.Calls(fakepg.OpPromote))
		require.Equal(t, true, patroniJSON(t, bad)["watchdog_failed"])
		c.requireNoSplitBrain()
	})
}

// In automatic mode a watchdog that cannot be opened does not stop
// anything: the node is promoted without it.
func TestWatchdogAutomaticRunsWithout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeAutomatic)
		l := c.waitStable(time.Minute)
		cand := c.others(l)[0]
		drivers[cand.name].fail(errors.New("no such device"), errors.New("no such device"))
		require.NoError(t, l.node.Switchover(context.Background(), cand.name, time.Time{}))
		c.waitLeaderIs(time.Minute, cand)
		require.False(t, cand.node.Status().WatchdogFailed)
		require.Zero(t, drivers[cand.name].snap().opens)
		c.requireNoSplitBrain()
	})
}

// A leader cut off from the DCS gets no keepalive from then on (only
// renewals of the leader key keep the watchdog alive); its fence stops
// Postgres before the lease can expire, and the watchdog is disabled once
// Postgres stopped.
func TestWatchdogNotKeptAliveWithoutRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeRequired)
		l := c.waitStable(time.Minute)
		synctest.Wait()
		before := drivers[l.name].snap()
		require.True(t, before.open)
		c.srv.Partition(l.name)
		c.waitFor(time.Minute, l.name+" fenced", func() bool { return !l.inst.Info().Running })
		synctest.Wait()
		after := drivers[l.name].snap()
		require.Equal(t, before.keepalives, after.keepalives, "no keepalive without a renewal")
		require.False(t, after.open, "disabled once Postgres stopped")
		c.srv.Heal(l.name)
		c.waitStable(2 * time.Minute)
		c.requireNoSplitBrain()
	})
}

// Pausing the cluster disables the leader's watchdog (Patroni: no
// automatic action, no watchdog); resuming arms it again.
func TestWatchdogDisabledWhilePaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, drivers := wdCluster(t, watchdog.ModeRequired)
		l := c.waitStable(time.Minute)
		synctest.Wait()
		require.True(t, drivers[l.name].snap().open)
		setPause := func(on bool) {
			cfg := defaultDCS()
			cfg["pause"] = on
			_, err := l.store.SetConfig(context.Background(), cfg, dcs.Unconditional)
			require.NoError(t, err)
		}
		setPause(true)
		c.waitFor(time.Minute, "the watchdog disabled while paused", func() bool { return !drivers[l.name].snap().open })
		require.True(t, l.inst.Writable(), "the primary runs on")
		setPause(false)
		c.waitFor(time.Minute, "the watchdog armed again", func() bool { return drivers[l.name].snap().open })
		require.Equal(t, 2, drivers[l.name].snap().opens)
		c.requireNoSplitBrain()
	})
}

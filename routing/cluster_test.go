package routing_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/routing"
)

// writeLoop runs routed writes from several goroutines and records where
// each one landed.
type writeLoop struct {
	r    *routing.Router
	stop chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	writes []landed
	errs   []error
	done   atomic.Int64
}

// landed is one acknowledged write: the server's port and the server's
// clock when the INSERT ran (same host as the test, so comparable with
// time.Now).
type landed struct {
	port int
	at   time.Time
}

func startWriteLoop(t testing.TB, r *routing.Router, workers int) *writeLoop {
	w := &writeLoop{r: r, stop: make(chan struct{})}
	for i := range workers {
		w.wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-w.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				var l landed
				_, err := r.Write(ctx, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "INSERT INTO w (v, port, at) VALUES ($1, inet_server_port(), clock_timestamp()) RETURNING port, at",
						fmt.Sprintf("%d-%d", i, j)).Scan(&l.port, &l.at)
				})
				cancel()
				w.mu.Lock()
				if err != nil {
					w.errs = append(w.errs, err)
				} else {
					w.writes = append(w.writes, l)
				}
				w.mu.Unlock()
				w.done.Add(1)
			}
		})
	}
	t.Cleanup(w.finish)
	return w
}

func (w *writeLoop) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// waitMore waits until n more writes have finished.
func (w *writeLoop) waitMore(t testing.TB, n int64) {
	t.Helper()
	target := w.done.Load() + n
	pgtest.Eventually(t, 60*time.Second, func() error {
		if d := w.done.Load(); d < target {
			return fmt.Errorf("%d of %d writes", d, target)
		}
		return nil
	})
}

// result returns the writes and errors so far.
func (w *writeLoop) result() ([]landed, []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]landed(nil), w.writes...), append([]error(nil), w.errs...)
}

// leaderLog records when the router saw each leader change.
type leaderLog struct {
	mu   sync.Mutex
	seen []struct {
		e  routing.Epoch
		at time.Time
	}
}

func (l *leaderLog) hook(_, e routing.Epoch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, struct {
		e  routing.Epoch
		at time.Time
	}{e, time.Now()})
}

// leftAt returns when the router first saw leader old end after since.
func (l *leaderLog) leftAt(old string, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.seen {
		if s.at.After(since) && s.e.Leader != old {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func (l *leaderLog) leader() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return ""
	}
	return l.seen[len(l.seen)-1].e.Leader
}

// TestHACluster runs the router on a real three-node pgha cluster (embedded
// etcd, real PostgreSQL, ha.Node): reads within the lag bound and never on
// the noloadbalance member, read-your-writes on a lagging replica, an
// ambiguous commit, and a switchover and a failover followed under a write
// loop with no write reaching the old primary after the change was seen. A
// second router follows the same cluster with FromHosts (probes only).
func TestHACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd, PostgreSQL and ha nodes")
	}
	c := startHACluster(t, 3, map[string]dcs.Tags{"node3": {"noloadbalance": true}})
	p1 := c.waitStable(120*time.Second, nil)
	ports := map[int]string{}
	for _, n := range c.nodes {
		ports[port(n.inst)] = n.name
	}

	var leaders leaderLog
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := routing.New(ctx, routing.Config{
		Source:        routing.FromDCS(c.reader()),
		ConnString:    baseConnString,
		MaxLag:        256 << 10,
		ProbeInterval: 50 * time.Millisecond,
		Logger:        pgtest.Logger(t, "router"),
		Hooks:         routing.Hooks{OnLeaderChange: leaders.hook},
	})
	require.NoError(t, err)
	defer r.Close()
	waitTopology(t, r, "primary "+p1.name, func(top *routing.Topology) bool { p, ok := top.Primary(); return ok && p.Name == p1.name })
	_, err = r.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE w (id serial PRIMARY KEY, v text, port int, at timestamptz, pad text)")
		return err
	})
	require.NoError(t, err)

	// The same cluster through FromHosts: the probes decide the roles.
	var addrs []string
	addrName := map[string]string{}
	for _, n := range c.nodes {
		a := hostAddr(n.inst)
		addrs = append(addrs, a)
		addrName[a] = n.name
	}
	hr, err := routing.New(ctx, routing.Config{
		Source: routing.FromHosts(addrs...), ConnString: baseConnString, MaxLag: 256 << 10,
		ProbeInterval: 50 * time.Millisecond, Logger: pgtest.Logger(t, "hosts router"),
	})
	require.NoError(t, err)
	defer hr.Close()
	hostsPrimary := func(name string) func(*routing.Topology) bool {
		return func(top *routing.Topology) bool { p, ok := top.Primary(); return ok && addrName[p.Name] == name }
	}
	waitTopology(t, hr, "hosts: primary "+p1.name, hostsPrimary(p1.name))

	readVia := func(r *routing.Router, opts routing.ReadOptions, want string) (string, int) {
		var port, n int
		require.NoError(t, r.Read(ctx, opts, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT inet_server_port(), (SELECT count(*) FROM w WHERE v = $1)", want).Scan(&port, &n)
		}))
		return ports[port], n
	}
	readOn := func(opts routing.ReadOptions, want string) (string, int) { return readVia(r, opts, want) }

	t.Run("ReadsAndLagBound", func(t *testing.T) {
		var replicas []string
		for _, n := range c.nodes {
			if n != p1 && n.name != "node3" {
				replicas = append(replicas, n.name)
			}
		}
		waitTopology(t, r, "replicas", func(top *routing.Topology) bool { return len(top.Replicas(256<<10)) == len(replicas) })
		for range 20 {
			on, _ := readOn(routing.ReadOptions{}, "")
			require.NotEqual(t, "node3", on, "never the noloadbalance member")
			if p1.name != "node3" {
				require.Contains(t, replicas, on)
			}
		}
		// FromHosts: criteria, and replica connections are read-only.
		waitTopology(t, hr, "hosts: two replicas", func(top *routing.Topology) bool { return len(top.Replicas(256<<10)) == 2 })
		for crit, wantPrimary := range map[routing.Criterion]bool{routing.Primary: true, routing.PreferPrimary: true, routing.Standby: false, routing.PreferStandby: false} {
			conn, err := hr.Acquire(ctx, crit)
			require.NoError(t, err, crit.String())
			got, err := serverPort(ctx, conn)
			require.NoError(t, err)
			if crit == routing.Standby {
				_, err = conn.Exec(ctx, "INSERT INTO w (v) VALUES ('nope')")
				require.Error(t, err, "a replica connection is read-only")
			}
			conn.Release()
			require.Equal(t, wantPrimary, ports[got] == p1.name, crit.String())
		}
		for range 4 {
			conn, err := hr.Any(ctx)
			require.NoError(t, err)
			_, err = serverPort(ctx, conn)
			conn.Release()
			require.NoError(t, err)
		}
		// Pause replay everywhere and write past the bound: reads go to
		// the primary only.
		for _, n := range c.nodes {
			if n != p1 {
				execOn(t, n.inst, "SELECT pg_wal_replay_pause()")
			}
		}
		tok, err := r.Write(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO w (v, pad) SELECT 'bulk', repeat('x', 1000) FROM generate_series(1, 600)")
			return err
		})
		require.NoError(t, err)
		for _, rr := range []*routing.Router{r, hr} {
			waitTopology(t, rr, "replicas beyond the bound", func(top *routing.Topology) bool { return len(top.Replicas(256<<10)) == 0 })
			for range 20 {
				on, _ := readVia(rr, routing.ReadOptions{}, "")
				require.Equal(t, p1.name, on, "no replica beyond the lag bound")
			}
		}
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = hr.Replica(short, routing.ReadOptions{Fallback: routing.FallbackNone})
		cancelShort()
		require.ErrorIs(t, err, routing.ErrNoNode)
		// Read-your-writes on a lagging replica: with no lag bound the
		// replicas are eligible, but none has replayed the token.
		for _, rr := range []*routing.Router{r, hr} {
			for range 5 {
				on, n := readVia(rr, routing.ReadOptions{After: tok, MaxLag: -1, Wait: 50 * time.Millisecond}, "bulk")
				require.Equal(t, 600, n, "read-your-writes served by %s", on)
				require.Equal(t, p1.name, on)
			}
		}
		for _, n := range c.nodes {
			if n != p1 {
				execOn(t, n.inst, "SELECT pg_wal_replay_resume()")
			}
		}
		for _, rr := range []*routing.Router{r, hr} {
			pgtest.Eventually(t, 30*time.Second, func() error {
				on, n := readVia(rr, routing.ReadOptions{After: tok}, "bulk")
				require.Equal(t, 600, n, "read-your-writes served by %s", on)
				if on == p1.name {
					return fmt.Errorf("still served by the primary")
				}
				return nil
			})
		}
	})

	t.Run("AmbiguousCommit", func(t *testing.T) {
		execOn(t, p1.inst, "ALTER SYSTEM SET synchronous_standby_names = 'ghost'", "SELECT pg_reload_conf()")
		defer execOn(t, p1.inst, "ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()")
		pgtest.Eventually(t, 10*time.Second, func() error {
			var s string
			if err := directConn(t, p1.inst).QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&s); err != nil || s != "ghost" {
				return fmt.Errorf("synchronous_standby_names = %q (%v)", s, err)
			}
			return nil
		})
		admin := directConn(t, p1.inst)
		var attempts atomic.Int32
		killed := make(chan error, 1)
		_, err := r.Write(ctx, func(tx pgx.Tx) error {
			if attempts.Add(1) > 1 {
				return errors.New("retried")
			}
			var pid int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			go func() {
				for ctx.Err() == nil {
					var waiting bool
					if err := admin.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'SyncRep'", pid).Scan(&waiting); err != nil {
						killed <- err
						return
					}
					if waiting {
						_, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
						killed <- err
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
			_, err := tx.Exec(ctx, "INSERT INTO w (v) VALUES ('ambiguous')")
			return err
		})
		require.NoError(t, <-killed)
		require.ErrorIs(t, err, routing.ErrAmbiguousCommit)
		require.Equal(t, int32(1), attempts.Load(), "an ambiguous commit is never retried")
	})

	// followed runs a write loop across a change of primary made by act,
	// and checks that the writes continue on the new primary, that none
	// failed, and that no write reached the old primary after the router
	// saw the change.
	followed := func(t *testing.T, old *haNode, act func()) *haNode {
		w := startWriteLoop(t, r, 4)
		w.waitMore(t, 20)
		before := time.Now()
		act()
		p := c.waitStable(120*time.Second, old)
		require.NotEqual(t, old.name, p.name)
		waitTopology(t, r, "new primary", func(top *routing.Topology) bool { pn, ok := top.Primary(); return ok && pn.Name == p.name })
		w.waitMore(t, 40)
		w.finish()
		left, ok := leaders.leftAt(old.name, before)
		require.True(t, ok, "the router saw the change")
		writes, errs := w.result()
		for _, err := range errs {
			require.ErrorIs(t, err, routing.ErrAmbiguousCommit, "only an ambiguous commit may surface")
		}
		t.Logf("%d writes, %d ambiguous; leader change seen %s after the action", len(writes), len(errs), left.Sub(before))
		onNew := 0
		for _, l := range writes {
			switch ports[l.port] {
			case old.name:
				require.False(t, l.at.After(left), "a write reached the old primary %s after the change was seen", l.at.Sub(left))
			case p.name:
				onNew++
			}
		}
		require.Positive(t, onNew)
		return p
	}

	var p2 *haNode
	t.Run("SwitchoverFollowed", func(t *testing.T) {
		var cand *haNode
		for _, n := range c.nodes {
			if n != p1 {
				cand = n
				break
			}
		}
		p2 = followed(t, p1, func() {
			require.NoError(t, cand.node.Switchover(ctx, cand.name, time.Time{}))
		})
		require.Equal(t, cand.name, p2.name)
		require.Positive(t, r.Stats().HeldAcquisitions)
		waitTopology(t, hr, "hosts: primary "+p2.name, hostsPrimary(p2.name))
	})
	if p2 == nil {
		return
	}
	c.waitStable(120*time.Second, nil)

	t.Run("FailoverFollowed", func(t *testing.T) {
		p3 := followed(t, p2, func() { p2.proxy.Pause() })
		p2.proxy.Resume()
		waitTopology(t, hr, "hosts: primary "+p3.name, hostsPrimary(p3.name))
		require.Zero(t, hr.Stats().Conflicts, "never two writable hosts on one timeline")
	})
}

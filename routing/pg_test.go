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
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/routing"
)

// These tests run the router on memdcs in front of real PostgreSQL
// servers: two standalone primaries, "a" and "b", stand for the members, and
// the test moves the leader key between them. Probing is off (both servers
// are writable), so the DCS alone decides, as in an application's unit
// tests.

func connURL(inst *pg.Instance) string {
	return fmt.Sprintf("postgres://127.0.0.1:%d/postgres", port(inst))
}

func TestPostgresBehindMemDCS(t *testing.T) {
	pgtest.BinDir(t)
	t.Parallel()
	a := pgtest.Init(t, pgtest.Config(t, "a"))
	b := pgtest.Init(t, pgtest.Config(t, "b"))
	for _, inst := range []*pg.Instance{a, b} {
		execOn(t, inst, "CREATE TABLE t (id serial PRIMARY KEY, v text, attempt int)",
			"CREATE TABLE d (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
	}
	newRouter := func(t *testing.T, cfg routing.Config) (*fakeCluster, *routing.Router, <-chan routing.Epoch) {
		f := newFakeCluster(t, "a", "b")
		f.member(t, "a", connURL(a), dcs.RolePrimary, 100, nil)
		f.member(t, "b", connURL(b), dcs.RoleReplica, 100, nil)
		hooks, changes := leaderChanges()
		if cfg.Hooks.OnRetry != nil {
			hooks.OnRetry = cfg.Hooks.OnRetry
		}
		cfg.Hooks = hooks
		cfg.Logger = pgtest.Logger(t, "router")
		cfg.RetryInterval, cfg.MaxRetryInterval = 5*time.Millisecond, 50*time.Millisecond
		return f, newFakeRouter(t, f, cfg), changes
	}
	clear := func(t *testing.T) {
		for _, inst := range []*pg.Instance{a, b} {
			execOn(t, inst, "TRUNCATE t, d")
		}
	}

	t.Run("PrimaryWaitsFollowsAndFences", func(t *testing.T) {
		clear(t)
		f, r, changes := newRouter(t, routing.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		// Primary waits for a leader instead of failing.
		type res struct {
			c   interface{ Release() }
			err error
			p   int
		}
		got := make(chan res, 1)
		go func() {
			c, err := r.Primary(ctx)
			if err != nil {
				got <- res{err: err}
				return
			}
			p, err := serverPort(ctx, c)
			got <- res{c: c, p: p, err: err}
		}()
		f.lead(t, "a")
		g := <-got
		require.NoError(t, g.err)
		require.Equal(t, port(a), g.p)
		g.c.Release()

		// A transaction in flight on a when the leader moves to b.
		conn, err := r.Primary(ctx)
		require.NoError(t, err)
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "INSERT INTO t (v) VALUES ('in flight')")
		require.NoError(t, err)

		f.member(t, "a", connURL(a), dcs.RoleReplica, 100, nil)
		f.lead(t, "b")
		waitLeader(t, changes, "b")
		// The router cut it: nothing more reaches a over it.
		_, err = tx.Exec(ctx, "INSERT INTO t (v) VALUES ('after the change')")
		require.Error(t, err)
		require.True(t, routing.SafeToRetry(err), "a cut connection is safe to retry before COMMIT: %v", err)
		require.Error(t, tx.Commit(ctx))
		conn.Release()
		require.Positive(t, r.Stats().FencedConns)
		require.Zero(t, countOn(t, a, "SELECT count(*) FROM t"), "nothing committed on the old primary")

		c2, err := r.Primary(ctx)
		require.NoError(t, err)
		p, err := serverPort(ctx, c2)
		c2.Release()
		require.NoError(t, err)
		require.Equal(t, port(b), p)
	})

	t.Run("WriteRetriesOnTheNewPrimary", func(t *testing.T) {
		clear(t)
		var retried []error
		var mu sync.Mutex
		f, r, changes := newRouter(t, routing.Config{Hooks: routing.Hooks{OnRetry: func(op string, attempt int, err error) {
			mu.Lock()
			defer mu.Unlock()
			retried = append(retried, err)
		}}})
		f.lead(t, "a")
		waitLeader(t, changes, "a")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var attempts atomic.Int32
		lsn, err := r.Write(ctx, func(tx pgx.Tx) error {
			n := attempts.Add(1)
			if _, err := tx.Exec(ctx, "INSERT INTO t (v, attempt) VALUES ('first', $1)", n); err != nil {
				return err
			}
			if n == 1 {
				// The leader moves in the middle of the transaction.
				f.member(t, "a", connURL(a), dcs.RoleReplica, 100, nil)
				f.lead(t, "b")
				waitLeader(t, changes, "b")
			}
			_, err := tx.Exec(ctx, "INSERT INTO t (v, attempt) VALUES ('second', $1)", n)
			return err
		})
		require.NoError(t, err)
		require.Equal(t, int32(2), attempts.Load())
		require.Positive(t, lsn)
		require.NotEqual(t, routing.LSNUnknown, lsn)
		mu.Lock()
		require.Len(t, retried, 1)
		require.ErrorIs(t, retried[0], routing.ErrFenced)
		mu.Unlock()
		require.Zero(t, countOn(t, a, "SELECT count(*) FROM t"), "no write reached the old primary after the change was seen")
		require.Equal(t, 2, countOn(t, b, "SELECT count(*) FROM t WHERE attempt = 2"))
		require.Equal(t, int64(1), r.Stats().Retries)

		// Read with the token: no replica here, so the primary answers.
		var n int
		require.NoError(t, r.Read(ctx, routing.ReadOptions{After: lsn}, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
		}))
		require.Equal(t, 2, n)

		// An application error is returned, not retried.
		attempts.Store(0)
		boom := errors.New("out of stock")
		_, err = r.Write(ctx, func(tx pgx.Tx) error { attempts.Add(1); return boom })
		require.ErrorIs(t, err, boom)
		require.Equal(t, int32(1), attempts.Load())
	})

	t.Run("AmbiguousAndDefiniteCommits", func(t *testing.T) {
		clear(t)
		f, r, changes := newRouter(t, routing.Config{})
		f.lead(t, "a")
		waitLeader(t, changes, "a")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		// A deferred constraint fails at COMMIT: the server said no, so the
		// outcome is known.
		var attempts atomic.Int32
		_, err := r.Write(ctx, func(tx pgx.Tx) error {
			attempts.Add(1)
			_, err := tx.Exec(ctx, "INSERT INTO d VALUES (1), (1)")
			return err
		})
		require.Error(t, err)
		require.NotErrorIs(t, err, routing.ErrAmbiguousCommit)
		require.Equal(t, int32(1), attempts.Load())

		// COMMIT waits for a synchronous standby that does not exist, and
		// the backend is terminated meanwhile: committed locally, but the
		// client cannot know.
		execOn(t, a, "ALTER SYSTEM SET synchronous_standby_names = 'ghost'", "SELECT pg_reload_conf()")
		t.Cleanup(func() { execOn(t, a, "ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()") })
		pgtest.Eventually(t, 10*time.Second, func() error {
			c := directConn(t, a)
			defer c.Close(ctx)
			var s string
			if err := c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&s); err != nil || s != "ghost" {
				return fmt.Errorf("synchronous_standby_names = %q (%v)", s, err)
			}
			return nil
		})
		admin := directConn(t, a)
		attempts.Store(0)
		killed := make(chan error, 1)
		_, err = r.Write(ctx, func(tx pgx.Tx) error {
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
			_, err := tx.Exec(ctx, "INSERT INTO t (v) VALUES ('ambiguous')")
			return err
		})
		require.NoError(t, <-killed)
		require.ErrorIs(t, err, routing.ErrAmbiguousCommit)
		require.False(t, routing.SafeToRetry(err))
		var ne *routing.NodeError
		require.ErrorAs(t, err, &ne)
		require.Equal(t, "a", ne.Node)
		require.Equal(t, "commit", ne.Op)
		require.Equal(t, int32(1), attempts.Load(), "never retried")
		require.Equal(t, int64(1), r.Stats().AmbiguousCommits)
		require.Equal(t, 1, countOn(t, a, "SELECT count(*) FROM t WHERE v = 'ambiguous'"), "it did commit: ambiguous indeed")
	})

	t.Run("SwitchoverHoldUnderWriteLoop", func(t *testing.T) {
		clear(t)
		f, r, changes := newRouter(t, routing.Config{})
		f.lead(t, "a")
		waitLeader(t, changes, "a")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var failures atomic.Int64
		var firstErr atomic.Value
		var done atomic.Int64
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					_, err := r.Write(ctx, func(tx pgx.Tx) error {
						_, err := tx.Exec(ctx, "INSERT INTO t (v) VALUES ($1)", fmt.Sprintf("w%d-%d", w, i))
						return err
					})
					if err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					done.Add(1)
				}
			})
		}
		waitFor := func(n int64) {
			target := done.Load() + n
			pgtest.Eventually(t, 20*time.Second, func() error {
				if done.Load() < target {
					return fmt.Errorf("%d writes", done.Load())
				}
				return nil
			})
		}
		waitFor(20)
		_, err := f.nodes["a"].SetFailover(ctx, dcs.Failover{Leader: "a", Candidate: "b"}, dcs.Unconditional)
		require.NoError(t, err)
		waitTopology(t, r, "holding", func(top *routing.Topology) bool { return top.Holding })
		// In-flight transactions finish, and every writer waits on the
		// hold; then nothing more reaches a.
		pgtest.Eventually(t, 20*time.Second, func() error {
			if h := r.Stats().HeldAcquisitions; h < 4 {
				return fmt.Errorf("%d writers held", h)
			}
			return nil
		})
		onA := countOn(t, a, "SELECT count(*) FROM t")
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, onA, countOn(t, a, "SELECT count(*) FROM t"), "writes held during the switchover")
		f.member(t, "a", connURL(a), dcs.RoleReplica, 100, nil)
		f.lead(t, "b")
		waitLeader(t, changes, "b")
		waitFor(20)
		close(stop)
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			t.Fatalf("%d writes failed across the switchover; first: %v", failures.Load(), err)
		}
		require.Equal(t, onA, countOn(t, a, "SELECT count(*) FROM t"), "no write reached the old primary")
		require.Positive(t, countOn(t, b, "SELECT count(*) FROM t"))
		require.Positive(t, r.Stats().HeldAcquisitions)
	})

	t.Run("ProbesReportAWritableNonLeader", func(t *testing.T) {
		var mu sync.Mutex
		var conflicts []routing.Conflict
		f := newFakeCluster(t, "a", "b")
		f.member(t, "a", connURL(a), dcs.RolePrimary, 100, nil)
		f.member(t, "b", connURL(b), dcs.RoleReplica, 100, nil)
		f.lead(t, "a")
		r := newFakeRouter(t, f, routing.Config{ProbeInterval: 20 * time.Millisecond, Logger: pgtest.Logger(t, "router"),
			Hooks: routing.Hooks{OnConflict: func(c routing.Conflict) {
				mu.Lock()
				defer mu.Unlock()
				conflicts = append(conflicts, c)
			}}})
		waitTopology(t, r, "conflict", func(top *routing.Topology) bool { return len(top.Conflicts) > 0 })
		mu.Lock()
		require.Equal(t, "b", conflicts[0].Node)
		mu.Unlock()
		top := r.Topology()
		pn, _ := top.Primary()
		require.Equal(t, "a", pn.Name)
		require.True(t, pn.Probed)
		require.Positive(t, pn.Latency)
		require.Empty(t, top.Replicas(-1), "b publishes role replica but is writable: no reads")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := r.Replica(ctx, routing.ReadOptions{})
		require.NoError(t, err)
		p, err := serverPort(ctx, c)
		c.Release()
		require.NoError(t, err)
		require.Equal(t, port(a), p, "fallback to the primary")
	})
}

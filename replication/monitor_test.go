package replication_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/replication"
)

func observe(t *testing.T, inst *pg.Instance) replication.Snapshot {
	t.Helper()
	var s replication.Snapshot
	require.NoError(t, inst.WithConn(context.Background(), func(ctx context.Context, c *pgx.Conn) (err error) {
		s, err = replication.Observe(ctx, c)
		return err
	}))
	return s
}

func exec(t *testing.T, inst *pg.Instance, sqls ...string) {
	t.Helper()
	require.NoError(t, inst.WithConn(context.Background(), func(ctx context.Context, c *pgx.Conn) error {
		for _, q := range sqls {
			if _, err := c.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}))
}

// TestObserve watches a real primary and its replica: caught up, then with
// the replica's replay paused while the primary writes.
func TestObserve(t *testing.T) {
	ctx := context.Background()
	a := pgtest.Init(t, pgtest.Config(t, "mon-a"))
	b := pgtest.New(t, pgtest.Config(t, "mon-b"))
	exec(t, a, "SELECT pg_create_physical_replication_slot('mon_b', true)", "CREATE TABLE t (v int)")
	require.NoError(t, b.Clone(ctx, pgtest.Upstream(a, "mon_b"), nil))
	require.NoError(t, b.Start(ctx))

	pgtest.Eventually(t, time.Minute, func() error {
		p := observe(t, a)
		st, ok := p.Standby("mon-b")
		if !ok || st.State != "streaming" || st.ReplayLag != 0 {
			return fmt.Errorf("standby: %+v", p.Standbys)
		}
		return nil
	})
	p := observe(t, a)
	require.False(t, p.InRecovery)
	require.Equal(t, p.CurrentLSN, p.Position())
	require.Len(t, p.Standbys, 1)
	st := p.Standbys[0]
	require.Equal(t, "mon_b", st.SlotName)
	require.Equal(t, "async", st.SyncState)
	require.Equal(t, p.CurrentLSN, st.ReplayLSN)
	require.Zero(t, st.SentLag)
	require.Zero(t, p.ReplayLag())
	require.Equal(t, int64(-1), p.UpstreamLag(), "a primary has no upstream")

	r := observe(t, b)
	require.True(t, r.InRecovery)
	require.NotNil(t, r.Receiver)
	require.Equal(t, "streaming", r.Receiver.Status)
	require.Equal(t, "mon_b", r.Receiver.SlotName)
	require.Equal(t, a.Config().Port, r.Receiver.SenderPort)
	require.Empty(t, r.Standbys)
	require.Equal(t, r.ReceiveLSN, r.Position())

	// Pause replay and write: the replica receives but does not replay;
	// both sides see the lag in bytes, the replica also in time.
	exec(t, b, "SELECT pg_wal_replay_pause()")
	exec(t, a, "INSERT INTO t SELECT generate_series(1, 10000)")
	var lagging replication.Snapshot
	pgtest.Eventually(t, time.Minute, func() error {
		lagging = observe(t, a)
		st, _ := lagging.Standby("mon-b")
		if st.FlushLSN != lagging.CurrentLSN || st.ReplayLag <= 0 {
			return fmt.Errorf("want flushed everything and replay behind: %+v at %s", st, lagging.CurrentLSN)
		}
		return nil
	})
	st, _ = lagging.Standby("mon-b")
	require.Zero(t, st.FlushLag)
	require.Greater(t, st.ReplayLag, int64(100_000), "10000 rows are more than 100 kB of WAL")
	r = observe(t, b)
	require.True(t, r.ReplayPaused)
	require.Greater(t, r.ReplayLag(), int64(100_000))
	require.Greater(t, r.UpstreamLag(), int64(100_000))
	require.NotEqual(t, time.Duration(0), r.ReplayDelay())

	exec(t, b, "SELECT pg_wal_replay_resume()")
	pgtest.Eventually(t, time.Minute, func() error {
		r := observe(t, b)
		if r.ReplayLag() != 0 || r.ReplayDelay() != 0 {
			return fmt.Errorf("replica still behind: %d bytes, %s", r.ReplayLag(), r.ReplayDelay())
		}
		return nil
	})
}

// BenchmarkReplicationRound measures what the HA loop adds per cycle on a
// primary with one replica and three slots: Observe (3 queries) and
// ListSlots (1), on the instance's cached connection.
func BenchmarkReplicationRound(b *testing.B) {
	ctx := context.Background()
	a := pgtest.Init(b, pgtest.Config(b, "bench-a"))
	r := pgtest.New(b, pgtest.Config(b, "bench-b"))
	err := a.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		for _, s := range []string{"bench_b", "x1", "x2"} {
			if _, err := pg.CreatePhysicalSlot(ctx, c, s); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(b, err)
	require.NoError(b, r.Clone(ctx, pgtest.Upstream(a, "bench_b"), nil))
	require.NoError(b, r.Start(ctx))
	b.ResetTimer()
	for b.Loop() {
		err := a.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
			if _, err := replication.Observe(ctx, c); err != nil {
				return err
			}
			_, err := pg.ListSlots(ctx, c)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

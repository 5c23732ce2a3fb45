package pg_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// TestSlotSQL runs the replication helpers against a real primary and a
// replica streaming from it through a slot the helpers created.
func TestSlotSQL(t *testing.T) {
	ctx := context.Background()
	a := pgtest.Init(t, pgtest.Config(t, "slots-a"))
	b := pgtest.New(t, pgtest.Config(t, "slots-b"))

	with := func(inst *pg.Instance, fn func(ctx context.Context, c *pgx.Conn) error) {
		t.Helper()
		require.NoError(t, inst.WithConn(ctx, fn))
	}

	// Create: once, then a no-op; invalid names are refused.
	with(a, func(ctx context.Context, c *pgx.Conn) error {
		created, err := pg.CreatePhysicalSlot(ctx, c, "slots_b")
		require.NoError(t, err)
		require.True(t, created)
		created, err = pg.CreatePhysicalSlot(ctx, c, "slots_b")
		require.NoError(t, err)
		require.False(t, created)
		_, err = pg.CreatePhysicalSlot(ctx, c, "Bad-Name")
		var ce *pg.ConfigError
		require.True(t, errors.As(err, &ce), "got %v", err)
		created, err = pg.CreatePhysicalSlot(ctx, c, "spare")
		require.NoError(t, err)
		require.True(t, created)
		return nil
	})
	var slots []pg.ReplicationSlot
	with(a, func(ctx context.Context, c *pgx.Conn) (err error) { slots, err = pg.ListSlots(ctx, c); return err })
	require.Len(t, slots, 2)
	require.Equal(t, "slots_b", slots[0].Name)
	require.Equal(t, "spare", slots[1].Name)
	for _, s := range slots {
		require.Equal(t, "physical", s.Type)
		require.False(t, s.Active)
		require.Positive(t, int64(s.RestartLSN), "created with WAL reserved")
		require.Equal(t, "reserved", s.WALStatus)
		require.Nil(t, s.SafeWALSize, "max_slot_wal_keep_size is unlimited")
		require.GreaterOrEqual(t, s.RetainedBytes, int64(0))
	}

	// A replica streams through the slot, named by SetStandbySlot.
	var ce *pg.ConfigError
	require.ErrorAs(t, b.SetStandbySlot("slots-b"), &ce)
	require.NoError(t, b.SetStandbySlot("slots_b"))
	require.Equal(t, "slots_b", b.StandbySlot())
	require.NoError(t, b.Clone(ctx, pgtest.Upstream(a, ""), nil))
	require.NoError(t, b.Start(ctx))
	execSQL(t, a, "CREATE TABLE t (v int)", "INSERT INTO t SELECT generate_series(1, 1000)")

	pgtest.Eventually(t, waitLong, func() error {
		return a.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
			ws, err := pg.ListWALSenders(ctx, c)
			if err != nil {
				return err
			}
			if len(ws) != 1 || ws[0].State != "streaming" {
				return fmt.Errorf("wal senders: %+v", ws)
			}
			w := ws[0]
			pos, err := pg.GetPositions(ctx, c)
			if err != nil {
				return err
			}
			if w.ReplayLSN != pos.CurrentLSN {
				return fmt.Errorf("replica replayed %s, primary at %s", w.ReplayLSN, pos.CurrentLSN)
			}
			require.Equal(t, "slots-b", w.ApplicationName)
			require.Equal(t, "slots_b", w.SlotName)
			require.Equal(t, "127.0.0.1", w.ClientAddr)
			require.Equal(t, "async", w.SyncState)
			require.Positive(t, w.PID)
			require.LessOrEqual(t, w.ReplayLSN, w.FlushLSN)
			require.LessOrEqual(t, w.FlushLSN, w.WriteLSN)
			require.LessOrEqual(t, w.WriteLSN, w.SentLSN)
			require.False(t, w.BackendStart.IsZero())
			if w.ReplayLag != nil {
				require.GreaterOrEqual(t, *w.ReplayLag, time.Duration(0))
			}
			require.False(t, pos.InRecovery)
			require.Equal(t, pos.CurrentLSN, pos.FlushLSN)
			return nil
		})
	})
	with(b, func(ctx context.Context, c *pgx.Conn) error {
		r, err := pg.GetWALReceiver(ctx, c)
		require.NoError(t, err)
		require.NotNil(t, r)
		require.Equal(t, "streaming", r.Status)
		require.Equal(t, "slots_b", r.SlotName)
		require.Equal(t, a.Config().Port, r.SenderPort)
		require.Equal(t, 1, r.ReceivedTimeline)
		require.Positive(t, int64(r.FlushedLSN))
		require.LessOrEqual(t, r.FlushedLSN, r.WrittenLSN)
		pos, err := pg.GetPositions(ctx, c)
		require.NoError(t, err)
		require.True(t, pos.InRecovery)
		require.Zero(t, pos.CurrentLSN)
		require.Positive(t, int64(pos.ReplayLSN))
		require.NotNil(t, pos.ReplayTimestamp)
		return nil
	})
	with(a, func(ctx context.Context, c *pgx.Conn) error {
		r, err := pg.GetWALReceiver(ctx, c)
		require.NoError(t, err)
		require.Nil(t, r, "a primary has no WAL receiver")
		return nil
	})

	// The active slot cannot be dropped; the spare one is advanced and
	// then dropped; dropping it again is a no-op.
	with(a, func(ctx context.Context, c *pgx.Conn) error {
		dropped, active, err := pg.DropSlot(ctx, c, "slots_b")
		require.NoError(t, err)
		require.False(t, dropped)
		require.True(t, active)

		_, err = c.Exec(ctx, "SELECT pg_switch_wal()")
		require.NoError(t, err)
		pos, err := pg.GetPositions(ctx, c)
		require.NoError(t, err)
		end, err := pg.AdvanceSlot(ctx, c, "spare", pos.CurrentLSN)
		require.NoError(t, err)
		require.Equal(t, pos.CurrentLSN, end)
		ss, err := pg.ListSlots(ctx, c)
		require.NoError(t, err)
		require.Equal(t, "spare", ss[1].Name)
		require.Equal(t, pos.CurrentLSN, ss[1].RestartLSN)
		// Never backwards: PostgreSQL refuses (55000).
		_, err = pg.AdvanceSlot(ctx, c, "spare", pos.CurrentLSN-1)
		require.ErrorContains(t, err, "cannot advance replication slot")
		_, err = pg.AdvanceSlot(ctx, c, "missing", pos.CurrentLSN)
		require.Error(t, err)

		dropped, active, err = pg.DropSlot(ctx, c, "spare")
		require.NoError(t, err)
		require.True(t, dropped)
		require.False(t, active)
		dropped, active, err = pg.DropSlot(ctx, c, "spare")
		require.NoError(t, err)
		require.False(t, dropped)
		require.False(t, active)
		return nil
	})

	// A stopped replica's slot holds WAL back on the primary.
	require.NoError(t, b.Stop(ctx, pg.StopFast))
	execSQL(t, a, "INSERT INTO t SELECT generate_series(1, 1000)", "SELECT pg_switch_wal()")
	with(a, func(ctx context.Context, c *pgx.Conn) error {
		ss, err := pg.ListSlots(ctx, c)
		require.NoError(t, err)
		require.Len(t, ss, 1)
		require.False(t, ss[0].Active)
		require.Greater(t, ss[0].RetainedBytes, int64(16<<10), "the slot retains what was written since")
		return nil
	})

	// Without a running server WithConn says so.
	require.NoError(t, b.Close())
	err := b.WithConn(ctx, func(context.Context, *pgx.Conn) error { return nil })
	require.ErrorIs(t, err, pg.ErrNotRunning)
}

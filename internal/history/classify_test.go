package history_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/history"
	"github.com/pgha/pgha/internal/pgtest"
)

// The workload's classification of the commits a synchronous standby never
// confirms, on a real PostgreSQL whose synchronous_standby_names names a
// standby that does not exist, so every commit waits: a commit whose wait
// is cancelled (pg_cancel_backend) returns with the "canceling wait for
// synchronous replication" warning, is committed locally and must be
// indeterminate, not ok; a commit whose backend is terminated loses its
// connection during COMMIT and is indeterminate too (RELIABILITY.md G5,
// G6). The checker accepts the history: no acknowledged write, the
// cancelled writes present.
func TestClassifySyncWaitCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	cfg := pgtest.Config(t, "classify")
	inst := pgtest.Init(t, cfg)
	cs := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2",
		cfg.Port, pgtest.SuperuserPassword)
	w := history.Workload{ConnString: cs, Writers: 1, Readers: 1, Interval: 10 * time.Millisecond, OpTimeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, w.Setup(ctx))
	admin := func(sql string) int64 {
		cn, err := inst.Connect(ctx)
		require.NoError(t, err)
		defer cn.Close(context.Background())
		var n int64
		require.NoError(t, cn.QueryRow(ctx, sql).Scan(&n))
		return n
	}
	cn, err := inst.Connect(ctx)
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "SELECT pg_reload_conf()")
	require.NoError(t, err)
	require.NoError(t, cn.Close(ctx))
	pgtest.Eventually(t, 10*time.Second, func() error { // new backends use it
		if admin("SELECT (current_setting('synchronous_standby_names') = 'nobody')::int") != 1 {
			return fmt.Errorf("synchronous_standby_names not reloaded yet")
		}
		return nil
	})

	h := history.NewHistory()
	run, err := w.Start(h)
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			run.Stop()
		}
	}()
	// waiter returns the pid of the workload's backend waiting in SyncRep.
	waiter := func() int64 {
		var pid int64
		pgtest.Eventually(t, 30*time.Second, func() error {
			pid = admin("SELECT COALESCE((SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' LIMIT 1), 0)")
			if pid == 0 {
				return fmt.Errorf("no backend waits for synchronous replication")
			}
			return nil
		})
		return pid
	}
	for range 2 {
		admin(fmt.Sprintf("SELECT pg_cancel_backend(%d)::int", waiter()))
	}
	admin(fmt.Sprintf("SELECT pg_terminate_backend(%d)::int", waiter()))
	waiter() // the writer reconnected and waits again
	run.Stop()
	stopped = true

	ops := h.Ops()
	var cancelled, terminated int
	for _, op := range ops {
		if op.Kind != history.Write || op.Result != history.Info {
			continue
		}
		switch {
		case strings.Contains(op.Err, "canceling wait for synchronous replication"):
			cancelled++
		case strings.Contains(op.Err, "commit:"):
			terminated++
		}
	}
	final, err := history.ReadFinal(ctx, w.Table, []history.Target{{Name: "classify", ConnString: cs}})
	require.NoError(t, err)
	r := history.Check(ops, final)
	t.Logf("%s; %d cancelled sync waits, %d other indeterminate commits", r.Summary(), cancelled, terminated)
	require.Zero(t, r.Stats.WritesOK, "no commit can be acknowledged without the synchronous standby")
	require.Equal(t, 2, cancelled, "each cancelled sync wait is indeterminate, by its warning")
	require.GreaterOrEqual(t, terminated, 2, "the terminated wait, and the one cut by Stop, are indeterminate")
	require.GreaterOrEqual(t, r.Stats.InfoPresent, 2, "a cancelled sync wait commits locally")
	require.Empty(t, r.Violations)
}

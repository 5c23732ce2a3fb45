package replication_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// slotsOn returns the node's replication slots as "name:active", sorted.
func slotsOn(ctx context.Context, n *cluster.Node) ([]string, error) {
	cn, err := n.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.Close(context.Background())
	rows, err := cn.Query(ctx, "SELECT slot_name || ':' || active FROM pg_replication_slots ORDER BY slot_name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// names strips ":active" from slotsOn's result.
func names(slots []string) []string {
	out := make([]string, 0, len(slots))
	for _, s := range slots {
		out = append(out, strings.SplitN(s, ":", 2)[0])
	}
	return out
}

func eventually(t *testing.T, d time.Duration, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	require.NoError(t, cluster.Eventually(ctx, cond))
}

// waitSlots waits until node n has exactly the slots want (names, sorted).
func waitSlots(t *testing.T, n *cluster.Node, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, 2*time.Minute, func(ctx context.Context) error {
		got, err := slotsOn(ctx, n)
		if err != nil {
			return err
		}
		if !slices.Equal(names(got), want) {
			return fmt.Errorf("%s has slots %v, want %v", n.Name, got, want)
		}
		return nil
	})
}

func others(c *cluster.Cluster, not ...*cluster.Node) []*cluster.Node {
	var out []*cluster.Node
	for _, n := range c.Nodes() {
		if !slices.Contains(not, n) {
			out = append(out, n)
		}
	}
	return out
}

// TestSlotsOnCluster runs slot management on a real 3-node cluster (ttl 3,
// loop_wait 1): every node holds a slot for each other member and replicas
// stream through theirs; a replica stopped while the primary writes and
// checkpoints with wal_keep_size 0 catches up from its slot, without being
// re-cloned; permanent slots exist on every node and on the new primary
// after a failover; the slot of a member that is gone is dropped everywhere
// once member_slots_ttl has passed.
func TestSlotsOnCluster(t *testing.T) {
	bin := pgtest.BinDir(t)
	ctx := context.Background()
	c := cluster.NewForTest(ctx, t, cluster.Options{
		Nodes: 3, BinDir: bin,
		Dynamic: map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1, "member_slots_ttl": 3600,
			"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": true}},
	})
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	p, err := c.WaitStable(wctx)
	require.NoError(t, err)
	rs := others(c, p)
	slot := func(n *cluster.Node) string { return pg.SlotName(n.Name) }
	// bothActive waits up to d until the primary holds exactly the
	// replicas' slots, both active.
	bothActive := func(t *testing.T, d time.Duration) {
		t.Helper()
		eventually(t, d, func(ctx context.Context) error {
			got, err := slotsOn(ctx, p)
			if err != nil {
				return err
			}
			want := []string{slot(rs[0]) + ":true", slot(rs[1]) + ":true"}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				return fmt.Errorf("primary slots %v, want both active %v", got, want)
			}
			return nil
		})
	}

	t.Run("a slot per member everywhere, replicas stream through theirs", func(t *testing.T) {
		waitSlots(t, p, slot(rs[0]), slot(rs[1]))
		for _, r := range rs {
			waitSlots(t, r, slot(p), slot(others(c, p, r)[0]))
		}
		bothActive(t, time.Minute)
	})

	t.Run("a stopped replica catches up from its slot", func(t *testing.T) {
		r := rs[1]
		marker := filepath.Join(r.DataDir(), "pgha_slot_test_marker")
		require.NoError(t, os.WriteFile(marker, []byte("not re-cloned"), 0o600))
		require.NoError(t, p.Exec(ctx, "CREATE TABLE big (id int, pad text)"))
		require.NoError(t, p.Exec(ctx, "ALTER SYSTEM SET wal_keep_size = 0"))
		require.NoError(t, p.Exec(ctx, "ALTER SYSTEM SET max_wal_size = '32MB'"))
		require.NoError(t, p.Exec(ctx, "ALTER SYSTEM SET min_wal_size = '32MB'"))
		require.NoError(t, p.Exec(ctx, "SELECT pg_reload_conf()"))
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		require.NoError(t, r.Stop(sctx))
		scancel()

		// About 100 MB of WAL with checkpoints: far beyond max_wal_size, so
		// without the slot the WAL the stopped replica needs is recycled.
		for i := range 5 {
			require.NoError(t, p.Exec(ctx, fmt.Sprintf("INSERT INTO big SELECT g, repeat('x', 900) FROM generate_series(%d, %d) g", i*20000, i*20000+19999)))
			require.NoError(t, p.Exec(ctx, "SELECT pg_switch_wal()"))
			require.NoError(t, p.Exec(ctx, "CHECKPOINT"))
		}
		// The WAL kept only because of the slot: from the slot's
		// restart_lsn to the last checkpoint's redo point.
		kept, err := p.QueryInt(ctx, `SELECT pg_wal_lsn_diff((SELECT redo_lsn FROM pg_control_checkpoint()), restart_lsn)::bigint
			FROM pg_replication_slots WHERE slot_name = $1`, slot(r))
		require.NoError(t, err)
		require.Greater(t, kept, int64(64<<20), "the slot holds the WAL written while the replica was down")
		oldestKept, err := p.QueryInt(ctx, `SELECT count(*) FROM pg_ls_waldir()
			WHERE name = (SELECT pg_walfile_name(restart_lsn) FROM pg_replication_slots WHERE slot_name = $1)`, slot(r))
		require.NoError(t, err)
		require.Equal(t, int64(1), oldestKept, "the WAL file at the slot's restart_lsn is still there")
		want, err := p.QueryInt(ctx, "SELECT count(*) FROM big")
		require.NoError(t, err)

		started := time.Now()
		require.NoError(t, r.Start(ctx))
		eventually(t, 3*time.Minute, func(ctx context.Context) error {
			n, err := r.QueryInt(ctx, "SELECT count(*) FROM big")
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%s has %d rows, want %d", r.Name, n, want)
			}
			return nil
		})
		t.Logf("%s caught up %d MB of WAL kept by its slot in %s after its start", r.Name, kept>>20, time.Since(started).Round(time.Millisecond))
		_, err = os.Stat(marker)
		require.NoError(t, err, "the replica caught up by streaming, not by a new clone")
		eventually(t, time.Minute, func(ctx context.Context) error {
			got, err := slotsOn(ctx, p)
			if err != nil {
				return err
			}
			if !slices.Contains(got, slot(r)+":true") {
				return fmt.Errorf("%s does not stream through its slot: %v", r.Name, got)
			}
			return nil
		})
	})

	t.Run("use_slots off drops the member slots, on brings them back", func(t *testing.T) {
		require.NoError(t, c.SetConfig(ctx, map[string]any{"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}))
		for _, n := range c.Nodes() {
			waitSlots(t, n)
		}
		eventually(t, time.Minute, func(ctx context.Context) error {
			streaming, err := p.Streaming(ctx)
			if err != nil {
				return err
			}
			if len(streaming) != 2 {
				return fmt.Errorf("streaming from %s without slots: %v", p.Name, streaming)
			}
			return nil
		})
		require.NoError(t, c.SetConfig(ctx, map[string]any{"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": true}}))
		bothActive(t, 2*time.Minute)
	})

	t.Run("permanent slots on every node survive failover", func(t *testing.T) {
		require.NoError(t, c.SetConfig(ctx, map[string]any{"slots": map[string]any{"perm_a": map[string]any{"type": "physical"}, "perm_b": nil}}))
		waitSlots(t, p, slot(rs[0]), slot(rs[1]), "perm_a", "perm_b")
		for _, r := range rs {
			waitSlots(t, r, slot(p), slot(others(c, p, r)[0]), "perm_a", "perm_b")
		}
		old := p
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		require.NoError(t, old.Stop(sctx))
		scancel()
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		np, err := c.WaitPrimary(wctx, old)
		require.NoError(t, err)
		other := others(c, old, np)[0]
		// The new primary had the slots as a replica: they are there at once.
		// The old primary's slot is kept on both (its release published it
		// in retain_slots) though its member key is gone.
		got, err := slotsOn(ctx, np)
		require.NoError(t, err)
		require.Subset(t, names(got), []string{"perm_a", "perm_b", slot(other), slot(old)})
		got, err = slotsOn(ctx, other)
		require.NoError(t, err)
		require.Subset(t, names(got), []string{"perm_a", "perm_b", slot(np), slot(old)})
		require.NoError(t, old.Start(ctx))
		p, err = c.WaitStable(wctx)
		require.NoError(t, err)
		require.Equal(t, np, p)
		rs = others(c, p)
		waitSlots(t, p, slot(old), slot(other), "perm_a", "perm_b")
		waitSlots(t, old, slot(p), slot(other), "perm_a", "perm_b")
	})

	t.Run("a removed member's slot is dropped after member_slots_ttl", func(t *testing.T) {
		gone, stay := rs[0], rs[1]
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		require.NoError(t, gone.Stop(sctx))
		scancel()
		// Its member key is gone; with member_slots_ttl 3600 the leader
		// keeps publishing its slot in retain_slots and nobody drops it.
		eventually(t, time.Minute, func(ctx context.Context) error {
			cl, err := c.Store().Cluster(ctx)
			if err != nil {
				return err
			}
			if _, ok := cl.Member(gone.Name); ok {
				return fmt.Errorf("%s still has a member key", gone.Name)
			}
			if !slices.Contains(cl.Status.RetainSlots, slot(gone)) {
				return fmt.Errorf("retain_slots %v lacks %s", cl.Status.RetainSlots, slot(gone))
			}
			return nil
		})
		for _, n := range []*cluster.Node{p, stay} {
			got, err := slotsOn(ctx, n)
			require.NoError(t, err)
			require.Contains(t, names(got), slot(gone), "retained on %s", n.Name)
		}
		// member_slots_ttl 2: the absent member's slot expires and is
		// dropped on the primary and on the remaining replica.
		require.NoError(t, c.SetConfig(ctx, map[string]any{"member_slots_ttl": 2}))
		waitSlots(t, p, slot(stay), "perm_a", "perm_b")
		waitSlots(t, stay, slot(p), "perm_a", "perm_b")
		cl, err := c.Store().Cluster(ctx)
		require.NoError(t, err)
		require.NotContains(t, cl.Status.RetainSlots, slot(gone))
	})
}

// TestSlotsKillPrimary SIGKILLs the primary of a 3-node cluster of node
// processes using slots: the new primary already holds a slot for every
// other member (it kept them as a replica), and once the killed node is
// started again (rewound if it diverged) both replicas stream through
// their slots on the new primary, with every row.
func TestSlotsKillPrimary(t *testing.T) {
	bin := pgtest.BinDir(t)
	ctx := context.Background()
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bcancel()
	proc, err := cluster.BuildNodeProc(bctx, t.TempDir())
	if err != nil {
		t.Skipf("cannot build nodeproc: %v", err)
	}
	c := cluster.NewForTest(ctx, t, cluster.Options{
		Nodes: 3, Mode: cluster.Processes, NodeProc: proc, BinDir: bin,
		Dynamic: map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1, "slots": map[string]any{"perm_k": nil},
			"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": true}},
	})
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	p, err := c.WaitStable(wctx)
	require.NoError(t, err)
	slot := func(n *cluster.Node) string { return pg.SlotName(n.Name) }
	rs := others(c, p)
	waitSlots(t, p, slot(rs[0]), slot(rs[1]), "perm_k")
	for _, r := range rs {
		waitSlots(t, r, slot(p), slot(others(c, p, r)[0]), "perm_k")
	}
	require.NoError(t, p.Exec(ctx, "CREATE TABLE k (v int)"))
	for i := range 50 {
		require.NoError(t, p.Exec(ctx, "INSERT INTO k VALUES ($1)", i))
	}
	// Replication is asynchronous: wait for the replicas to have the rows,
	// so that the count checked at the end does not depend on the race.
	for _, r := range rs {
		eventually(t, time.Minute, func(ctx context.Context) error {
			v, err := r.QueryInt(ctx, "SELECT count(*) FROM k")
			if err != nil || v != 50 {
				return fmt.Errorf("%s has %d rows (%v)", r.Name, v, err)
			}
			return nil
		})
	}

	require.NoError(t, p.Kill())
	np, err := c.WaitPrimary(wctx, p)
	require.NoError(t, err)
	other := others(c, p, np)[0]
	got, err := slotsOn(ctx, np)
	require.NoError(t, err)
	require.Subset(t, names(got), []string{slot(p), slot(other), "perm_k"}, "the new primary kept the slots it had as a replica")
	for i := 50; i < 60; i++ {
		require.NoError(t, np.Exec(ctx, "INSERT INTO k VALUES ($1)", i))
	}

	require.NoError(t, p.Start(ctx))
	_, err = c.WaitStable(wctx)
	require.NoError(t, err)
	eventually(t, 2*time.Minute, func(ctx context.Context) error {
		got, err := slotsOn(ctx, np)
		if err != nil {
			return err
		}
		want := []string{slot(other) + ":true", slot(p) + ":true", "perm_k:false"}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("new primary slots %v, want %v", got, want)
		}
		return nil
	})
	for _, n := range []*cluster.Node{p, other} {
		eventually(t, time.Minute, func(ctx context.Context) error {
			v, err := n.QueryInt(ctx, "SELECT count(*) FROM k")
			if err != nil {
				return err
			}
			if v != 60 {
				return fmt.Errorf("%s has %d rows", n.Name, v)
			}
			return nil
		})
	}
}

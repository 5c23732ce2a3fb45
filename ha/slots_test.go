package ha_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// scrape returns the node's /metrics parsed.
func scrape(t *testing.T, h *ha.Node) map[string]*dto {
	t.Helper()
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	require.NoError(t, err)
	out := map[string]*dto{}
	for name, f := range fams {
		d := &dto{byLabel: map[string]float64{}}
		for _, m := range f.GetMetric() {
			v := m.GetGauge().GetValue()
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "slot" || l.GetName() == "standby" {
					key = l.GetValue()
				}
			}
			d.byLabel[key] = v
		}
		out[name] = d
	}
	return out
}

type dto struct{ byLabel map[string]float64 }

// TestSlotsSingleNode: a primary with a permanent slot nobody consumes.
// The slot is created, never advanced on the primary, published in
// /status; once it holds more WAL than Config.SlotWALWarning the node
// warns and the metrics say so; when PostgreSQL invalidates it
// (max_slot_wal_keep_size) the node recreates it; removed from /config, it
// is dropped.
func TestSlotsSingleNode(t *testing.T) {
	pgtest.BinDir(t)
	ctx := context.Background()
	path := dcs.Path{Namespace: "pgha-ha-test", Scope: fmt.Sprintf("slots%d", time.Now().UnixNano())}
	cfg := pgtest.Config(t, "slotnode")
	inst := pgtest.New(t, cfg)
	store, err := etcddcs.New(ctx, etcddcs.Config{Endpoints: []string{"http://" + etcd.Addr}, Path: path, Name: "slotnode",
		RetryTimeout: 2 * time.Second, Logger: pgtest.Logger(t, "dcs")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	logs := &pgtest.SyncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "slotnode", Output: io.MultiWriter(logs, testWriter{t}), Level: hclog.Info})
	node, err := ha.New(ha.Config{
		Name: "slotnode", Scope: path.Scope, Store: store, Postgres: inst, APIURL: "http://127.0.0.1:1/patroni",
		Bootstrap: &ha.Bootstrap{Initdb: pg.InitdbOptions{NoSync: true}, DCS: map[string]any{
			"ttl": 3, "loop_wait": 1, "retry_timeout": 1,
			"slots": map[string]any{"perm": map[string]any{"type": "physical"}, "logi": map[string]any{"database": "postgres", "plugin": "pgoutput"}},
		}},
		SlotWALWarning: 4 << 20,
		Logger:         logger,
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- node.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("Run did not return")
		}
	})

	// The permanent physical slot exists and is published with the
	// leader's own position; the logical one is reported, not created.
	var st dcs.Status
	pgtest.Eventually(t, 90*time.Second, func() error {
		v := node.Replication()
		if v == nil || len(v.Slots) != 1 || v.Slots[0].Name != "perm" {
			return fmt.Errorf("slots: %v", v)
		}
		c, err := store.Cluster(ctx)
		if err != nil {
			return err
		}
		st = c.Status
		if st.Slots["perm"] == 0 || st.Slots["slotnode"] == 0 {
			return fmt.Errorf("/status: %+v", st)
		}
		return nil
	})
	require.Contains(t, node.Replication().Problems, `permanent slot "logi": logical permanent slots are not supported by pgha yet; not created`)
	require.Contains(t, logs.String(), "logical permanent slots are not supported")
	require.NotContains(t, logs.String(), "holds back more WAL than the warning threshold")
	m := scrape(t, node)
	require.Equal(t, 0.0, m["pgha_replication_slots_over_wal_threshold"].byLabel[""])
	require.Equal(t, float64(4<<20), m["pgha_replication_slot_wal_threshold_bytes"].byLabel[""])

	// Write 8 MB of WAL: the unconsumed slot keeps all of it.
	cn, err := conn(ctx, inst)
	require.NoError(t, err)
	defer cn.Close(ctx)
	_, err = cn.Exec(ctx, "CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 12000) g")
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "CHECKPOINT")
	require.NoError(t, err)
	pgtest.Eventually(t, 60*time.Second, func() error {
		v := node.Replication()
		if v == nil || len(v.OverThreshold) != 1 {
			return fmt.Errorf("not over the threshold yet: %s", v)
		}
		if !strings.Contains(logs.String(), "holds back more WAL than the warning threshold") {
			return fmt.Errorf("no warning logged yet")
		}
		return nil
	})
	v := node.Replication()
	require.Equal(t, []string{"perm"}, v.OverThreshold)
	require.Greater(t, v.Slots[0].RetainedBytes, int64(4<<20))
	m = scrape(t, node)
	require.Equal(t, 1.0, m["pgha_replication_slots_over_wal_threshold"].byLabel[""])
	require.Greater(t, m["pgha_replication_slot_retained_wal_bytes"].byLabel["perm"], float64(4<<20))
	// On the primary the slot is expected active: its position stays
	// where it was created, /status publishes that.
	c, err := store.Cluster(ctx)
	require.NoError(t, err)
	require.Equal(t, st.Slots["perm"], c.Status.Slots["perm"])
	require.Greater(t, c.Status.Slots["slotnode"], st.Slots["slotnode"])

	// With max_slot_wal_keep_size PostgreSQL invalidates the slot (its WAL
	// is removed: wal_status lost); the node drops it and creates it anew,
	// reserving WAL from now on: back under the threshold.
	_, err = cn.Exec(ctx, "ALTER SYSTEM SET max_slot_wal_keep_size = '2MB'")
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "SELECT pg_reload_conf()")
	require.NoError(t, err)
	lostOnce := func() bool { return strings.Contains(logs.String(), "its WAL is lost; recreating it") }
	pgtest.Eventually(t, 90*time.Second, func() error {
		if !lostOnce() {
			for _, q := range []string{"INSERT INTO filler SELECT g, repeat('y', 500) FROM generate_series(1, 3000) g",
				"SELECT pg_switch_wal()", "CHECKPOINT"} {
				if _, err := cn.Exec(ctx, q); err != nil {
					return err
				}
			}
			return fmt.Errorf("the slot was not found lost yet")
		}
		v := node.Replication()
		if v == nil || len(v.Slots) != 1 || v.Slots[0].Name != "perm" || v.Slots[0].WALStatus == "lost" || len(v.OverThreshold) != 0 {
			return fmt.Errorf("slots: %s", v)
		}
		return nil
	})
	require.Contains(t, logs.String(), "back under the WAL warning threshold")
	v = node.Replication()
	require.Less(t, v.Slots[0].RetainedBytes, int64(4<<20))
	_, err = cn.Exec(ctx, "ALTER SYSTEM RESET max_slot_wal_keep_size")
	require.NoError(t, err)
	_, err = cn.Exec(ctx, "SELECT pg_reload_conf()")
	require.NoError(t, err)
	c, err = store.Cluster(ctx)
	require.NoError(t, err)

	// Removing it from /config drops it.
	data := map[string]any{}
	for k, v := range c.Config.Data {
		data[k] = v
	}
	delete(data, "slots")
	_, err = store.SetConfig(ctx, data, dcs.IfRevision(c.Config.ModRevision))
	require.NoError(t, err)
	pgtest.Eventually(t, 60*time.Second, func() error {
		v := node.Replication()
		if v == nil || len(v.Slots) != 0 || len(v.OverThreshold) != 0 {
			return fmt.Errorf("slots: %s", v)
		}
		return nil
	})
	require.Contains(t, logs.String(), "dropped replication slot")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/internal/pgtest"
)

// The daemon runs the patroni.yml's callback scripts and drives its
// watchdog: a one-node cluster with every callback, pre_promote,
// before_stop, and watchdog.mode automatic on a regular file standing in
// for /dev/watchdog (the file collects the keepalives, "1", and the magic
// close, "V"; its timeout cannot be set, which automatic mode accepts).
func TestDaemonRunsCallbacksAndWatchdog(t *testing.T) {
	bin := pgtest.BinDir(t)
	pghaBinary(t)
	e := startEtcd(t, "pgha-examples-callbacks")
	c := &tcluster{t: t, etcd: e, dir: pgtest.Dir(t), bin: bin}
	n := c.writeNode(1)
	c.nodes = append(c.nodes, n)
	dir := pgtest.Dir(t)
	events, stops, dev := filepath.Join(dir, "events"), filepath.Join(dir, "before_stop"), filepath.Join(dir, "watchdog")
	cb := filepath.Join(dir, "cb.sh")
	require.NoError(t, os.WriteFile(cb, []byte("#!/bin/sh\nf=$1; shift\necho \"$*\" >> \"$f\"\n"), 0o755))
	require.NoError(t, os.WriteFile(dev, nil, 0o600))

	raw, err := os.ReadFile(n.yml)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &m))
	pgm := m["postgresql"].(map[string]any)
	cmd := cb + " " + events
	pgm["callbacks"] = map[string]any{"on_start": cmd, "on_stop": cmd, "on_restart": cmd, "on_reload": cmd, "on_role_change": cmd}
	pgm["pre_promote"] = "/bin/true"
	pgm["before_stop"] = fmt.Sprintf("sh -c 'echo called >> %s'", stops)
	m["watchdog"] = map[string]any{"mode": "auto", "device": dev, "safety_margin": 5}
	out, err := yaml.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(n.yml, out, 0o600))
	t.Cleanup(func() {
		if n.running() {
			_ = n.stop(t)
		}
		n.kill()
		if t.Failed() {
			b, _ := os.ReadFile(n.log)
			t.Logf("==== %s log\n%s", n.name, tail(string(b), 300))
		}
	})
	n.start(t)
	c.waitStable(2*time.Minute, "")

	lines := func(p string) []string {
		b, _ := os.ReadFile(p)
		if s := strings.TrimSpace(string(b)); s != "" {
			return strings.Split(s, "\n")
		}
		return nil
	}
	waitFor(t, time.Minute, func() error {
		if got := lines(events); !slices.Equal(got, []string{"on_start primary pg-cluster"}) {
			return fmt.Errorf("events %q", got)
		}
		return nil
	})
	// Armed and kept alive with the renewals of the leader key.
	var first int
	waitFor(t, time.Minute, func() error {
		b, _ := os.ReadFile(dev)
		if first = strings.Count(string(b), "1"); first < 2 {
			return fmt.Errorf("watchdog file %q", b)
		}
		return nil
	})
	waitFor(t, time.Minute, func() error {
		b, _ := os.ReadFile(dev)
		if k := strings.Count(string(b), "1"); k <= first {
			return fmt.Errorf("no keepalive since %d", first)
		}
		return nil
	})

	require.NoError(t, n.stop(t))
	require.Equal(t, []string{"on_start primary pg-cluster", "on_stop primary pg-cluster"}, lines(events))
	require.Equal(t, []string{"called"}, lines(stops))
	b, err := os.ReadFile(dev)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(b), "V"), "the magic close on shutdown: %q", b)
	log, err := os.ReadFile(n.log)
	require.NoError(t, err)
	require.NotContains(t, string(log), "callbacks: not implemented")
	require.Contains(t, string(log), "could not set the watchdog timeout")
}

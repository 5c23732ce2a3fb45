package ha_test

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

	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/pgtest"
)

// Callback scripts on real nodes: real PostgreSQL, embedded etcd, real
// processes for the scripts.

// stopAgent ends a node's Run (which stops Postgres and releases the key)
// and waits for it.
func (c *tcluster) stopAgent(n *tnode) {
	n.cancel()
	select {
	case err := <-n.done:
		n.done <- err
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s: Run did not return", n.name)
	}
}

// cbDir holds the callback script and each node's record of its calls.
type cbDir string

func newCBDir(t *testing.T) cbDir {
	d := pgtest.Dir(t)
	// "<file> <action> <role> <scope>": one line per call.
	script := "#!/bin/sh\nf=$1; shift\necho \"$*\" >> \"$f\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(d, "cb.sh"), []byte(script), 0o755))
	// pre_promote and before_stop: "<file> <exit status>".
	sync := "#!/bin/sh\necho called >> \"$1\"\nexit $2\n"
	require.NoError(t, os.WriteFile(filepath.Join(d, "sync.sh"), []byte(sync), 0o755))
	return cbDir(d)
}

func (d cbDir) file(node, what string) string { return filepath.Join(string(d), node+"."+what) }

func (d cbDir) callbacks(node string, prePromoteExit int) ha.Callbacks {
	cb := filepath.Join(string(d), "cb.sh") + " " + d.file(node, "events")
	sync := filepath.Join(string(d), "sync.sh")
	return ha.Callbacks{
		OnStart: cb, OnStop: cb, OnRestart: cb, OnReload: cb, OnRoleChange: cb,
		PrePromote: fmt.Sprintf("%s %s %d", sync, d.file(node, "pre_promote"), prePromoteExit),
		BeforeStop: fmt.Sprintf("%s %s 0", sync, d.file(node, "before_stop")),
	}
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitLines waits until the file holds exactly want.
func waitLines(t *testing.T, path string, want []string) {
	t.Helper()
	pgtest.Eventually(t, 60*time.Second, func() error {
		if got := readLines(path); !slices.Equal(got, want) {
			return fmt.Errorf("%s: %q, want %q", filepath.Base(path), got, want)
		}
		return nil
	})
}

var fastDynamic = map[string]any{"ttl": 6, "loop_wait": 2, "retry_timeout": 2,
	"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}

// Each callback fires once per event, with Patroni's arguments
// "<action> <role> <scope>": on_start after the bootstrap and the clones;
// in a switchover on_stop then on_role_change replica on the old primary,
// on_role_change primary on the new one (after its pre_promote), nothing
// on the third; on_reload and on_restart (not on_stop/on_start) on request.
// before_stop runs before every stop.
func TestCallbacksFireOncePerEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd and PostgreSQL")
	}
	d := newCBDir(t)
	c := newClusterWith(t, 3, fastDynamic, func(cfg *ha.Config) { cfg.Callbacks = d.callbacks(cfg.Name, 0) })
	scope := c.path.Scope
	p1 := c.waitStable(90 * time.Second)
	var rest []*tnode
	for _, n := range c.nodes {
		if n != p1 {
			rest = append(rest, n)
		}
	}
	cand, third := rest[0], rest[1]
	waitLines(t, d.file(p1.name, "events"), []string{"on_start primary " + scope})
	for _, n := range rest {
		waitLines(t, d.file(n.name, "events"), []string{"on_start replica " + scope})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, cand.node.Switchover(ctx, cand.name, time.Time{}))
	p2 := c.waitPrimary(60*time.Second, p1, true)
	require.Equal(t, cand.name, p2.name)
	waitLines(t, d.file(p1.name, "events"), []string{"on_start primary " + scope, "on_stop primary " + scope, "on_role_change replica " + scope})
	waitLines(t, d.file(cand.name, "events"), []string{"on_start replica " + scope, "on_role_change primary " + scope})
	require.Equal(t, []string{"called"}, readLines(d.file(cand.name, "pre_promote")))
	require.Equal(t, []string{"called"}, readLines(d.file(p1.name, "before_stop")))

	require.NoError(t, third.node.Reload(ctx))
	waitLines(t, d.file(third.name, "events"), []string{"on_start replica " + scope, "on_reload replica " + scope})
	require.NoError(t, third.node.Restart(ctx))
	waitLines(t, d.file(third.name, "events"), []string{"on_start replica " + scope, "on_reload replica " + scope, "on_restart replica " + scope})
	require.Equal(t, []string{"called"}, readLines(d.file(third.name, "before_stop")))
	c.waitStable(60 * time.Second)

	// Nothing else fired meanwhile.
	require.Equal(t, []string{"on_start primary " + scope, "on_stop primary " + scope, "on_role_change replica " + scope}, readLines(d.file(p1.name, "events")))
	require.Equal(t, []string{"on_start replica " + scope, "on_role_change primary " + scope}, readLines(d.file(cand.name, "events")))
	require.Nil(t, readLines(d.file(p1.name, "pre_promote")), "the bootstrap promotes nothing")
}

// A failing pre_promote vetoes the promotion on a real cluster: the member
// that won the race (the other replica is cut off from etcd) runs it, does
// not promote and releases the key; once the other replica is back it is
// promoted and the vetoing one follows it.
func TestFailingPrePromoteVetoesPromotion(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd and PostgreSQL")
	}
	d := newCBDir(t)
	c := newClusterWith(t, 3, fastDynamic, func(cfg *ha.Config) {
		cfg.Callbacks = d.callbacks(cfg.Name, 0)
		// Which replica vetoes is known only once the leader is: the
		// script exits with the status in the node's "exit" file (0 when
		// there is none).
		cfg.Callbacks.PrePromote = fmt.Sprintf("sh -c 'echo called >> %s; exit $(cat %s 2>/dev/null || echo 0)'",
			d.file(cfg.Name, "pre_promote"), d.file(cfg.Name, "exit"))
	})
	sb := c.checkSplitBrain()
	p1 := c.waitStable(90 * time.Second)
	var veto, other *tnode
	for _, n := range c.nodes {
		if n == p1 {
			continue
		}
		if veto == nil {
			veto = n
		} else {
			other = n
		}
	}
	require.NoError(t, os.WriteFile(d.file(veto.name, "exit"), []byte("1\n"), 0o644))
	insert(t, p1.inst, 1)

	other.proxy.Pause()
	c.stopAgent(p1)
	pgtest.Eventually(t, 60*time.Second, func() error {
		if len(readLines(d.file(veto.name, "pre_promote"))) == 0 {
			return fmt.Errorf("%s has not run pre_promote yet: %s", veto.name, veto.node.Status().LastDecision)
		}
		return nil
	})
	require.False(t, writable(context.Background(), veto.inst), "pre_promote failed: not promoted")
	other.proxy.Resume()
	pgtest.Eventually(t, 60*time.Second, func() error {
		if !writable(context.Background(), other.inst) || !other.node.Status().IsLeader {
			return fmt.Errorf("%s not primary yet: %s", other.name, other.node.Status().LastDecision)
		}
		return nil
	})
	require.Equal(t, []string{"called"}, readLines(d.file(other.name, "pre_promote")))
	insert(t, other.inst, 2)
	pgtest.Eventually(t, 60*time.Second, func() error {
		if k, err := count(veto.inst); err != nil || k != 2 {
			return fmt.Errorf("%s has %d rows (%v): %s", veto.name, k, err, veto.node.Status().LastDecision)
		}
		return nil
	})
	require.False(t, writable(context.Background(), veto.inst))
	require.NotContains(t, readLines(d.file(veto.name, "events")), "on_role_change primary "+c.path.Scope)
	require.Empty(t, sb.finish(), "two writable primaries at once")
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsage(t *testing.T) {
	var out, errOut pgtest.SyncBuffer
	none := func(string) string { return "" }
	require.Equal(t, exitUsage, run(context.Background(), nil, none, &out, &errOut))
	require.Contains(t, errOut.String(), "-name, -scope and -data-dir are required")
	require.Equal(t, exitUsage, run(context.Background(), []string{"-name", "a", "-scope", "b", "-data-dir", "/tmp/x"}, none, &out, &errOut))
	require.Contains(t, errOut.String(), "set EMBEDDED_SUPERUSER_PASSWORD")
}

// get returns the status code and body of GET url.
func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestEmbeddedMember runs the service as a third member of a real cluster
// of two harness nodes: it clones and streams (ready as a replica), takes
// over in a switchover requested through its own mux (ready as the primary,
// its leader-only work writes), and on shutdown hands leadership back in
// the documented order.
func TestEmbeddedMember(t *testing.T) {
	bin := pgtest.BinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := cluster.NewForTest(ctx, t, cluster.Options{Nodes: 2, BinDir: bin})
	old, err := c.WaitStable(ctx)
	require.NoError(t, err)

	apiPort, pgPort := freeport.MustGet(t), freeport.MustGet(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	env := map[string]string{envSuperuserPassword: cluster.SuperuserPassword,
		envReplicationPassword: cluster.ReplicationPassword, envRewindPassword: cluster.RewindPassword}
	args := []string{"-name", "svc1", "-scope", c.Path().Scope, "-namespace", c.Path().Namespace,
		"-etcd", "http://" + c.EtcdAddr(), "-data-dir", filepath.Join(pgtest.Dir(t), "data"), "-bin-dir", bin,
		"-pg-port", fmt.Sprint(pgPort), "-listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"-rewind-user", cluster.RewindUser, "-heartbeat", "100ms"}
	svcCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, logs pgtest.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(svcCtx, args, func(k string) string { return env[k] }, &out, &logs) }()
	defer func() { t.Logf("service log:\n%s", logs.String()) }()

	waitFor := func(what string, cond func() error) {
		t.Helper()
		require.NoError(t, cluster.Eventually(ctx, func(context.Context) error {
			select {
			case code := <-done:
				done <- code
				return fmt.Errorf("the service exited with %d", code)
			default:
			}
			return cond()
		}), what)
	}
	status := func(path string, want int) func() error {
		return func() error {
			code, body, err := get(base + path)
			if err != nil {
				return err
			}
			if code != want {
				return fmt.Errorf("GET %s: %d %s, want %d", path, code, strings.TrimSpace(body), want)
			}
			return nil
		}
	}

	// A replica: cloned from the primary, streaming, ready.
	waitFor("ready as a replica", status("/readyz", http.StatusOK))
	_, body, err := get(base + "/readyz")
	require.NoError(t, err)
	require.Contains(t, body, `"role":"replica"`)
	require.NoError(t, status("/readyz?role=primary", http.StatusServiceUnavailable)())
	// The REST API on the service's own mux, at the api_url it publishes.
	require.NoError(t, status("/replica", http.StatusOK)())
	require.NoError(t, status("/primary", http.StatusServiceUnavailable)())
	_, body, err = get(base + "/patroni")
	require.NoError(t, err)
	var patroni struct {
		Role    string `json:"role"`
		Patroni struct {
			Name  string `json:"name"`
			Scope string `json:"scope"`
		} `json:"patroni"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &patroni), body)
	require.Equal(t, "svc1", patroni.Patroni.Name)
	require.Equal(t, c.Path().Scope, patroni.Patroni.Scope)
	_, body, err = get(base + "/metrics")
	require.NoError(t, err)
	require.Regexp(t, `patroni_replica\{name="svc1",scope="[^"]+"\} 1`, body)

	// A switchover to the service, through its own mux.
	resp, err := http.Post(base+"/switchover", "application/json",
		strings.NewReader(fmt.Sprintf(`{"leader":%q,"candidate":"svc1"}`, old.Name)))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	waitFor("ready as the primary", status("/readyz?role=primary", http.StatusOK))
	require.NoError(t, status("/primary", http.StatusOK)())
	waitFor("leader-only work", func() error {
		_, body, err := get(base + "/app/status")
		if err != nil {
			return err
		}
		var s struct {
			Role  string `json:"last_role_change"`
			Beats int64  `json:"heartbeats_written"`
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return err
		}
		if s.Role != "primary" || s.Beats < 3 {
			return fmt.Errorf("status %s", body)
		}
		return nil
	})
	// The heartbeat rows replicate to the harness nodes.
	waitFor("heartbeat replicated", func() error {
		n, err := old.QueryInt(ctx, "SELECT beats FROM heartbeat WHERE member = 'svc1'")
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("%d beats", n)
		}
		return nil
	})

	// Clean shutdown: a harness node takes over, the service's member key
	// goes, and the steps ran in the documented order.
	stop()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code)
	case <-ctx.Done():
		t.Fatal("the service did not stop")
	}
	next, err := c.WaitPrimary(ctx)
	require.NoError(t, err)
	t.Logf("after the service stopped, %s leads", next.Name)
	require.NoError(t, cluster.Eventually(ctx, func(ctx context.Context) error {
		cl, err := c.Store().Cluster(ctx)
		if err != nil {
			return err
		}
		for _, m := range cl.Members {
			if m.Name == "svc1" {
				return fmt.Errorf("svc1's member key is still there")
			}
		}
		return nil
	}))
	_, _, err = get(base + "/readyz")
	require.Error(t, err, "the service still answers after its shutdown")

	var order []string
	steps := []string{"shutdown: not ready any more", "shutdown: stopping the node", "stopped leading",
		"leader-only work stopped", "shutdown: node stopped; stopping the http server", "shutdown: done"}
	for _, line := range strings.Split(logs.String(), "\n") {
		for _, s := range steps {
			if strings.Contains(line, s) && !slices.Contains(order, s) {
				order = append(order, s)
			}
		}
	}
	// stopped leading and the end of the leader-only work happen in
	// either order, both after the node was asked to stop and before the
	// HTTP server stops.
	require.Len(t, order, len(steps), "missing shutdown steps in the log")
	require.Equal(t, steps[:2], order[:2])
	require.ElementsMatch(t, steps[2:4], order[2:4])
	require.Equal(t, steps[4:], order[4:])
	require.Regexp(t, regexp.MustCompile(`role changed.*role=primary`), logs.String())
}

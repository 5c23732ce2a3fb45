package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/examples/webapp/loadgen"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsage(t *testing.T) {
	var out, errOut pgtest.SyncBuffer
	require.Equal(t, exitUsage, run(context.Background(), nil, &out, &errOut))
	require.Contains(t, errOut.String(), "give exactly one of -dcs-url")
	require.Equal(t, exitUsage, run(context.Background(), []string{"-dcs-url", "consul://x/service"}, &out, &errOut))
	require.Contains(t, errOut.String(), `scheme "consul" is not supported`)
	require.Equal(t, 2, loadgen.Main(context.Background(), []string{"-workers", "-1"}, &out, &errOut))
}

// TestWebappAcrossSwitchover runs the webapp command against a real
// three-node cluster, drives it with the load loop, switches the primary
// over in the middle, and checks that no request failed, that writes
// landed on both primaries, and that the webapp shuts down cleanly.
func TestWebappAcrossSwitchover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := cluster.NewForTest(ctx, t, cluster.Options{Nodes: 3})
	old, err := c.WaitStable(ctx)
	require.NoError(t, err)

	// The webapp, as `webapp -listen 127.0.0.1:0 -dcs-url ... -scope ... -db ...` would run.
	appCtx, stopApp := context.WithCancel(context.Background())
	defer stopApp()
	var appOut, appErr pgtest.SyncBuffer
	appDone := make(chan int, 1)
	args := []string{"-listen", "127.0.0.1:0",
		"-dcs-url", fmt.Sprintf("etcd3://%s/%s", c.EtcdAddr(), c.Path().Namespace), "-scope", c.Path().Scope,
		"-db", "user=postgres dbname=postgres sslmode=disable password=" + cluster.SuperuserPassword}
	go func() { appDone <- run(appCtx, args, &appOut, &appErr) }()
	defer func() { t.Logf("webapp stderr:\n%s", appErr.String()) }()
	listening := regexp.MustCompile(`listening on (http://\S+)`)
	var base string
	require.NoError(t, cluster.Eventually(ctx, func(context.Context) error {
		select {
		case code := <-appDone:
			return fmt.Errorf("webapp exited with %d", code) // Eventually keeps polling; the next checks fail
		default:
		}
		m := listening.FindStringSubmatch(appOut.String())
		if m == nil {
			return fmt.Errorf("webapp not listening yet")
		}
		base = m[1]
		return nil
	}))

	// Read-your-writes by cookie, by hand, and the answers' headers.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := hc.Post(base+"/notes", "application/json", strings.NewReader(`{"text":"hello"}`))
	require.NoError(t, err)
	var note struct {
		ID   int64  `json:"id"`
		Text string `json:"text"`
	}
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&note))
	resp.Body.Close()
	require.Equal(t, old.Name, resp.Header.Get("Pgha-Node"), "the write went to another node than the primary")
	require.NotEmpty(t, resp.Header.Get("Pgha-LSN"))
	resp, err = hc.Get(fmt.Sprintf("%s/notes/%d", base, note.ID))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"hello"`)
	resp, err = hc.Get(base + "/notes/999999999")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, err = hc.Get(base + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The load loop, as `go run ./examples/webapp/load -url BASE -duration 0` would run.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var loadOut, loadErr pgtest.SyncBuffer
	loadDone := make(chan int, 1)
	go func() {
		loadDone <- loadgen.Main(loadCtx, []string{"-url", base, "-workers", "4", "-duration", "0"}, &loadOut, &loadErr)
	}()
	notesOn := func(n *cluster.Node) (int64, error) {
		return n.QueryInt(ctx, "SELECT count(*) FROM notes")
	}
	waitNotes := func(n *cluster.Node, atLeast int64) {
		t.Helper()
		require.NoError(t, cluster.Eventually(ctx, func(ctx context.Context) error {
			got, err := notesOn(n)
			if err != nil {
				return err
			}
			if got < atLeast {
				return fmt.Errorf("%s has %d notes, waiting for %d", n.Name, got, atLeast)
			}
			return nil
		}))
	}
	waitNotes(old, 200)

	// A switchover, as `pgha switchover --candidate X --force` requests it.
	var candidate *cluster.Node
	for _, n := range c.Nodes() {
		if n != old {
			candidate = n
			break
		}
	}
	t.Logf("switchover %s -> %s under load", old.Name, candidate.Name)
	require.NoError(t, old.HA().Switchover(ctx, candidate.Name, time.Time{}))
	primary, err := c.WaitPrimary(ctx, old)
	require.NoError(t, err)
	require.Equal(t, candidate.Name, primary.Name)
	before, err := notesOn(primary)
	require.NoError(t, err)
	waitNotes(primary, before+200) // the load goes on, on the new primary

	stopLoad()
	var code int
	select {
	case code = <-loadDone:
	case <-ctx.Done():
		t.Fatal("the load loop did not stop")
	}
	report := loadOut.String()
	t.Logf("load loop output:\n%s", report)
	require.Equal(t, 0, code, "the load loop reported failures:\n%s%s", report, loadErr.String())
	require.Regexp(t, `requests: [1-9]\d* ok, 0 failed`, report)
	require.Regexp(t, `writes by primary: .*`+old.Name+` \d+`, report)
	require.Regexp(t, `writes by primary: .*`+primary.Name+` \d+`, report)
	require.Contains(t, appErr.String(), "primary changed", "the webapp did not log the switchover")

	// Graceful shutdown: the program returns 0 and stops listening.
	stopApp()
	select {
	case code = <-appDone:
	case <-ctx.Done():
		t.Fatal("the webapp did not stop")
	}
	require.Equal(t, exitOK, code)
	_, err = http.Get(base + "/healthz")
	require.Error(t, err, "the webapp still answers after its shutdown")
}

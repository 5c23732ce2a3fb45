package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/internal/pgtest"
)

// The tests run the pgha binary, built once per test run with go build.

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

type mainRunner struct{ m *testing.M }

func (r mainRunner) Run() int {
	code := r.m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(mainRunner{m}) }

// pghaBinary builds the binary (once) and returns its path.
func pghaBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the pgha binary; skipped under -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pgha-bin-")
		if buildErr != nil {
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		buildBin = filepath.Join(buildDir, "pgha")
		out, err := exec.Command(goBin, "build", "-o", buildBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return buildBin
}

// cleanEnv is the environment for the binary, without the variables that
// would override its configuration.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATRONI_") || (strings.HasPrefix(kv, "PGHA_") && !strings.HasPrefix(kv, "PGHA_PG_BIN=")) ||
			strings.HasPrefix(kv, "DCS_URL=") || strings.HasPrefix(kv, "PATRONICTL_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// pgha runs the binary with args and stdin, bounded by 2 minutes.
func pgha(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pghaBinary(t), args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("pgha %v: %v", args, err)
	}
	r := result{stdout: o.String(), stderr: e.String(), code: code}
	t.Logf("$ pgha %s\n%s", strings.Join(args, " "), r)
	return r
}

// proc is a pgha process (pgha run).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// tnode is one member: its configuration file, ports and process.
type tnode struct {
	name    string
	yml     string
	log     string
	rest    string // host:port of the REST API
	pgPort  int
	dataDir string
	p       *proc
}

func (n *tnode) url(path string) string { return "http://" + n.rest + path }

// start runs pgha run for the node, its output appended to its log file.
func (n *tnode) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	cmd := exec.Command(pghaBinary(t), "run", n.yml)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	n.p = p
}

// stop sends SIGTERM and waits for a clean exit; it returns the process's
// error (nil for exit status 0).
func (n *tnode) stop(t *testing.T) error {
	t.Helper()
	if n.p == nil {
		return nil
	}
	_ = n.p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.p.done:
	case <-time.After(90 * time.Second):
		t.Errorf("%s did not stop within 90 s of SIGTERM; killing it", n.name)
		n.kill()
		<-n.p.done
	}
	return n.p.err
}

// kill SIGKILLs the process and the postmaster by pid.
func (n *tnode) kill() {
	if n.p != nil {
		_ = n.p.cmd.Process.Kill()
	}
	b, err := os.ReadFile(filepath.Join(n.dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err == nil && pid > 1 {
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte("postgres")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

func (n *tnode) running() bool {
	if n.p == nil {
		return false
	}
	select {
	case <-n.p.done:
		return false
	default:
		return true
	}
}

// tcluster is a set of pgha processes on one embedded etcd.
type tcluster struct {
	t     *testing.T
	etcd  *etcdtest.Etcd
	nodes []*tnode
	dir   string
	bin   string // PostgreSQL binaries
}

// newCluster writes n node configurations from the recorded Patroni files
// (testdata/patroni_nodeN.yml), changing only ports, paths, etcd and
// timings, and starts them.
func newCluster(t *testing.T, n int) *tcluster {
	bin := pgtest.BinDir(t)
	pghaBinary(t)
	e := startEtcd(t, "pgha-examples")
	c := &tcluster{t: t, etcd: e, dir: pgtest.Dir(t), bin: bin}
	for i := 1; i <= n; i++ {
		c.nodes = append(c.nodes, c.writeNode(i))
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			if n.running() {
				wg.Go(func() { _ = n.stop(t) })
			}
		}
		wg.Wait()
		for _, n := range c.nodes {
			n.kill()
			if t.Failed() || os.Getenv("PGHA_TEST_LOGS") != "" {
				b, _ := os.ReadFile(n.log)
				t.Logf("==== %s log\n%s", n.name, tail(string(b), 400))
			}
		}
	})
	for _, n := range c.nodes {
		n.start(t)
	}
	return c
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// shortDir is a directory with a short path (unix socket paths are limited
// to 107 bytes) that the postgres OS user can traverse.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "pgha")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chmod(d, 0o711))
	}
	return d
}

func (c *tcluster) writeNode(i int) *tnode {
	t := c.t
	raw, err := os.ReadFile(fmt.Sprintf("testdata/patroni_node%d.yml", i))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &m))
	n := &tnode{name: fmt.Sprintf("node%d", i), pgPort: freeport.MustGet(t)}
	n.rest = fmt.Sprintf("127.0.0.1:%d", freeport.MustGet(t))
	dir := filepath.Join(c.dir, n.name)
	require.NoError(t, os.MkdirAll(dir, 0o711))
	n.dataDir = filepath.Join(dir, "data")
	sock := shortDir(t)
	set := func(path string, v any) {
		parts := strings.Split(path, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	set("restapi.listen", n.rest)
	set("restapi.connect_address", n.rest)
	set("etcd3.hosts", c.etcd.Addr)
	// Short timings so failover tests take seconds (loop_wait + 2 *
	// retry_timeout <= ttl).
	set("bootstrap.dcs.ttl", 10)
	set("bootstrap.dcs.loop_wait", 1)
	set("bootstrap.dcs.retry_timeout", 3)
	set("postgresql.listen", fmt.Sprintf("127.0.0.1:%d", n.pgPort))
	set("postgresql.connect_address", fmt.Sprintf("127.0.0.1:%d", n.pgPort))
	set("postgresql.data_dir", n.dataDir)
	set("postgresql.bin_dir", c.bin)
	set("postgresql.pgpass", filepath.Join(sock, "pgpass"))
	set("postgresql.parameters.unix_socket_directories", filepath.Join(sock, "run"))
	set("postgresql.parameters.fsync", "off")
	set("postgresql.parameters.shared_buffers", "16MB")
	set("postgresql.parameters.wal_retrieve_retry_interval", "100ms")
	out, err := yaml.Marshal(m)
	require.NoError(t, err)
	n.yml = filepath.Join(dir, "patroni.yml")
	n.log = filepath.Join(dir, "pgha.log")
	require.NoError(t, os.WriteFile(n.yml, out, 0o600))
	return n
}

func (c *tcluster) node(name string) *tnode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// dcsURL is --dcs-url for the cluster's etcd and namespace.
func (c *tcluster) dcsURL() string { return "etcd3://" + c.etcd.Addr + "/patroni" }

// clusterJSON is GET /cluster from the first node that answers.
type clusterJSON struct {
	Members []struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		State    string `json:"state"`
		Port     int    `json:"port"`
		Timeline int    `json:"timeline"`
	} `json:"members"`
	Pause bool `json:"pause"`
}

func (c *tcluster) clusterState() (clusterJSON, error) {
	var cj clusterJSON
	var lastErr error
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		code, body, err := httpDo(http.MethodGet, n.url("/cluster"), "", "")
		if err != nil || code != http.StatusOK {
			lastErr = fmt.Errorf("%s: %d %v", n.name, code, err)
			continue
		}
		return cj, json.Unmarshal([]byte(body), &cj)
	}
	return cj, lastErr
}

// waitStable waits until one member leads and runs and every other running
// node streams, and returns the leader; not, if set, must not lead.
func (c *tcluster) waitStable(timeout time.Duration, not string) *tnode {
	var leader string
	waitFor(c.t, timeout, func() error {
		cj, err := c.clusterState()
		if err != nil {
			return err
		}
		leader = ""
		streaming := 0
		for _, m := range cj.Members {
			switch {
			case m.Role == "leader" && m.State == "running":
				leader = m.Name
			case m.Role == "replica" && m.State == "streaming":
				streaming++
			}
		}
		running := 0
		for _, n := range c.nodes {
			if n.running() {
				running++
			}
		}
		if leader == "" || leader == not || streaming != running-1 {
			return fmt.Errorf("not stable yet: %+v", cj)
		}
		if !c.primaryAnswers(c.node(leader)) {
			return fmt.Errorf("%s leads but GET /primary is not 200 yet", leader)
		}
		return nil
	})
	return c.node(leader)
}

func (c *tcluster) primaryAnswers(n *tnode) bool {
	code, _, err := httpDo(http.MethodGet, n.url("/primary"), "", "")
	return err == nil && code == http.StatusOK
}

func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not satisfied within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// httpDo makes a request with an optional body and Basic auth ("user:pass").
func httpDo(method, url, body, auth string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if u, p, ok := strings.Cut(auth, ":"); ok {
		req.SetBasicAuth(u, p)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// sqlConn connects to a node's Postgres as the superuser over TCP.
func sqlConn(ctx context.Context, port int, password string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2",
		port, password))
}

// show runs SHOW name on a node.
func show(t *testing.T, port int, password, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cn, err := sqlConn(ctx, port, password)
	if err != nil {
		return "", err
	}
	defer cn.Close(context.Background())
	var v string
	err = cn.QueryRow(ctx, "SHOW "+name).Scan(&v)
	return v, err
}

// tableRows parses a pretty table's data rows into cells.
func tableRows(out string) [][]string {
	var rows [][]string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "|") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		if cells[0] == "Member" || cells[0] == "TL" {
			continue // a header
		}
		rows = append(rows, cells)
	}
	return rows
}

// leaderInList returns the member the table of pgha list names Leader.
func leaderInList(out string) string {
	for _, r := range tableRows(out) {
		if len(r) > 2 && r[2] == "Leader" {
			return strings.TrimPrefix(r[0], "+ ")
		}
	}
	return ""
}

// execCommand is exec.Command with the test environment.
func execCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv()
	return cmd
}

// startEtcd starts an embedded etcd, retrying when a port that was free a
// moment ago has been taken meanwhile (other tests on this machine open
// connections from the same port range).
func startEtcd(t *testing.T, name string) *etcdtest.Etcd {
	t.Helper()
	var err error
	for range 5 {
		var e *etcdtest.Etcd
		if e, err = etcdtest.Start(name); err == nil {
			t.Cleanup(e.Stop)
			return e
		}
		t.Logf("embedded etcd: %v; retrying", err)
	}
	t.Fatalf("embedded etcd: %v", err)
	return nil
}

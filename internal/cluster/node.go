package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/cluster/noderun"
	"github.com/pgha/pgha/internal/faultproxy"
)

// Errors of node operations.
var (
	// ErrInProcess: the operation needs a node that runs as an OS process
	// (Kill, Freeze, Thaw).
	ErrInProcess = errors.New("cluster: not possible on an in-process node")
	// ErrNotRunning: the node is not running (never started, stopped or
	// killed).
	ErrNotRunning = errors.New("cluster: node is not running")
	// ErrAlreadyRunning: Start on a running node.
	ErrAlreadyRunning = errors.New("cluster: node is already running")
	// ErrNoPostmaster: no live postmaster on the node's data directory.
	ErrNoPostmaster = errors.New("cluster: no postmaster running")
)

// Node is one member of a Cluster: a PostgreSQL data directory and port, a
// REST API address, an etcd fault proxy, and the node itself, in-process or
// as an OS process. Its methods are safe for concurrent use.
type Node struct {
	// Name is the member name (node1, node2, ...).
	Name string

	c     *Cluster
	spec  noderun.Spec
	dir   string
	proxy *faultproxy.Proxy
	more  []*faultproxy.Proxy // to the other etcd members (Options.EtcdEndpoints)
	// ingress is the proxy in front of Postgres (Options.PostgresIngress).
	ingress *faultproxy.Proxy
	log     hclog.Logger

	mu      sync.Mutex
	done    chan struct{} // closed when the current run ended; nil before the first Start
	exitErr error         // why the last run ended
	cmd     *exec.Cmd     // process mode
	runner  *noderun.Runner
	cancel  context.CancelFunc
	fencer  *Fencer // the emulated watchdog (Options.Watchdog), or nil
}

// Start starts the node (again, after Stop or Kill: same directories,
// ports and proxy). It does not wait for Postgres.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return fmt.Errorf("%w: %s", ErrAlreadyRunning, n.Name)
	}
	done := make(chan struct{})
	if n.fencer != nil {
		if err := n.fencer.Start(); err != nil {
			return err
		}
	}
	if n.c.opts.Mode == Processes {
		args, err := n.spec.Args()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(n.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(n.c.opts.NodeProc, args...)
		cmd.Env = append(os.Environ(), n.spec.Env()...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		w := &lineWriter{file: out, log: n.log}
		cmd.Stdout, cmd.Stderr = w, w
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			_ = out.Close()
			return fmt.Errorf("cluster: starting %s: %w", n.Name, err)
		}
		n.cmd = cmd
		n.log.Info("node process started", "pid", cmd.Process.Pid)
		go func() {
			err := cmd.Wait()
			w.flush()
			_ = out.Close()
			n.log.Info("node process exited", "pid", cmd.Process.Pid, "status", cmd.ProcessState.String())
			n.mu.Lock()
			n.exitErr = err
			n.mu.Unlock()
			close(done)
		}()
	} else {
		r, err := noderun.New(ctx, n.spec, n.log)
		if err != nil {
			return fmt.Errorf("cluster: starting %s: %w", n.Name, err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		n.runner, n.cancel = r, cancel
		go func() {
			err := r.Run(rctx)
			n.mu.Lock()
			n.exitErr = err
			n.mu.Unlock()
			close(done)
		}()
	}
	n.done = done
	return nil
}

func (n *Node) runningLocked() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Running reports whether the node (the process, or the in-process Run)
// is running. A frozen node is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

// Done returns a channel closed when the current run of the node ends
// (nil before the first Start).
func (n *Node) Done() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done
}

// Err returns why the last run ended (nil while running or after a clean
// stop; for a killed process, its wait status).
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exitErr
}

// Stop stops the node cleanly (SIGTERM to the process, or cancelling the
// in-process Run): the node stops Postgres fast, releases the leader key
// and revokes its lease. When ctx ends first, a process is SIGKILLed; an
// in-process node cannot be forced and Stop returns ctx's error.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	if !n.runningLocked() {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	done, cmd, cancel := n.done, n.cmd, n.cancel
	n.mu.Unlock()
	if n.c.opts.Mode == Processes {
		pid := cmd.Process.Pid
		_ = syscall.Kill(pid, syscall.SIGCONT) // a frozen node cannot handle SIGTERM
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
			return ctx.Err()
		}
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart stops the node cleanly if it runs (see Stop), then starts it.
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		if err := n.Stop(ctx); err != nil {
			return err
		}
	}
	return n.Start(ctx)
}

// Kill SIGKILLs the node's process (and its process group), then its
// postmaster and every process the postmaster forked, by pid: the whole
// node dies at once, as in a host crash. It waits until they are gone.
// Process nodes only.
func (n *Node) Kill() error {
	n.mu.Lock()
	if n.c.opts.Mode != Processes {
		n.mu.Unlock()
		return fmt.Errorf("%w: Kill %s", ErrInProcess, n.Name)
	}
	if !n.runningLocked() {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	done, pid := n.done, n.cmd.Process.Pid
	n.mu.Unlock()
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	pmErr := n.killPostgres()
	if n.fencer != nil {
		n.fencer.Disarm() // the crashed host's watchdog is not counting after the reboot
	}
	n.log.Warn("killed the node", "pid", pid)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s: process %d did not exit after SIGKILL", n.Name, pid)
	}
	if pmErr != nil && !errors.Is(pmErr, ErrNoPostmaster) {
		return pmErr
	}
	return nil
}

// KillPostgres SIGKILLs the node's postmaster alone (by pid, read from
// postmaster.pid), leaving its backends orphaned as a crash does, and
// returns its pid. The node keeps running and sees Postgres die.
func (n *Node) KillPostgres() (int, error) {
	pid, err := n.PostmasterPID()
	if err != nil {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("cluster: %s: kill postmaster %d: %w", n.Name, pid, err)
	}
	n.log.Warn("killed the postmaster", "pid", pid)
	return pid, nil
}

// killPostgres kills the postmaster and every process it forked, and waits
// until they are gone. PostgreSQL's children each call setsid(), so they are
// not in the postmaster's process group: they are found by parent pid, with
// the postmaster stopped (SIGSTOP) meanwhile so it cannot fork more. A child
// that is itself stopped (a frozen walsender) would never notice the
// postmaster's death and would keep the shared memory attached, making every
// later start fail.
func (n *Node) killPostgres() error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	children := childrenOf(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
		_ = syscall.Kill(-c, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		alive := postgresAlive(pid)
		for _, c := range children {
			alive = alive || postgresAlive(c)
		}
		if !alive {
			return nil
		}
	}
	return fmt.Errorf("cluster: %s: postmaster %d or its children still alive after SIGKILL", n.Name, pid)
}

// childrenOf returns the pids of the live processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// Freeze SIGSTOPs the node's process (the agent alone: Postgres keeps
// running), as a long GC pause or a stuck agent would. Process nodes only.
func (n *Node) Freeze() error { return n.signalNode(syscall.SIGSTOP) }

// Thaw SIGCONTs a frozen node process.
func (n *Node) Thaw() error { return n.signalNode(syscall.SIGCONT) }

func (n *Node) signalNode(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.c.opts.Mode != Processes {
		return fmt.Errorf("%w: %s %s", ErrInProcess, sig, n.Name)
	}
	if !n.runningLocked() {
		return fmt.Errorf("%w: %s", ErrNotRunning, n.Name)
	}
	n.log.Warn("signalling the node", "signal", sig.String())
	return syscall.Kill(n.cmd.Process.Pid, sig)
}

// FreezePostgres SIGSTOPs the postmaster's whole process group (every
// backend too, which signalling the postmaster alone would not stop).
func (n *Node) FreezePostgres() error { return n.signalPostgres(syscall.SIGSTOP) }

// ThawPostgres SIGCONTs the postmaster's process group.
func (n *Node) ThawPostgres() error { return n.signalPostgres(syscall.SIGCONT) }

func (n *Node) signalPostgres(sig syscall.Signal) error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return err
	}
	return syscall.Kill(-pid, sig)
}

// CutFromDCS blackholes the node's etcd traffic (its proxy holds every
// byte until HealDCS): the node cannot renew its lease or read the DCS,
// while etcd and the other nodes work normally.
func (n *Node) CutFromDCS() {
	n.log.Warn("cut from the DCS")
	n.pauseProxies()
}

// HealDCS ends CutFromDCS, and every fault of dcslink.go (CutDCSReplies,
// DelayDCS, DropDCS).
func (n *Node) HealDCS() {
	n.log.Warn("DCS link healed")
	n.healProxies()
}

// HA returns the in-process node's ha.Node (a new one after each Start),
// or nil for a process node or a node never started.
func (n *Node) HA() *ha.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runner == nil {
		return nil
	}
	return n.runner.Node()
}

// PID returns the node process's pid (0 for an in-process node or before
// Start).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// PostmasterPID returns the pid of the live postmaster on the node's data
// directory (from postmaster.pid, checked against /proc), or
// ErrNoPostmaster.
func (n *Node) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.spec.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrNoPostmaster, n.Name, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%w: %s: bad postmaster.pid", ErrNoPostmaster, n.Name)
	}
	if !postgresAlive(pid) {
		return 0, fmt.Errorf("%w: %s: pid %d is gone", ErrNoPostmaster, n.Name, pid)
	}
	return pid, nil
}

// postgresAlive reports whether pid is a live (not zombie) postgres process.
func postgresAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...
	open, close := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || close < open || close+2 >= len(stat) {
		return false
	}
	return string(stat[open+1:close]) == "postgres" && stat[close+2] != 'Z' && stat[close+2] != 'X'
}

// APIURL returns the URL of the node's GET /patroni.
func (n *Node) APIURL() string { return "http://" + n.spec.APIAddr + "/patroni" }

// Port returns the node's PostgreSQL port on 127.0.0.1.
func (n *Node) Port() int { return n.spec.Port }

// DataDir returns the node's data directory.
func (n *Node) DataDir() string { return n.spec.DataDir }

// LogFile returns the file a process node's output goes to (appended to
// across restarts).
func (n *Node) LogFile() string { return filepath.Join(n.dir, "node.log") }

// PostgresLogFile returns the postmaster's log file.
func (n *Node) PostgresLogFile() string { return n.spec.DataDir + ".log" }

// Proxy returns the node's etcd fault proxy.
func (n *Node) Proxy() *faultproxy.Proxy { return n.proxy }

// Connect opens a connection to the node's Postgres over TCP as the
// superuser.
func (n *Node) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf(
		"host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-harness",
		n.spec.Port, n.spec.Superuser.Username))
	if err != nil {
		return nil, err
	}
	cfg.Password = n.spec.Superuser.Password
	return pgx.ConnectConfig(ctx, cfg)
}

// Writable reports whether the node's Postgres answers and is not in
// recovery (bounded by 2 s).
func (n *Node) Writable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cn, err := n.Connect(ctx)
	if err != nil {
		return false
	}
	defer cn.Close(context.Background())
	var inRecovery bool
	if err := cn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return false
	}
	return !inRecovery
}

// Exec runs one statement on the node over a fresh connection.
func (n *Node) Exec(ctx context.Context, sql string, args ...any) error {
	cn, err := n.Connect(ctx)
	if err != nil {
		return err
	}
	defer cn.Close(context.Background())
	_, err = cn.Exec(ctx, sql, args...)
	return err
}

// QueryInt runs a query returning one integer on the node over a fresh
// connection.
func (n *Node) QueryInt(ctx context.Context, sql string, args ...any) (int64, error) {
	cn, err := n.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer cn.Close(context.Background())
	var v int64
	err = cn.QueryRow(ctx, sql, args...).Scan(&v)
	return v, err
}

// Timeline returns the timeline the node's Postgres runs on (from the
// current WAL file name on a primary, the replayed one on a replica).
func (n *Node) Timeline(ctx context.Context) (int64, error) {
	return n.QueryInt(ctx, `SELECT CASE WHEN pg_is_in_recovery()
		THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
		ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END`)
}

// FreezeWALSenders SIGSTOPs every walsender of the node's Postgres (found
// in pg_stat_replication), so that its replicas receive nothing more while
// it keeps accepting writes: the next writes exist on this node alone. It
// returns the pids; SIGCONT them, or kill the node, to end it.
func (n *Node) FreezeWALSenders(ctx context.Context) ([]int, error) {
	cn, err := n.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.Close(context.Background())
	rows, err := cn.Query(ctx, "SELECT pid FROM pg_stat_replication")
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(pids))
	for _, p := range pids {
		if err := syscall.Kill(int(p), syscall.SIGSTOP); err != nil {
			return out, fmt.Errorf("cluster: %s: SIGSTOP walsender %d: %w", n.Name, p, err)
		}
		out = append(out, int(p))
	}
	return out, nil
}

// teardown ends the node for Close: a process node and its postmaster
// group are SIGKILLed; an in-process node is stopped normally (bounded),
// then anything left of its Postgres is SIGKILLed.
func (n *Node) teardown() error {
	var err error
	if n.fencer != nil {
		err = n.fencer.Stop()
	}
	n.mu.Lock()
	running := n.runningLocked()
	done, cmd, cancel := n.done, n.cmd, n.cancel
	n.mu.Unlock()
	if running {
		if n.c.opts.Mode == Processes {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("cluster: %s: process %d did not exit", n.Name, cmd.Process.Pid)
			}
		} else {
			cancel()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("cluster: %s: Run did not return within 60s", n.Name)
			}
		}
	}
	_ = n.signalPostgres(syscall.SIGCONT)
	if perr := n.killPostgres(); perr != nil && !errors.Is(perr, ErrNoPostmaster) {
		err = errors.Join(err, perr)
	}
	return err
}

// lineWriter copies a process node's output to its log file and, line by
// line, to the harness logger.
type lineWriter struct {
	mu   sync.Mutex
	file *os.File
	log  hclog.Logger
	buf  []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.file.Write(p)
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.Info(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.log.Info(string(w.buf))
		w.buf = nil
	}
}

// ArmSyncFreeze makes the node process stop itself (SIGSTOP, as if frozen)
// right after its next synchronous-mode step of the given kind:
// noderun.FreezeAfterSyncNames (a change of synchronous_standby_names) or
// noderun.FreezeAfterSyncKey (a /sync write). Only for Processes nodes.
// Thaw, Kill or Close end the freeze.
func (n *Node) ArmSyncFreeze(kind string) error {
	if n.spec.FreezeArmFile == "" {
		return errors.New("cluster: only process nodes can be frozen after a synchronous-mode step")
	}
	return os.WriteFile(n.spec.FreezeArmFile, []byte(kind), 0o600)
}

// Frozen reports whether the node process is stopped (state T in
// /proc/<pid>/stat).
func (n *Node) Frozen() bool {
	pid := n.PID()
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'T' || s[i+2] == 't')
}

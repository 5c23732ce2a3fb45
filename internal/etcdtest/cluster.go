package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/internal/freeport"
)

// MemberEnv names an environment variable that, when set, points at a
// prebuilt etcdmember binary for BuildMember to return instead of building.
const MemberEnv = "PGHA_ETCDMEMBER"

// MemberPackage is the import path of the etcdmember program.
const MemberPackage = "github.com/pgha/pgha/internal/etcdtest/etcdmember"

// Errors of member operations.
var (
	// ErrMemberNotRunning: the member's process is not running (killed, or
	// never started).
	ErrMemberNotRunning = errors.New("etcdtest: member is not running")
	// ErrMemberRunning: Start on a running member.
	ErrMemberRunning = errors.New("etcdtest: member is already running")
	// ErrNoLeader: no answering member says it is the etcd leader.
	ErrNoLeader = errors.New("etcdtest: no etcd leader")
)

// BuildMember builds the etcdmember program into dir with `go build` (the
// go command from PATH; the working directory must be inside the module, as
// it is for tests) and returns the binary's path. When PGHA_ETCDMEMBER is
// set it returns that path instead.
func BuildMember(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv(MemberEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("etcdtest: %s=%s: %w", MemberEnv, p, err)
		}
		return p, nil
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("etcdtest: building etcdmember needs the go command: %w", err)
	}
	out := filepath.Join(dir, "etcdmember")
	cmd := exec.CommandContext(ctx, gocmd, "build", "-o", out, MemberPackage)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("etcdtest: go build %s: %w\n%s", MemberPackage, err, b)
	}
	return out, nil
}

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Size is the number of members, named m1, m2, ... Default 3.
	Size int
	// Binary is the etcdmember program (see BuildMember). Required.
	Binary string
	// Dir holds the members' data directories and logs. Default a new
	// temporary directory that Close removes.
	Dir string
	// Heartbeat and ElectionTimeout are raft's timing (etcd's
	// --heartbeat-interval and --election-timeout). Default 100 ms and 1 s,
	// etcd's defaults.
	Heartbeat, ElectionTimeout time.Duration
}

// Cluster is a running etcd cluster whose members are separate OS
// processes (each in its own process group), so that one member can be
// killed (SIGKILL), restarted on its data directory, or paused (SIGSTOP)
// like a hung host. Its methods are safe for concurrent use.
type Cluster struct {
	// Members are the members, in name order.
	Members []*Member
	// Admin is a client over every member's endpoint, with short gRPC
	// keepalives so that a paused member is soon skipped.
	Admin *clientv3.Client

	dir    string
	ownDir bool
}

// Member is one etcd member process of a Cluster.
type Member struct {
	// Name is the member name (m1, m2, ...).
	Name string
	// ClientAddr and PeerAddr are the host:port of its client and peer
	// listeners.
	ClientAddr, PeerAddr string

	bin     string
	dir     string
	initial string
	timing  []string // raft timing flags

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exited
	paused  bool
	started bool // the member has been started once (later starts join an existing cluster)
}

// StartCluster starts a cluster of opts.Size members on free loopback
// ports and waits (bounded by ctx) until every member answers and one of
// them leads. On error everything started is torn down.
func StartCluster(ctx context.Context, opts ClusterOptions) (c *Cluster, err error) {
	if opts.Size == 0 {
		opts.Size = 3
	}
	if opts.Size < 1 {
		return nil, fmt.Errorf("etcdtest: cluster size %d", opts.Size)
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 100 * time.Millisecond
	}
	if opts.ElectionTimeout == 0 {
		opts.ElectionTimeout = time.Second
	}
	if opts.Heartbeat < time.Millisecond || opts.ElectionTimeout < 5*opts.Heartbeat {
		return nil, fmt.Errorf("etcdtest: heartbeat %s and election timeout %s: the election timeout must be at least 5 heartbeats", opts.Heartbeat, opts.ElectionTimeout)
	}
	if opts.Binary == "" {
		return nil, errors.New("etcdtest: ClusterOptions.Binary is required (see BuildMember)")
	}
	c = &Cluster{dir: opts.Dir}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "pgha-etcdc-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	}
	var initial []string
	for i := range opts.Size {
		cp, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		pp, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		m := &Member{Name: fmt.Sprintf("m%d", i+1), ClientAddr: fmt.Sprintf("127.0.0.1:%d", cp),
			PeerAddr: fmt.Sprintf("127.0.0.1:%d", pp), bin: opts.Binary,
			timing: []string{"-heartbeat-ms", fmt.Sprint(opts.Heartbeat.Milliseconds()), "-election-ms", fmt.Sprint(opts.ElectionTimeout.Milliseconds())}}
		m.dir = filepath.Join(c.dir, m.Name)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"=http://"+m.PeerAddr)
	}
	for _, m := range c.Members {
		m.initial = strings.Join(initial, ",")
		if err := m.start(); err != nil {
			return nil, err
		}
	}
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = "http://" + m.ClientAddr
	}
	c.Admin, err = clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, PermitWithoutStream: true, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Endpoints returns every member's client host:port, in member order.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientAddr
	}
	return out
}

// Member returns the member with the given name, or nil.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// status asks one member for its status, bounded by one second.
func (c *Cluster) status(ctx context.Context, m *Member) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Admin.Status(ctx, "http://"+m.ClientAddr)
}

// Leader returns the member that answers its status request (each bounded
// by one second) and says it is the raft leader, or ErrNoLeader. A paused
// member does not answer, so it is never returned.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	type answer struct {
		m    *Member
		resp *clientv3.StatusResponse
	}
	answers := make([]answer, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		if !m.Running() || m.Paused() {
			continue
		}
		wg.Go(func() {
			if resp, err := c.status(ctx, m); err == nil {
				answers[i] = answer{m, resp}
			}
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a.resp != nil && a.resp.Header != nil && a.resp.Leader != 0 && a.resp.Leader == a.resp.Header.MemberId {
			return a.m, nil
		}
	}
	return nil, ErrNoLeader
}

// WaitHealthy waits (bounded by ctx) until every running, unpaused member
// answers its status with a leader, that leader is one of them, and a
// linearizable read through Admin succeeds.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last error
	for {
		last = c.healthy(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcdtest: cluster not healthy: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) healthy(ctx context.Context) error {
	var leader uint64
	for _, m := range c.Members {
		if !m.Running() || m.Paused() {
			continue
		}
		resp, err := c.status(ctx, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
		if resp.Leader == 0 {
			return fmt.Errorf("%s has no leader", m.Name)
		}
		if leader != 0 && resp.Leader != leader {
			return fmt.Errorf("members disagree on the leader (%x, %x)", leader, resp.Leader)
		}
		leader = resp.Leader
	}
	if _, err := c.Leader(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := c.Admin.Get(rctx, "etcdtest-health")
	return err
}

// Close SIGKILLs every member (SIGCONT first for a paused one), closes the
// admin client and removes the directory StartCluster created. It is
// idempotent.
func (c *Cluster) Close() error {
	var errs []error
	for _, m := range c.Members {
		if err := m.Kill(); err != nil && !errors.Is(err, ErrMemberNotRunning) {
			errs = append(errs, err)
		}
	}
	if c.Admin != nil {
		_ = c.Admin.Close()
		c.Admin = nil
	}
	if c.ownDir && c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
		c.dir = ""
	}
	return errors.Join(errs...)
}

// LogFile returns the file the member's output goes to (appended to across
// restarts).
func (m *Member) LogFile() string { return m.dir + ".log" }

// start starts the member's process; the first start creates the
// cluster, later ones rejoin it on the same data directory.
func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runningLocked() {
		return fmt.Errorf("%w: %s", ErrMemberRunning, m.Name)
	}
	state := "new"
	if m.started {
		state = "existing"
	}
	out, err := os.OpenFile(m.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"-name", m.Name, "-dir", m.dir, "-client", "http://" + m.ClientAddr,
		"-peer", "http://" + m.PeerAddr, "-initial-cluster", m.initial, "-state", state}, m.timing...)
	cmd := exec.Command(m.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("etcdtest: starting member %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
	}()
	m.cmd, m.done, m.paused, m.started = cmd, done, false, true
	return nil
}

// Start starts a killed member again on its data directory; it rejoins
// the cluster. It does not wait for it (see Cluster.WaitHealthy).
func (m *Member) Start() error { return m.start() }

func (m *Member) runningLocked() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Running reports whether the member's process runs (a paused one does).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runningLocked()
}

// Paused reports whether Pause stopped the member and Resume has not
// continued it.
func (m *Member) Paused() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused && m.runningLocked()
}

// PID returns the member's process id (0 before the first start).
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill SIGKILLs the member's process group, as a host crash would, and
// waits until the process is gone.
func (m *Member) Kill() error {
	m.mu.Lock()
	if !m.runningLocked() {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrMemberNotRunning, m.Name)
	}
	pid, done := m.cmd.Process.Pid, m.done
	m.mu.Unlock()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("etcdtest: member %s (pid %d) did not exit after SIGKILL", m.Name, pid)
	}
}

// Pause SIGSTOPs the member's process group: it keeps its sockets (peers
// and clients can still connect, the kernel accepts) but answers nothing,
// like a hung host or a long GC pause.
func (m *Member) Pause() error { return m.signal(syscall.SIGSTOP, true) }

// Resume SIGCONTs a paused member.
func (m *Member) Resume() error { return m.signal(syscall.SIGCONT, false) }

func (m *Member) signal(sig syscall.Signal, paused bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return fmt.Errorf("%w: %s", ErrMemberNotRunning, m.Name)
	}
	if err := syscall.Kill(-m.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("etcdtest: %s member %s: %w", sig, m.Name, err)
	}
	m.paused = paused
	return nil
}

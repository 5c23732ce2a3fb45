package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/freeport"
)

// patroniBin is Debian's patroni program.
const patroniBin = "/usr/bin/patroni"

// patroniSystem is a 3-node Patroni cluster on its own embedded etcd (the
// etcd3 backend, through etcd's JSON gateway), run as the postgres OS user.
type patroniSystem struct {
	etcd_    *etcdtest.Etcd
	dir      string
	scope    string
	uid, gid uint32
	ns       []bnode
	logs     []string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
}

// ensurePatroni installs Debian's patroni package when it is missing.
func ensurePatroni(ctx context.Context) error {
	if _, err := os.Stat(patroniBin); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "benchreport: installing Debian's patroni (apt-get install -y patroni)")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "patroni")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install -y patroni: %w\n%s", err, out)
	}
	return nil
}

func patroniVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, patroniBin, "--version").Output()
	if err != nil {
		return "patroni (version unknown)"
	}
	return string(trimNL(out))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func startPatroni(ctx context.Context, t timing, binDir string) (_ *patroniSystem, err error) {
	if err := ensurePatroni(ctx); err != nil {
		return nil, err
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("patroni refuses to run as root and needs the postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	s := &patroniSystem{scope: fmt.Sprintf("bench%d", os.Getpid()), uid: uint32(uid), gid: uint32(gid)}
	defer func() {
		if err != nil {
			_ = s.close()
		}
	}()
	if s.etcd_, err = etcdtest.Start("patroni-bench"); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if s.dir, err = os.MkdirTemp("", "patroni-bench-"); err != nil {
		return nil, err
	}
	if err := os.Chown(s.dir, uid, gid); err != nil {
		return nil, err
	}
	for i := range 3 {
		name := fmt.Sprintf("pat%d", i+1)
		ndir := filepath.Join(s.dir, name)
		if err := os.Mkdir(ndir, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(ndir, uid, gid); err != nil {
			return nil, err
		}
		pgPort, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		restPort, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		n := bnode{name: name, pgPort: pgPort, restAddr: fmt.Sprintf("127.0.0.1:%d", restPort), dataDir: filepath.Join(ndir, "data")}
		cfg := fmt.Sprintf(`scope: %s
namespace: /service/
name: %s
log:
  level: INFO
restapi:
  listen: %s
  connect_address: %s
etcd3:
  hosts: %s
  protocol: http
bootstrap:
  dcs:
    ttl: %d
    loop_wait: %d
    retry_timeout: %d
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: false
  initdb:
  - encoding: UTF8
postgresql:
  listen: 127.0.0.1:%d
  connect_address: 127.0.0.1:%d
  data_dir: %s
  bin_dir: %s
  pgpass: %s
  authentication:
    superuser:
      username: postgres
      password: %s
    replication:
      username: replicator
      password: repl-secret
  parameters:
    unix_socket_directories: %s
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 scram-sha-256
  - host replication replicator 127.0.0.1/32 scram-sha-256
`, s.scope, name, n.restAddr, n.restAddr, s.etcd_.Addr, t.ttl, t.loopWait, t.retry,
			pgPort, pgPort, n.dataDir, binDir, filepath.Join(ndir, "pgpass"), superPassword, ndir)
		path := filepath.Join(ndir, "patroni.yml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return nil, err
		}
		s.ns = append(s.ns, n)
		s.logs = append(s.logs, filepath.Join(ndir, "patroni.log"))
		s.procs = append(s.procs, nil)
		s.done = append(s.done, nil)
	}
	for i := range s.ns {
		if err := s.startNode(ctx, i); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *patroniSystem) label() string { return "patroni" }

func (s *patroniSystem) nodes() []bnode { return s.ns }

func (s *patroniSystem) running(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done[i] == nil {
		return false
	}
	select {
	case <-s.done[i]:
		return false
	default:
		return true
	}
}

func (s *patroniSystem) startNode(_ context.Context, i int) error {
	if s.running(i) {
		return fmt.Errorf("%s is already running", s.ns[i].name)
	}
	ndir := filepath.Dir(s.ns[i].dataDir)
	logf, err := os.OpenFile(s.logs[i], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(patroniBin, filepath.Join(ndir, "patroni.yml"))
	cmd.Dir = ndir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + ndir, "LANG=C.UTF-8", "PGPASSFILE=" + filepath.Join(ndir, "pgpass")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting patroni %s: %w", s.ns[i].name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.procs[i], s.done[i] = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *patroniSystem) agentPIDs(i int) []int {
	s.mu.Lock()
	cmd := s.procs[i]
	s.mu.Unlock()
	if cmd == nil || !s.running(i) {
		return nil
	}
	return procTree(cmd.Process.Pid)
}

// stopAgent SIGKILLs node i's patroni process group and waits for it.
func (s *patroniSystem) stopAgent(i int) error {
	s.mu.Lock()
	cmd, done := s.procs[i], s.done[i]
	s.mu.Unlock()
	if cmd == nil || done == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("patroni %s (pid %d) did not exit after SIGKILL", s.ns[i].name, pid)
	}
}

func (s *patroniSystem) killNode(i int) error {
	if err := s.stopAgent(i); err != nil {
		return err
	}
	if err := cluster.KillPostgresTree(s.ns[i].dataDir); err != nil && !errors.Is(err, cluster.ErrNoPostmaster) {
		return err
	}
	return nil
}

func (s *patroniSystem) killPostgres(i int) error { return cluster.KillPostgresTree(s.ns[i].dataDir) }

func (s *patroniSystem) etcd() (*clientv3.Client, string, dcs.Path) {
	return s.etcd_.Admin, s.etcd_.Addr, dcs.Path{Namespace: "service", Scope: s.scope}
}

// close kills every patroni process and every postmaster by pid, stops etcd
// and removes the directory (the logs are kept when keep is set).
func (s *patroniSystem) close() error {
	var errs []error
	for i := range s.ns {
		if err := s.killNode(i); err != nil {
			errs = append(errs, err)
		}
	}
	// A postmaster Patroni was starting when it died may appear late.
	time.Sleep(500 * time.Millisecond)
	for _, n := range s.ns {
		if err := cluster.KillPostgresTree(n.dataDir); err != nil && !errors.Is(err, cluster.ErrNoPostmaster) {
			errs = append(errs, err)
		}
	}
	if s.etcd_ != nil {
		s.etcd_.Stop()
	}
	if s.dir != "" && os.Getenv("BENCHREPORT_KEEP") == "" {
		_ = os.RemoveAll(s.dir)
	}
	return errors.Join(errs...)
}

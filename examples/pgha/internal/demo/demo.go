package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/examples/pgha/internal/ctl"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/pg"
)

// Options configure the demo.
type Options struct {
	// Dir holds everything the demo creates; empty means a new temporary
	// directory.
	Dir string
	// Keep leaves the directory (data, logs, configuration files) in place
	// on exit.
	Keep bool
	// Nodes is the number of members (default 3).
	Nodes int
	// Scope is the cluster name (default "demo").
	Scope string
	// Password is the postgres superuser's password (default "demo").
	Password string
	// Executable is the pgha binary that runs the nodes (default: this
	// program).
	Executable string
	// Live redraws the screen every second on a terminal; otherwise the
	// table is printed whenever it changes.
	Live bool
}

// Main parses the demo's flags and runs it until ctx ends.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Dir, "dir", "", "directory for data, logs and configuration (default: a new temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the directory on exit")
	fs.IntVar(&o.Nodes, "nodes", 3, "number of members")
	fs.StringVar(&o.Scope, "scope", "demo", "cluster name")
	fs.StringVar(&o.Password, "password", "demo", "password of the postgres superuser")
	if err := fs.Parse(args); err != nil {
		return ctl.ExitUsage
	}
	o.Live = isTerminal(stdout)
	if err := Run(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "\npgha demo: %v\n", err)
		return ctl.ExitFailed
	}
	return ctl.ExitOK
}

type node struct {
	name      string
	pgPort    int
	apiPort   int
	dir       string
	yml, log  string
	cmd       *exec.Cmd
	done      chan struct{}
	exitState string
}

// Run starts etcd and the nodes, shows the cluster until ctx ends, then
// stops everything and removes what it created (unless Keep).
func Run(ctx context.Context, o Options, out io.Writer) (err error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Scope == "" {
		o.Scope = "demo"
	}
	if o.Password == "" {
		o.Password = "demo"
	}
	bin, err := pg.FindBinDir(ctx)
	if err != nil {
		return fmt.Errorf("%s", missingPostgres(err))
	}
	version := pgVersion(bin)
	if os.Geteuid() == 0 {
		if _, err := user.Lookup(pg.DefaultOSUser); err != nil {
			return fmt.Errorf("running as root, pgha runs PostgreSQL as the %q OS user, which does not exist: "+
				"install your distribution's postgresql package (it creates the user) or run `useradd --system --create-home postgres`", pg.DefaultOSUser)
		}
	}
	self := o.Executable
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return err
		}
	}

	// The directory and what the demo creates in it.
	dir, created := o.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "pgha-demo-"); err != nil {
			return err
		}
		created = true
	} else {
		if dir, err = filepath.Abs(dir); err != nil {
			return err
		}
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			created = true
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if os.Geteuid() == 0 {
		// Postgres runs as the postgres user and must traverse it.
		if err := os.Chmod(dir, 0o711); err != nil {
			return err
		}
	}
	var made []string
	defer func() {
		if o.Keep {
			fmt.Fprintf(out, "kept %s (data, logs and the nodes' configuration files)\n", dir)
			return
		}
		if created {
			_ = os.RemoveAll(dir)
		} else {
			for _, p := range made {
				_ = os.RemoveAll(p)
			}
		}
		fmt.Fprintf(out, "removed %s\n", dir)
	}()

	made = append(made, filepath.Join(dir, "etcd"), filepath.Join(dir, "etcd.log"))
	fmt.Fprintf(out, "pgha demo: starting etcd and %d PostgreSQL %s nodes in %s ...\n", o.Nodes, version, dir)
	e, err := startEtcd(dir, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return err
	}
	defer e.stop()

	nodes := make([]*node, o.Nodes)
	for i := range nodes {
		n := &node{name: fmt.Sprintf("node%d", i+1), done: make(chan struct{})}
		if n.pgPort, err = freeport.Get(); err != nil {
			return err
		}
		if n.apiPort, err = freeport.Get(); err != nil {
			return err
		}
		n.dir = filepath.Join(dir, n.name)
		n.yml = filepath.Join(dir, n.name+".yml")
		n.log = filepath.Join(dir, n.name+".log")
		made = append(made, n.dir, n.yml, n.log)
		if err := os.MkdirAll(n.dir, 0o711); err != nil {
			return err
		}
		if err := os.WriteFile(n.yml, []byte(nodeYAML(o, e.addr, bin, n)), 0o600); err != nil {
			return err
		}
		nodes[i] = n
	}
	defer stopNodes(nodes, out)
	for _, n := range nodes {
		if err := startNode(self, n); err != nil {
			return err
		}
	}

	store, err := etcddcs.New(context.Background(), etcddcs.Config{Endpoints: []string{e.client},
		Path: dcs.Path{Scope: o.Scope}, RetryTimeout: 3 * time.Second})
	if err != nil {
		return err
	}
	defer store.Close()

	cmdName := self
	if strings.Contains(self, "go-build") {
		cmdName = "go run ./examples/pgha"
	}
	dcsURL := fmt.Sprintf("etcd3://%s/service", e.addr)
	var last string
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		screen := render(ctx, o, store, nodes, dir, cmdName, dcsURL, version)
		switch {
		case o.Live:
			fmt.Fprint(out, "\033[H\033[2J"+screen)
		case screen != last:
			fmt.Fprint(out, screen+"\n")
		}
		last = screen
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping the nodes (each stops Postgres and hands over or releases the leader key) ...")
			return nil
		case <-tick.C:
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func pgVersion(bin string) string {
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "?"
	}
	if v := versionRE.FindString(string(out)); v != "" {
		return v
	}
	return strings.TrimSpace(string(out))
}

var versionRE = regexp.MustCompile(`\d+\.\d+(\.\d+)?`)

// missingPostgres says exactly what to install.
func missingPostgres(err error) string {
	var b strings.Builder
	b.WriteString("the demo needs the PostgreSQL server programs (postgres, initdb, pg_basebackup, pg_rewind, pg_controldata; version 13 or newer) and could not find them.\n")
	var mb *pg.MissingBinaryError
	if errors.As(err, &mb) {
		b.WriteString("Looked in:\n")
		for _, s := range mb.Searched {
			b.WriteString("  " + s + "\n")
		}
	} else {
		b.WriteString("  " + err.Error() + "\n")
	}
	id := osID()
	lines := []struct{ ids, line string }{
		{"debian ubuntu", "Debian, Ubuntu:      sudo apt-get install postgresql      (the demo does not use the cluster the package starts)"},
		{"fedora rhel centos rocky almalinux", "Fedora, RHEL:        sudo dnf install postgresql-server postgresql-contrib"},
		{"alpine", "Alpine:              sudo apk add postgresql postgresql-contrib"},
		{"arch", "Arch:                sudo pacman -S postgresql"},
		{"darwin", "macOS (Homebrew):    brew install postgresql@17"},
	}
	b.WriteString("Install them, then run the demo again:\n")
	for _, l := range lines {
		if id != "" && containsWord(l.ids, id) {
			b.WriteString("  " + l.line + "\n")
		}
	}
	for _, l := range lines {
		if id == "" || !containsWord(l.ids, id) {
			b.WriteString("  " + l.line + "\n")
		}
	}
	fmt.Fprintf(&b, "or point pgha at a directory that holds them: %s=/usr/lib/postgresql/17/bin", pg.BinDirEnv)
	return b.String()
}

func containsWord(list, w string) bool {
	for _, x := range strings.Fields(list) {
		if x == w {
			return true
		}
	}
	return false
}

// osID is ID (or the first of ID_LIKE) from /etc/os-release.
func osID() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	var id, like string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			id = v
		case "ID_LIKE":
			like = strings.Fields(v + " ")[0]
		}
	}
	for _, known := range []string{"debian", "ubuntu", "fedora", "rhel", "centos", "rocky", "almalinux", "alpine", "arch"} {
		if id == known {
			return id
		}
	}
	return like
}

// nodeYAML is the patroni.yml of one demo node.
func nodeYAML(o Options, etcdAddr, bin string, n *node) string {
	return fmt.Sprintf(`# pgha demo node %[1]s: a patroni.yml; run it yourself with: pgha run %[2]s
scope: %[3]s
name: %[1]s
restapi:
  listen: 127.0.0.1:%[4]d
  connect_address: 127.0.0.1:%[4]d
etcd3:
  hosts: %[5]s
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 50
        max_wal_senders: 10
        wal_keep_size: 128MB
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 scram-sha-256
  - host replication replicator 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:%[6]d
  connect_address: 127.0.0.1:%[6]d
  data_dir: %[7]s/data
  bin_dir: %[8]s
  pgpass: %[7]s/pgpass
  authentication:
    superuser:
      username: postgres
      password: %[9]s
    replication:
      username: replicator
      password: %[9]s-replication
    rewind:
      username: rewinder
      password: %[9]s-rewind
  parameters:
    shared_buffers: 32MB
    wal_retrieve_retry_interval: 500ms
`, n.name, n.yml, o.Scope, n.apiPort, etcdAddr, n.pgPort, n.dir, bin, o.Password)
}

func startNode(self string, n *node) error {
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "run", n.yml)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so Ctrl-C reaches only the demo, which stops
	// the nodes in order; and SIGTERM if the demo dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting %s: %w", n.name, err)
	}
	n.cmd = cmd
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		if err != nil {
			n.exitState = err.Error()
		} else {
			n.exitState = "exited"
		}
		close(n.done)
	}()
	return nil
}

// stopNodes sends SIGTERM to every node at once and waits for them; a node
// that does not stop within a minute is killed, and its postmaster too.
func stopNodes(nodes []*node, out io.Writer) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n == nil || n.cmd == nil {
			continue
		}
		wg.Go(func() {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.done:
			case <-time.After(time.Minute):
				fmt.Fprintf(out, "%s did not stop within a minute; killing it\n", n.name)
				_ = n.cmd.Process.Kill()
				<-n.done
			}
			killPostmaster(filepath.Join(n.dir, "data"))
		})
	}
	wg.Wait()
}

// killPostmaster kills a postmaster left running on dataDir, by the pid in
// its postmaster.pid, if that process is a postgres.
func killPostmaster(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("postgres")) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	for range 50 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// render is one screen: the list table, the connection strings, what to try.
func render(ctx context.Context, o Options, store *etcddcs.Store, nodes []*node, dir, cmdName, dcsURL, version string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pgha demo: %d PostgreSQL %s nodes and an embedded etcd on 127.0.0.1, in %s\n\n", len(nodes), version, dir)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cl, err := store.Cluster(cctx)
	cancel()
	if err != nil {
		fmt.Fprintf(&b, "(etcd: %v)\n", err)
	} else {
		ctl.RenderList(&b, cl, o.Scope, ctl.ListOptions{})
		if cl.LeaderName() == "" {
			b.WriteString(" (no leader yet: bootstrapping, or electing a new one)\n")
		}
	}
	var hosts []string
	for _, n := range nodes {
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", n.pgPort))
	}
	url := fmt.Sprintf("postgresql://postgres:%s@%s/postgres", o.Password, strings.Join(hosts, ","))
	fmt.Fprintf(&b, "\nConnect (user postgres, password %s):\n", o.Password)
	fmt.Fprintf(&b, "  the primary:  psql '%s?target_session_attrs=read-write'\n", url)
	fmt.Fprintf(&b, "  a replica:    psql '%s?target_session_attrs=standby'\n", url)
	for _, n := range nodes {
		state := fmt.Sprintf("pid %d", n.cmd.Process.Pid)
		select {
		case <-n.done:
			state = fmt.Sprintf("%s; start it again: %s run %s", n.exitState, cmdName, n.yml)
		default:
		}
		fmt.Fprintf(&b, "  %s:        psql 'postgresql://postgres:%s@127.0.0.1:%d/postgres'   REST http://127.0.0.1:%d/patroni (%s)\n",
			n.name, o.Password, n.pgPort, n.apiPort, state)
	}
	fmt.Fprintf(&b, "\nIn another terminal:\n")
	fmt.Fprintf(&b, "  %s --dcs-url %s list\n", cmdName, dcsURL)
	fmt.Fprintf(&b, "  %s --dcs-url %s switchover --force\n", cmdName, dcsURL)
	fmt.Fprintf(&b, "  kill <pid of the leader's node>     (it stops Postgres and hands over: a replica is promoted)\n")
	fmt.Fprintf(&b, "\nLogs: %s/node*.log. Ctrl-C stops everything and removes %s", dir, dir)
	if o.Keep {
		fmt.Fprintf(&b, " (no: --keep)")
	}
	b.WriteString(".\n")
	return b.String()
}

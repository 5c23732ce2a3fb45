package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Instance is one PostgreSQL instance (a data directory and the postmaster
// running on it). Create it with [New]. Its methods are safe for concurrent
// use: operations that change the instance (Initdb, Start, Restart, Reload,
// Promote, ConfigureStandby, ConfigurePrimary, Clone, Rewind,
// CrashRecovery) run one at a time, a second one waiting for the first
// (bounded by its context); Stop never waits for them, so a fence can stop
// Postgres while a Start or Promote is in progress; Status, Running and
// ControlData never wait either.
type Instance struct {
	cfg     Config
	id      identity
	version int
	log     hclog.Logger
	events  chan ExitEvent
	ops     chan struct{} // one-slot semaphore for changing operations

	mu        sync.Mutex
	pm        *postmaster // the postmaster pgha knows about; nil when none
	orphans   int         // process group of a postmaster that died with children left
	params    map[string]string
	hba       []string
	slot      string // primary_slot_name when Upstream.SlotName is empty (SetStandbySlot)
	pgpass    map[pgpassKey]string
	closed    bool
	closeCh   chan struct{}
	closeOnce sync.Once
	cc        *connCache // the connection Status and Promote reuse
	// replayTL caches the last IDENTIFY_SYSTEM answer of a standby with
	// no WAL receiver, keyed by postmaster and replay position: the
	// timeline cannot change while nothing is replayed.
	replayTL struct {
		pid, tl int
		lsn     LSN
	}
	watchers sync.WaitGroup // watchers of adopted postmasters; Close waits for them
}

// postmaster is one run of the server.
type postmaster struct {
	pid       int
	child     bool          // started by this Instance (exit status known)
	done      chan struct{} // closed when the process has exited
	exit      ExitEvent     // valid once done is closed
	stopping  atomic.Bool   // pgha asked it to stop
	logOffset int64         // size of LogFile when this run started
}

// ExitEvent reports a postmaster that exited without pgha asking it to: a
// crash, a kill by someone else, or a shutdown requested outside pgha.
type ExitEvent struct {
	PID  int       // the postmaster's process id
	Time time.Time // when pgha noticed
	// ExitCode is the exit status, or -1 when the process was killed by a
	// signal or is not a child of this process (status unknown).
	ExitCode int
	// Signal is the signal that killed it, or 0.
	Signal syscall.Signal
	// StatusKnown is false for a postmaster pgha did not start itself (found
	// through postmaster.pid): only the fact of the exit is known.
	StatusKnown bool
	// LogTail is the end of the server log written during this run.
	LogTail string
}

// String describes how the postmaster ended.
func (e ExitEvent) String() string {
	switch {
	case !e.StatusKnown:
		return fmt.Sprintf("postmaster (pid %d) exited", e.PID)
	case e.Signal != 0:
		return fmt.Sprintf("postmaster (pid %d) killed by signal %d (%s)", e.PID, int(e.Signal), e.Signal)
	default:
		return fmt.Sprintf("postmaster (pid %d) exited with code %d", e.PID, e.ExitCode)
	}
}

// New validates cfg, finds the binaries and the OS user, and returns an
// Instance. It starts nothing and touches no file; it runs `postgres
// --version` (and `pg_config --bindir` when auto-detecting) to learn the
// major version. Errors: joined *[ConfigError]s, or *[MissingBinaryError].
func New(ctx context.Context, cfg Config) (*Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	id, err := lookupIdentity(cfg.OSUser)
	if err != nil {
		return nil, err
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = FindBinDir(ctx); err != nil {
			return nil, err
		}
	}
	i := &Instance{
		cfg:     cfg,
		id:      id,
		log:     cfg.Logger.Named("pg").With("member", cfg.Name),
		events:  make(chan ExitEvent, 16),
		ops:     make(chan struct{}, 1),
		params:  maps.Clone(cfg.Parameters),
		hba:     slices.Clone(cfg.HBA),
		pgpass:  map[pgpassKey]string{},
		closeCh: make(chan struct{}),
		cc:      newConnCache(),
	}
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	out, err := i.run(ctx, command{op: "new", name: "postgres", args: []string{"--version"}})
	if err != nil {
		return nil, err
	}
	if i.version, err = parseVersionOutput([]byte(out)); err != nil {
		return nil, &ConfigError{Field: "BinDir", Problem: fmt.Sprintf("%s/postgres: %v", cfg.BinDir, err)}
	}
	if i.version < MinVersion {
		return nil, &ConfigError{Field: "BinDir", Problem: fmt.Sprintf(
			"%s holds PostgreSQL %d; pgha needs %d or newer", cfg.BinDir, i.version, MinVersion)}
	}
	return i, nil
}

// Config returns the configuration in use, with defaults filled in.
func (i *Instance) Config() Config {
	c := i.cfg
	i.mu.Lock()
	c.Parameters = maps.Clone(i.params)
	c.HBA = slices.Clone(i.hba)
	i.mu.Unlock()
	return c
}

// Version returns the major version of the PostgreSQL binaries, e.g. 15.
func (i *Instance) Version() int { return i.version }

// ConnURL returns the member's connection URL as Patroni publishes it:
// postgres://<ConnectAddress>/<Database>.
func (i *Instance) ConnURL() string {
	return (&url.URL{Scheme: "postgres", Host: i.cfg.ConnectAddress, Path: "/" + i.cfg.Database}).String()
}

// Exits returns the channel on which pgha reports every postmaster exit it
// did not ask for (see [ExitEvent]). A postmaster started by this Instance
// is reaped by a goroutine that waits on it, so the event arrives as soon as
// the process is gone; one found running (started by an earlier process) is
// watched through a pidfd, as promptly. The channel has room for 16 events;
// when it is full, further events are dropped (and logged) rather than
// blocking. It is never closed.
func (i *Instance) Exits() <-chan ExitEvent { return i.events }

// Close stops the goroutines that watch postmasters this Instance did not
// start, and waits for them. It does not stop Postgres. The goroutine that
// reaps a postmaster this Instance started keeps running until that
// postmaster exits, because only it can collect the exit status. After
// Close, the operations that change the instance (see [Instance]) and
// EnsureRoles return ErrClosed; Stop, Status, Running, ControlData, Connect
// and Checkpoint still work. Close is idempotent.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		i.mu.Lock()
		i.closed = true
		close(i.closeCh)
		i.mu.Unlock()
		i.dropConn()
		i.watchers.Wait()
	})
	return nil
}

// begin takes the operation slot, bounded by ctx.
func (i *Instance) begin(ctx context.Context, op string) (func(), error) {
	i.mu.Lock()
	closed := i.closed
	i.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("pg: %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, &CommandError{Op: op, ExitCode: -1, Cause: ctxCause(err), Err: err}
	}
	select {
	case i.ops <- struct{}{}:
		return func() { <-i.ops }, nil
	case <-ctx.Done():
		return nil, &CommandError{Op: op, ExitCode: -1, Cause: ctxCause(ctx.Err()), Err: ctx.Err(),
			Detail: "waiting for another operation on this instance to finish"}
	}
}

// current returns the running postmaster, adopting one started elsewhere
// (found through postmaster.pid) and watching it, or nil.
func (i *Instance) current() *postmaster {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.pm != nil {
		select {
		case <-i.pm.done:
			i.pm = nil
		default:
			return i.pm
		}
	}
	pf, err := readPidFile(i.cfg.DataDir)
	if err != nil || !processAlive(pf.pid) {
		return nil
	}
	p := &postmaster{pid: pf.pid, done: make(chan struct{}), logOffset: fileSize(i.cfg.LogFile)}
	if i.closed {
		// Nobody may start a watcher after Close; report it as running
		// without watching it.
		return p
	}
	i.pm = p
	i.watchers.Add(1)
	go i.watchAdopted(p)
	i.log.Info("found a running postmaster", "pid", p.pid)
	return p
}

// watchAdopted waits for a postmaster that is not our child to exit, using
// a pidfd (woken the moment the process exits) or, where pidfds are not
// available, polling every 100ms.
func (i *Instance) watchAdopted(p *postmaster) {
	defer i.watchers.Done()
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err == nil {
		defer unix.Close(fd)
	} else {
		fd = -1
	}
	for {
		if fd >= 0 {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
			if err == nil && n > 0 {
				break
			}
		} else {
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-t.C:
			case <-i.closeCh:
				t.Stop()
				return
			}
			if !processAlive(p.pid) {
				break
			}
		}
		select {
		case <-i.closeCh:
			return
		default:
		}
		if fd >= 0 && !processAlive(p.pid) { // pidfd missed it (should not happen)
			break
		}
	}
	i.finish(p, ExitEvent{PID: p.pid, Time: time.Now(), ExitCode: -1})
}

// finish records a postmaster's exit and reports it if pgha did not cause
// it. Everything, logging included, happens before done is closed, so a
// caller that waited for done (Stop) sees no activity afterwards.
func (i *Instance) finish(p *postmaster, ev ExitEvent) {
	requested := p.stopping.Load()
	if !requested {
		ev.LogTail = i.logTail(p.logOffset)
	}
	p.exit = ev
	i.mu.Lock()
	if i.pm == p {
		i.pm = nil
	}
	i.mu.Unlock()
	if requested {
		i.log.Info("postmaster stopped", "pid", p.pid)
	} else {
		i.log.Error("postmaster exited unexpectedly", "pid", p.pid, "status", ev.String(), "log_tail", lastLines(ev.LogTail, 3))
		select {
		case i.events <- ev:
		default:
			i.log.Warn("exit event dropped: nobody reads Exits()", "pid", p.pid)
		}
	}
	close(p.done)
}

// Running reports whether a postmaster runs on the data directory, and its
// pid. It checks postmaster.pid and that the process is alive (not a
// zombie, and a postgres process), not only that the file exists.
func (i *Instance) Running() (pid int, running bool) {
	if p := i.current(); p != nil {
		return p.pid, true
	}
	return 0, false
}

// Initialized reports whether the data directory holds a cluster (has a
// PG_VERSION file). A missing or empty data directory is not initialized:
// the next step is Initdb or Clone.
func (i *Instance) Initialized() bool {
	_, err := os.Stat(i.dataPath("PG_VERSION"))
	return err == nil
}

// StopMode is how Stop shuts the server down.
type StopMode int

// Stop modes, as in pg_ctl stop -m. The zero value is StopFast.
const (
	// StopFast (SIGINT) disconnects clients, rolls back their transactions,
	// writes a shutdown checkpoint and exits.
	StopFast StopMode = iota
	// StopSmart (SIGTERM) waits for every client to disconnect first.
	StopSmart
	// StopImmediate (SIGQUIT) exits at once without a checkpoint; the next
	// start runs crash recovery.
	StopImmediate
)

// String returns the pg_ctl name of the mode: "fast", "smart" or
// "immediate".
func (m StopMode) String() string {
	switch m {
	case StopFast:
		return "fast"
	case StopSmart:
		return "smart"
	case StopImmediate:
		return "immediate"
	}
	return "StopMode(" + strconv.Itoa(int(m)) + ")"
}

func (m StopMode) signal() syscall.Signal {
	switch m {
	case StopSmart:
		return syscall.SIGTERM
	case StopImmediate:
		return syscall.SIGQUIT
	}
	return syscall.SIGINT
}

// Stop shuts the server down in the given mode and waits until the
// postmaster has exited (it waits for its own children first). Stopping an
// instance that does not run returns nil. On timeout the error has Cause
// ErrTimeout and Postgres is left as it is (still shutting down); a caller
// that must stop it escalates to StopImmediate.
func (i *Instance) Stop(ctx context.Context, mode StopMode) error {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	p := i.current()
	if p == nil {
		return nil
	}
	sig := mode.signal()
	argv := []string{"kill", "-" + strings.TrimPrefix(unix.SignalName(sig), "SIG"), strconv.Itoa(p.pid)}
	p.stopping.Store(true)
	i.dropConn()
	i.log.Info("stopping postgres", "mode", mode.String(), "pid", p.pid)
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return &CommandError{Op: "stop", Command: argv, ExitCode: -1, Err: err}
	}
	// p.done is closed by the reaper or the pidfd watcher; the poll covers
	// a postmaster found after Close, which nobody watches.
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-p.done:
			return nil
		case <-poll.C:
			if !p.child && !processAlive(p.pid) {
				return nil
			}
		case <-ctx.Done():
			return &CommandError{Op: "stop", Command: argv, ExitCode: -1, Cause: ctxCause(ctx.Err()), Err: ctx.Err(),
				LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile,
				Detail: fmt.Sprintf("postgres (pid %d) has not exited after a %s shutdown request and is left running", p.pid, mode)}
		}
	}
}

// Restart stops the server in the given mode (if it runs) and starts it
// again. Each half has its own Config.Timeout.
func (i *Instance) Restart(ctx context.Context, mode StopMode) error {
	if err := i.Stop(ctx, mode); err != nil {
		return err
	}
	return i.Start(ctx)
}

// Start starts the postmaster as a child of this process, running as the
// OS user, and waits until it accepts connections (postmaster.pid says
// "ready"). Before starting it checks the data directory (initialized, same
// major version, owned by the OS user, reachable) and writes pgha's files:
// pgha.conf, pgha_hba.conf, the include line in postgresql.conf. A standby
// (standby.signal present) is ready once it has reached a consistent state.
//
// If the postmaster exits during startup, the error is a *[CommandError]
// with the server log's tail and, when pgha can tell, a Cause:
// ErrPortInUse, ErrInvalidParameter or ErrCorruptDataDir. If it is still
// starting when the timeout expires, the Cause is ErrTimeout and Postgres is
// left running (Stop it, or poll Status). Starting an instance that already
// runs fails with ErrAlreadyRunning.
func (i *Instance) Start(ctx context.Context) error {
	release, err := i.begin(ctx, "start")
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	// After a postmaster was killed, its backends exit only when they notice
	// (and pgha cannot always find them to wait for: they call setsid); until
	// then the new postmaster refuses the shared memory they still hold.
	// Retry that one failure, bounded by ctx.
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		err := i.start(ctx)
		if err == nil || !strings.Contains(err.Error(), "pre-existing shared memory block") {
			return err
		}
		i.log.Warn("backends of the previous postmaster still hold its shared memory; retrying", "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (i *Instance) start(ctx context.Context) error {
	const op = "start"
	if p := i.current(); p != nil {
		return fmt.Errorf("pg: %s: %w (pid %d)", op, ErrAlreadyRunning, p.pid)
	}
	if err := i.checkDataDir(op); err != nil {
		return err
	}
	path, err := i.program("postgres")
	if err != nil {
		return err
	}
	if err := i.waitOrphans(ctx); err != nil {
		return err
	}
	if err := i.prepareRuntime(op); err != nil {
		return err
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Problem: "writing pgha's configuration files: " + err.Error()}
	}
	logf, offset, err := i.openLog(op)
	if err != nil {
		return err
	}
	args := i.postmasterArgs(true)
	argv := append([]string{path}, args...)
	cmd := exec.Command(path, args...) // not CommandContext: the server outlives ctx
	cmd.Dir = i.workDir()
	cmd.Env = i.id.childEnv()
	cmd.SysProcAttr = i.id.sysProcAttr()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return &CommandError{Op: op, Command: argv, ExitCode: -1, Err: err}
	}
	p := &postmaster{pid: cmd.Process.Pid, child: true, done: make(chan struct{}), logOffset: offset}
	i.mu.Lock()
	i.pm = p
	i.mu.Unlock()
	i.log.Info("started postgres", "pid", p.pid, "port", i.cfg.Port)
	// The reaper: it ends when the postmaster does, not at Close (only it
	// can collect the exit status).
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		ev := ExitEvent{PID: p.pid, Time: time.Now(), ExitCode: -1, StatusKnown: true}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				ev.Signal = ws.Signal()
			} else {
				ev.ExitCode = ws.ExitStatus()
			}
		}
		if groupAlive(p.pid) {
			i.mu.Lock()
			i.orphans = p.pid
			i.mu.Unlock()
		}
		i.finish(p, ev)
	}()
	return i.waitReady(ctx, op, p, argv)
}

// waitReady polls postmaster.pid until the postmaster p reports that it
// accepts connections.
func (i *Instance) waitReady(ctx context.Context, op string, p *postmaster, argv []string) error {
	delay := time.Millisecond
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		if pf, err := readPidFile(i.cfg.DataDir); err == nil && pf.pid == p.pid && (pf.status == PMReady || pf.status == PMStandby) {
			i.log.Info("postgres is ready", "pid", p.pid)
			return nil
		}
		select {
		case <-p.done:
			return i.startFailed(ctx, op, p, argv)
		case <-ctx.Done():
			return &CommandError{Op: op, Command: argv, ExitCode: -1, Cause: ctxCause(ctx.Err()), Err: ctx.Err(),
				LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile,
				Detail: fmt.Sprintf("postgres (pid %d) did not become ready and is left running", p.pid)}
		case <-t.C:
		}
		if delay < 10*time.Millisecond {
			delay *= 2
		}
		t.Reset(delay)
	}
}

var (
	reInvalidParam = regexp.MustCompile(`(invalid value for parameter|unrecognized configuration parameter|is outside the valid range for parameter|parameter "[^"]*" requires|parameter "[^"]*" cannot be|configuration file "[^"]*" contains errors|syntax error in file|could not access file|insufficient parameter settings)`)
	rePortInUse    = regexp.MustCompile(`(could not bind|Address already in use|could not create lock file .*\.s\.PGSQL|lock file ".*\.s\.PGSQL\.\d+\.lock" already exists|could not create any TCP/IP sockets)`)
	reCorrupt      = regexp.MustCompile(`(incorrect checksum in control file|could not open file "global/pg_control"|could not locate a valid checkpoint record|invalid checkpoint record|invalid data in PID file|could not read file "global/pg_control"|database files are incompatible with server|is not a valid data directory|invalid (primary|secondary) checkpoint)`)
	reFatal        = regexp.MustCompile(`(FATAL|PANIC|ERROR):`)
)

// startFailed builds the error for a postmaster that exited during
// startup, finding the cause: the port, a parameter, or a damaged data
// directory.
func (i *Instance) startFailed(ctx context.Context, op string, p *postmaster, argv []string) error {
	ev := p.exit
	ce := &CommandError{Op: op, Command: argv, ExitCode: ev.ExitCode, LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile}
	if ev.Signal != 0 {
		ce.Err = fmt.Errorf("killed by signal %d (%s)", int(ev.Signal), ev.Signal)
	}
	if p.stopping.Load() {
		ce.Detail = "stopped by a Stop call before it became ready"
		return ce
	}
	lines := strings.Split(ce.LogTail, "\n")
	match := func(re *regexp.Regexp) string {
		for _, l := range lines {
			if re.MatchString(l) {
				return stripLogPrefix(l)
			}
		}
		return ""
	}
	if addr, ok := i.portTaken(); ok {
		ce.Cause, ce.Detail = ErrPortInUse, fmt.Sprintf("another process listens on %s (set Config.Port to a free port or stop that process)", addr)
		return ce
	}
	if l := match(rePortInUse); l != "" {
		ce.Cause, ce.Detail = ErrPortInUse, l
		return ce
	}
	if l := match(reInvalidParam); l != "" {
		ce.Cause, ce.Detail = ErrInvalidParameter, l
		return ce
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := i.controlData(dctx, op); err != nil {
		var de *CommandError
		if errors.As(err, &de) && errors.Is(err, ErrCorruptDataDir) {
			ce.Cause, ce.Detail = ErrCorruptDataDir, de.Detail
			return ce
		}
	}
	if l := match(reCorrupt); l != "" {
		ce.Cause, ce.Detail = ErrCorruptDataDir, l
		return ce
	}
	for j := len(lines) - 1; j >= 0; j-- {
		if reFatal.MatchString(lines[j]) {
			ce.Detail = stripLogPrefix(lines[j])
			break
		}
	}
	return ce
}

var reLogPrefix = regexp.MustCompile(`^.*?\b(LOG|FATAL|PANIC|ERROR|WARNING):\s+`)

// stripLogPrefix removes log_line_prefix (timestamp, pid) from a server log
// line, keeping the severity.
func stripLogPrefix(l string) string {
	l = strings.TrimSpace(l)
	if m := reLogPrefix.FindStringSubmatchIndex(l); m != nil {
		return l[m[2]:m[3]] + ": " + l[m[1]:]
	}
	return l
}

// portTaken reports whether something listens on the configured port (our
// postmaster is dead, so it is someone else).
func (i *Instance) portTaken() (string, bool) {
	hosts := strings.Split(i.cfg.ListenAddress, ",")
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch h {
		case "":
			continue
		case "*", "0.0.0.0":
			h = "127.0.0.1"
		case "::":
			h = "::1"
		}
		addr := net.JoinHostPort(h, strconv.Itoa(i.cfg.Port))
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return addr, true
		}
	}
	return "", false
}

// waitOrphans waits for the children of a postmaster that died abruptly
// (SIGKILL) to exit: they notice the postmaster's death within moments, and
// a new postmaster cannot start while they still hold shared memory. After
// 5 seconds it kills what is left of that process group (by group id, which
// only holds that postmaster's children).
func (i *Instance) waitOrphans(ctx context.Context) error {
	i.mu.Lock()
	pgid := i.orphans
	i.orphans = 0
	i.mu.Unlock()
	if pgid == 0 || !groupAlive(pgid) {
		return nil
	}
	i.log.Warn("waiting for the children of the previous postmaster to exit", "pgid", pgid)
	deadline := time.Now().Add(5 * time.Second)
	killed := false
	for groupAlive(pgid) {
		if !killed && time.Now().After(deadline) {
			i.log.Warn("killing the leftover children of the previous postmaster", "pgid", pgid)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			killed = true
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return &CommandError{Op: "start", ExitCode: -1, Cause: ctxCause(ctx.Err()), Err: ctx.Err(),
				Detail: fmt.Sprintf("children of the previous postmaster (process group %d) are still running", pgid)}
		case <-t.C:
		}
	}
	return nil
}

// postmasterArgs returns the postgres arguments: the data directory and
// every protected GUC. withNet adds the listen and socket settings.
func (i *Instance) postmasterArgs(withNet bool) []string {
	i.mu.Lock()
	res := ResolveParameters(i.params)
	hbaSet := i.hba != nil
	i.mu.Unlock()
	for _, a := range res.Adjusted {
		i.log.Warn("parameter adjusted", "parameter", a.Name, "given", a.Given, "used", a.Used, "reason", a.Reason)
	}
	args := []string{"-D", i.cfg.DataDir}
	for _, k := range slices.Sorted(maps.Keys(res.Protected)) {
		args = append(args, "-c", k+"="+res.Protected[k])
	}
	if i.cfg.ClusterName != "" {
		args = append(args, "-c", "cluster_name="+i.cfg.ClusterName)
	}
	if hbaSet {
		args = append(args, "-c", "hba_file="+i.dataPath(HBAFile))
	}
	if withNet {
		args = append(args,
			"-c", "listen_addresses="+i.cfg.ListenAddress,
			"-c", "port="+strconv.Itoa(i.cfg.Port),
			"-c", "unix_socket_directories="+i.cfg.SocketDir)
	}
	return args
}

// checkInitialized verifies the data directory holds a cluster of the
// binaries' major version.
func (i *Instance) checkInitialized(op string) error {
	dir := i.cfg.DataDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &DirError{Op: op, Path: dir, Cause: ErrNotInitialized, Problem: "does not exist; create the cluster with Initdb or Clone"}
	case err != nil:
		return &DirError{Op: op, Path: dir, Cause: ErrPermission, Problem: err.Error()}
	case !fi.IsDir():
		return &DirError{Op: op, Path: dir, Cause: ErrCorruptDataDir, Problem: "is not a directory"}
	}
	b, err := os.ReadFile(i.dataPath("PG_VERSION"))
	if err != nil {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 0 {
			return &DirError{Op: op, Path: dir, Cause: ErrNotInitialized, Problem: "is empty; create the cluster with Initdb or Clone"}
		}
		return &DirError{Op: op, Path: dir, Cause: ErrCorruptDataDir, Problem: fmt.Sprintf(
			"is not a PostgreSQL data directory: PG_VERSION is missing or unreadable (%v) but the directory has %d entries; restore it or move it aside and clone again", err, len(entries))}
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return &DirError{Op: op, Path: dir, Cause: ErrCorruptDataDir, Problem: fmt.Sprintf("PG_VERSION holds %q, not a version number", strings.TrimSpace(string(b)))}
	}
	if v != i.version {
		return &DirError{Op: op, Path: dir, Cause: ErrVersionMismatch, Problem: fmt.Sprintf(
			"was created by PostgreSQL %d but Config.BinDir (%s) holds PostgreSQL %d; point BinDir at version %d binaries or upgrade the cluster", v, i.cfg.BinDir, i.version, v)}
	}
	return nil
}

// checkDataDir runs every check Start needs before launching postgres.
func (i *Instance) checkDataDir(op string) error {
	if err := i.checkInitialized(op); err != nil {
		return err
	}
	uid, mode, err := ownerOf(i.cfg.DataDir)
	if err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	if uid != i.id.uid {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: fmt.Sprintf(
			"is owned by uid %d but postgres runs as %s; chown -R it to that user", uid, i.id)}
	}
	if mode.Perm()&0o027 != 0 {
		// postgres accepts only 0700 or 0750.
		i.log.Warn("fixing data directory mode", "mode", fmt.Sprintf("%04o", mode.Perm()))
		if err := os.Chmod(i.cfg.DataDir, 0o700); err != nil {
			return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
		}
	}
	return i.id.checkReachable(op, i.cfg.DataDir)
}

// prepareRuntime creates the socket directory and checks that the OS user
// can reach it and the log file.
func (i *Instance) prepareRuntime(op string) error {
	if err := i.id.checkReachable(op, i.cfg.SocketDir+"/x"); err != nil {
		return err
	}
	created, err := i.id.ensureOwnedDir(i.cfg.SocketDir, 0o700)
	if err != nil {
		return &DirError{Op: op, Path: i.cfg.SocketDir, Cause: ErrPermission, Problem: "creating the socket directory: " + err.Error()}
	}
	if !created {
		if err := i.id.checkWritable(op, i.cfg.SocketDir); err != nil {
			return err
		}
	}
	return nil
}

// openLog opens Config.LogFile for appending (creating it owned by the OS
// user) and returns it with its current size.
func (i *Instance) openLog(op string) (*os.File, int64, error) {
	if err := os.MkdirAll(filepath.Dir(i.cfg.LogFile), 0o755); err != nil {
		return nil, 0, &DirError{Op: op, Path: filepath.Dir(i.cfg.LogFile), Cause: ErrPermission, Problem: err.Error()}
	}
	f, err := os.OpenFile(i.cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, &DirError{Op: op, Path: i.cfg.LogFile, Cause: ErrPermission, Problem: "opening the server log: " + err.Error()}
	}
	_ = i.id.chown(i.cfg.LogFile)
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the last lines of Config.LogFile written after offset.
func (i *Instance) logTail(offset int64) string {
	f, err := os.Open(i.cfg.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := offset
	if fi.Size() < start { // truncated or rotated
		start = 0
	}
	if fi.Size()-start > tailSize {
		start = fi.Size() - tailSize
	}
	b, err := io.ReadAll(io.NewSectionReader(f, start, fi.Size()-start))
	if err != nil {
		return ""
	}
	s := string(b)
	if start > offset {
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			s = s[j+1:]
		}
	}
	return s
}

// signal sends sig to the running postmaster.
func (i *Instance) signal(op string, sig syscall.Signal) error {
	p := i.current()
	if p == nil {
		return fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
		}
		return &CommandError{Op: op, Command: []string{"kill", "-" + strings.TrimPrefix(unix.SignalName(sig), "SIG"), strconv.Itoa(p.pid)}, ExitCode: -1, Err: err}
	}
	return nil
}

// SetParameters replaces Config.Parameters. Nothing changes until the next
// Reload (for parameters postgres reloads) or restart (for the protected
// ones and others that need one; Status reports PendingRestart). It returns
// what [ResolveParameters] adjusted, or a *ConfigError for an invalid name
// or value.
func (i *Instance) SetParameters(params map[string]string) ([]Adjustment, error) {
	c := i.Config()
	c.Parameters = params
	c.Logger = nil
	if err := c.Validate(); err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.params = maps.Clone(params)
	i.mu.Unlock()
	return ResolveParameters(params).Adjusted, nil
}

// SetHBA replaces Config.HBA; it takes effect at the next Reload or Start.
// nil returns to the data directory's own pg_hba.conf at the next start.
func (i *Instance) SetHBA(lines []string) error {
	c := i.Config()
	c.HBA = lines
	c.Logger = nil
	if err := c.Validate(); err != nil {
		return err
	}
	i.mu.Lock()
	i.hba = slices.Clone(lines)
	i.mu.Unlock()
	return nil
}

// Reload rewrites pgha's configuration files from the current parameters
// and HBA lines and signals the postmaster to reload them (SIGHUP, what
// pg_ctl reload does). The files are written even when the server does not
// run, in which case the error wraps ErrNotRunning.
func (i *Instance) Reload(ctx context.Context) error {
	release, err := i.begin(ctx, "reload")
	if err != nil {
		return err
	}
	defer release()
	if err := i.checkInitialized("reload"); err != nil {
		return err
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: "reload", Path: i.cfg.DataDir, Problem: "writing pgha's configuration files: " + err.Error()}
	}
	return i.signal("reload", syscall.SIGHUP)
}

package fakepg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/pgha/pgha/pg"
)

// Instance is one fake PostgreSQL instance: a data directory and a
// postmaster. It implements ha.Postgres. Safe for concurrent use; every
// method but a scripted delay runs under the World's lock, so each takes
// effect atomically.
type Instance struct {
	w     *World
	cfg   Config
	exits chan pg.ExitEvent

	// guarded by w.mu
	data     *dataDir // nil: empty data directory
	running  bool     // a postmaster exists (starting or ready)
	ready    bool     // it accepts connections
	primary  bool     // it runs as a primary (when ready)
	pid      int
	epoch    int           // bumped on every start and stop, so a delayed call notices
	stopping chan struct{} // a slow shutdown is in progress; closed when it ends
	paused   bool
	calls    map[Op]int
	fails    map[Op][]error
	delays   map[Op][]time.Duration
}

// dataDir is what a data directory holds that HA cares about.
type dataDir struct {
	sysid       uint64
	tl          int
	hist        []pg.TimelineSwitch // switches that led to tl, oldest first
	lsn         pg.LSN              // end of WAL (received = replayed)
	checkpoint  pg.LSN              // latest checkpoint (or restartpoint)
	state       string              // pg_control "Database cluster state"
	standby     bool                // standby.signal
	upstream    pg.Upstream         // primary_conninfo; zero: none
	backupLabel bool
}

// --- scripting ---------------------------------------------------------------

// FailNext makes the next call of op return err without acting. Calls queue:
// FailNext twice fails the next two calls.
func (i *Instance) FailNext(op Op, err error) {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.fails[op] = append(i.fails[op], err)
}

// DelayNext makes the next call of op wait d before it acts (see the package
// doc for Start and Stop). The call's context ends the wait early: the call
// then fails with an error wrapping pg.ErrTimeout and the context's error.
func (i *Instance) DelayNext(op Op, d time.Duration) {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.delays[op] = append(i.delays[op], d)
}

// Calls returns how many times op was called, including failed calls.
func (i *Instance) Calls(op Op) int {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	return i.calls[op]
}

// takeLocked counts a call of op and pops its scripted delay and failure.
func (i *Instance) takeLocked(op Op) (time.Duration, error) {
	i.calls[op]++
	var d time.Duration
	var err error
	if q := i.delays[op]; len(q) > 0 {
		d, i.delays[op] = q[0], q[1:]
	}
	if q := i.fails[op]; len(q) > 0 {
		err, i.fails[op] = q[0], q[1:]
	}
	return d, err
}

// take is takeLocked plus the wait, outside the lock.
func (i *Instance) take(ctx context.Context, op Op) error {
	i.w.mu.Lock()
	d, err := i.takeLocked(op)
	i.w.mu.Unlock()
	if werr := wait(ctx, op, d); werr != nil {
		return werr
	}
	return err
}

func wait(ctx context.Context, op Op, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return &pg.CommandError{Op: string(op), ExitCode: -1, Cause: pg.ErrTimeout, Err: ctx.Err(), Detail: "fakepg: scripted delay"}
	case <-t.C:
		return nil
	}
}

func notRunning(op Op) error { return fmt.Errorf("pg: %s: %w", op, pg.ErrNotRunning) }

func alreadyRunning(op Op, pid int) error {
	return fmt.Errorf("pg: %s: %w (pid %d)", op, pg.ErrAlreadyRunning, pid)
}

func notInitialized(op Op) error { return fmt.Errorf("pg: %s: %w", op, pg.ErrNotInitialized) }

// --- test controls -------------------------------------------------------------

// Write appends n bytes of WAL on a running primary, which its replicas
// receive at once, and returns the new end of WAL. It fails with ErrReadOnly
// on anything else.
func (i *Instance) Write(n int64) (pg.LSN, error) {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.writableLocked() {
		return 0, ErrReadOnly
	}
	i.data.lsn += pg.LSN(n)
	i.w.propagateLocked()
	return i.data.lsn, nil
}

// Writable reports whether the instance accepts writes now: a running primary.
func (i *Instance) Writable() bool {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	return i.writableLocked()
}

func (i *Instance) writableLocked() bool {
	return i.running && i.ready && i.primary && i.stopping == nil
}

// Crash kills the postmaster as SIGKILL would: no checkpoint, pg_control
// left "in production" ("in archive recovery" on a replica), and an
// ExitEvent on Exits. It does nothing when the instance is not running.
func (i *Instance) Crash() {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.running {
		return
	}
	pid := i.pid
	i.haltLocked(pg.StopImmediate)
	i.w.recordLocked(i, OpCrash, "")
	select {
	case i.exits <- pg.ExitEvent{PID: pid, Time: time.Now(), ExitCode: -1, Signal: syscall.SIGKILL, StatusKnown: true,
		LogTail: "fakepg: postmaster killed"}:
	default: // full, as pg drops events then
	}
}

// PauseStreaming holds the replica back: it keeps its connection to its
// upstream but receives nothing until ResumeStreaming, so it lags.
func (i *Instance) PauseStreaming() {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.paused = true
	i.w.recordLocked(i, OpPauseStreaming, "")
}

// ResumeStreaming ends PauseStreaming; the replica catches up at once.
func (i *Instance) ResumeStreaming() {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.paused = false
	i.w.propagateLocked()
	i.w.recordLocked(i, OpResumeStreaming, "")
}

// Info is what a test can read about an instance at one instant.
type Info struct {
	Name        string
	Initialized bool
	Running     bool // a postmaster exists
	Ready       bool // it accepts connections
	Primary     bool // running as a primary
	SystemID    uint64
	Timeline    int
	History     []pg.TimelineSwitch
	LSN         pg.LSN // end of WAL
	Checkpoint  pg.LSN
	// ControlState is pg_control's cluster state (meaningful when stopped).
	ControlState string
	Standby      bool   // standby.signal
	Upstream     string // host:port of primary_conninfo, "" for none
	Streaming    bool   // a replica receiving from its upstream
	BackupLabel  bool
}

// Info returns the instance's state now.
func (i *Instance) Info() Info {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	in := Info{Name: i.cfg.Name, Running: i.running, Ready: i.running && i.ready, Primary: i.writableLocked()}
	if d := i.data; d != nil {
		in.Initialized = true
		in.SystemID, in.Timeline, in.History, in.LSN, in.Checkpoint = d.sysid, d.tl, slices.Clone(d.hist), d.lsn, d.checkpoint
		in.ControlState, in.Standby, in.BackupLabel = d.state, d.standby, d.backupLabel
		if d.upstream.Host != "" {
			in.Upstream = Config{Host: d.upstream.Host, Port: cmp(d.upstream.Port, pg.DefaultPort)}.Addr()
		}
		in.Streaming = i.streamingFromLocked() != nil
	}
	return in
}

func cmp(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// --- ha.Postgres -------------------------------------------------------------

// Config returns a pg.Config describing the instance (name, data directory,
// address).
func (i *Instance) Config() pg.Config {
	return pg.Config{
		Name: i.cfg.Name, DataDir: i.cfg.DataDir, ListenAddress: i.cfg.Host, Port: i.cfg.Port,
		ConnectAddress: i.cfg.Addr(), Database: pg.DefaultDatabase,
		Superuser:   pg.Credentials{Username: pg.DefaultSuperuser},
		Replication: pg.Credentials{Username: pg.DefaultReplicationUser},
	}
}

// ConnURL returns postgres://host:port/postgres.
func (i *Instance) ConnURL() string {
	return (&url.URL{Scheme: "postgres", Host: i.cfg.Addr(), Path: "/" + pg.DefaultDatabase}).String()
}

// Version returns the configured major version.
func (i *Instance) Version() int { return i.cfg.Version }

// Exits reports crashes (Crash), never a requested Stop. It has room for 16
// events; further ones are dropped.
func (i *Instance) Exits() <-chan pg.ExitEvent { return i.exits }

// Running reports whether a postmaster exists, starting or ready.
func (i *Instance) Running() (pid int, running bool) {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.running {
		return 0, false
	}
	return i.pid, true
}

// Initialized reports whether the data directory holds a cluster.
func (i *Instance) Initialized() bool {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	return i.data != nil
}

// Initdb creates a cluster with a new system identifier on timeline 1,
// stopped and clean.
func (i *Instance) Initdb(ctx context.Context, _ pg.InitdbOptions) error {
	if err := i.take(ctx, OpInitdb); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.running {
		return alreadyRunning(OpInitdb, i.pid)
	}
	if i.data != nil {
		return fmt.Errorf("pg: %s: %w", OpInitdb, pg.ErrDataDirNotEmpty)
	}
	sysid := i.w.nextSysID
	i.w.nextSysID++
	i.data = &dataDir{sysid: sysid, tl: 1, lsn: firstLSN, checkpoint: firstLSN, state: pg.StateShutDown}
	if err := i.writeDiskLocked(); err != nil {
		return err
	}
	i.w.recordLocked(i, OpInitdb, "system "+strconv.FormatUint(sysid, 10))
	return nil
}

// EnsureRoles checks that the server accepts connections.
func (i *Instance) EnsureRoles(ctx context.Context) error {
	if err := i.take(ctx, OpEnsureRoles); err != nil {
		return err
	}
	return i.needReady(OpEnsureRoles)
}

func (i *Instance) needReady(op Op) error {
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.running || !i.ready {
		return notRunning(op)
	}
	return nil
}

// Start starts the postmaster: a replica when standby.signal exists, else a
// primary (after crash recovery, if needed, on the same timeline). A delay
// scripted for OpStart is spent with the postmaster running but not yet
// accepting connections; a Stop meanwhile aborts the start.
func (i *Instance) Start(ctx context.Context) error {
	i.w.mu.Lock()
	d, ferr := i.takeLocked(OpStart)
	i.syncDiskLocked()
	if i.running {
		defer i.w.mu.Unlock()
		return alreadyRunning(OpStart, i.pid)
	}
	if i.data == nil {
		defer i.w.mu.Unlock()
		return notInitialized(OpStart)
	}
	i.w.nextPID += 10
	i.running, i.ready, i.pid = true, false, i.w.nextPID
	i.epoch++
	epoch := i.epoch
	i.w.mu.Unlock()

	werr := wait(ctx, OpStart, d)

	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if i.epoch != epoch {
		return &pg.CommandError{Op: string(OpStart), ExitCode: -1, Detail: "postgres exited during start (stopped)"}
	}
	if werr != nil || ferr != nil {
		i.running, i.pid = false, 0
		i.epoch++
		if werr != nil {
			return werr
		}
		return ferr
	}
	i.ready = true
	i.primary = !i.data.standby
	i.data.backupLabel = false
	if err := i.writeDiskLocked(); err != nil {
		return err
	}
	i.w.propagateLocked()
	role := "replica"
	if i.primary {
		role = "primary"
	}
	i.w.recordLocked(i, OpStart, role)
	return nil
}

// Stop stops the postmaster. fast and smart write a shutdown checkpoint,
// which the replicas receive before the primary exits; immediate does not.
// Stopping a stopped instance is not an error. A delay scripted for OpStop
// is a slow shutdown, as pg's after the signal: the server refuses
// connections (and writes) at once and exits d later. If ctx ends first,
// Stop returns an error wrapping pg.ErrTimeout and the shutdown goes on; a
// Stop(immediate) meanwhile ends it at once. A failure scripted for OpStop
// is a signal that could not be sent: nothing happens.
func (i *Instance) Stop(ctx context.Context, mode pg.StopMode) error {
	i.w.mu.Lock()
	d, ferr := i.takeLocked(OpStop)
	if ferr != nil || !i.running {
		i.w.mu.Unlock()
		return ferr
	}
	if i.stopping != nil && mode != pg.StopImmediate {
		done := i.stopping
		i.w.mu.Unlock()
		return waitStopped(ctx, done)
	}
	if d <= 0 || mode == pg.StopImmediate {
		defer i.w.mu.Unlock()
		i.haltLocked(mode)
		i.w.recordLocked(i, OpStop, mode.String())
		return nil
	}
	done := make(chan struct{})
	i.stopping = done
	epoch := i.epoch
	i.w.recordLocked(i, OpStop, mode.String()+" (shutting down)")
	i.w.mu.Unlock()
	time.AfterFunc(d, func() {
		i.w.mu.Lock()
		defer i.w.mu.Unlock()
		if i.epoch == epoch && i.running {
			i.haltLocked(mode)
			i.w.recordLocked(i, OpStop, mode.String()+" (shut down)")
		}
	})
	return waitStopped(ctx, done)
}

func waitStopped(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return &pg.CommandError{Op: string(OpStop), ExitCode: -1, Cause: pg.ErrTimeout, Err: ctx.Err(),
			Detail: "postgres has not exited yet and is left shutting down (fakepg: scripted delay)"}
	}
}

// haltLocked ends the postmaster in mode and sets pg_control accordingly.
func (i *Instance) haltLocked(mode pg.StopMode) {
	wasReady, wasPrimary := i.ready, i.primary
	i.running, i.ready, i.pid = false, false, 0
	i.epoch++
	if i.stopping != nil {
		close(i.stopping)
		i.stopping = nil
	}
	if !wasReady || i.data == nil {
		return // aborted start: pg_control stays as it was
	}
	d := i.data
	switch {
	case mode == pg.StopImmediate && wasPrimary:
		d.state = pg.StateInProduction
	case mode == pg.StopImmediate:
		d.state = pg.StateInArchiveRecovery
	case wasPrimary:
		d.checkpoint = d.lsn
		d.lsn += checkpointRecord
		// The walsenders send the shutdown checkpoint before exiting; the
		// replicas stream from a running primary, so let them take it
		// before this one counts as stopped.
		i.running, i.ready = true, true
		i.w.propagateLocked()
		i.running, i.ready = false, false
		d.state = pg.StateShutDown
	default:
		d.checkpoint = d.lsn
		d.state = pg.StateShutDownInRecovery
	}
}

// Promote ends recovery: the replica switches to the next timeline at its end
// of WAL, writes an end-of-recovery record and accepts writes. On a primary
// it only removes standby.signal. A scripted delay is spent while still a
// replica; a Stop meanwhile makes Promote fail.
func (i *Instance) Promote(ctx context.Context) error {
	i.w.mu.Lock()
	d, ferr := i.takeLocked(OpPromote)
	if !i.running || !i.ready {
		defer i.w.mu.Unlock()
		return notRunning(OpPromote)
	}
	epoch := i.epoch
	i.w.mu.Unlock()

	werr := wait(ctx, OpPromote, d)

	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if i.epoch != epoch {
		return &pg.CommandError{Op: string(OpPromote), ExitCode: -1, Detail: "postgres exited during promotion"}
	}
	if werr != nil {
		return werr
	}
	if ferr != nil {
		return ferr
	}
	dd := i.data
	if !i.primary {
		dd.hist = append(dd.hist, pg.TimelineSwitch{Timeline: dd.tl, LSN: dd.lsn, Reason: "no recovery target specified"})
		dd.tl++
		dd.lsn += endOfRecoveryRecord
		i.primary = true
	}
	dd.standby = false
	if err := i.writeDiskLocked(); err != nil {
		return err
	}
	i.w.propagateLocked()
	i.w.recordLocked(i, OpPromote, "timeline "+strconv.Itoa(dd.tl))
	return nil
}

// Reload models pg_ctl reload: there are no files to rewrite, and a
// stopped server makes it fail with pg.ErrNotRunning, as pg's does.
func (i *Instance) Reload(ctx context.Context) error {
	if err := i.take(ctx, OpReload); err != nil {
		return err
	}
	return i.needReady(OpReload)
}

// Checkpoint runs a checkpoint (a restartpoint on a replica).
func (i *Instance) Checkpoint(ctx context.Context) error {
	if err := i.take(ctx, OpCheckpoint); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.running || !i.ready {
		return notRunning(OpCheckpoint)
	}
	i.data.checkpoint = i.data.lsn
	if i.primary {
		i.data.lsn += checkpointRecord
		i.w.propagateLocked()
	}
	return nil
}

// ConfigurePrimary removes standby.signal: the next Start is as a primary.
func (i *Instance) ConfigurePrimary(ctx context.Context) error {
	if err := i.take(ctx, OpConfigurePrimary); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.data == nil {
		return notInitialized(OpConfigurePrimary)
	}
	i.data.standby = false
	if err := i.writeDiskLocked(); err != nil {
		return err
	}
	i.w.recordLocked(i, OpConfigurePrimary, "")
	return nil
}

// ConfigureStandby writes standby.signal and the upstream (zero Upstream:
// none). A running replica follows the new upstream at once (a reload); a
// running primary stays one until it restarts.
func (i *Instance) ConfigureStandby(ctx context.Context, up pg.Upstream) error {
	if err := i.take(ctx, OpConfigureStandby); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.data == nil {
		return notInitialized(OpConfigureStandby)
	}
	if up != (pg.Upstream{}) && up.Host == "" {
		return &pg.ConfigError{Field: "Upstream.Host", Problem: "is required"}
	}
	i.data.standby, i.data.upstream = true, up
	if err := i.writeDiskLocked(); err != nil {
		return err
	}
	i.w.propagateLocked()
	i.w.recordLocked(i, OpConfigureStandby, upstreamString(up))
	return nil
}

func upstreamString(up pg.Upstream) string {
	if up.Host == "" {
		return "no upstream"
	}
	return "upstream " + Config{Host: up.Host, Port: cmp(up.Port, pg.DefaultPort)}.Addr()
}

// Clone copies the running upstream (its system identifier, timeline, history
// and end of WAL) into the empty data directory and configures it as the
// upstream's standby, leaving a backup_label; progress, if not nil, is called
// once with 100%.
func (i *Instance) Clone(ctx context.Context, up pg.Upstream, progress func(pg.CloneProgress)) error {
	if err := i.take(ctx, OpClone); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.running {
		return alreadyRunning(OpClone, i.pid)
	}
	if i.data != nil {
		return fmt.Errorf("pg: %s: %w", OpClone, pg.ErrDataDirNotEmpty)
	}
	src := i.w.upstreamLocked(up)
	if src == nil || !src.running || !src.ready || src == i {
		return &pg.CommandError{Op: string(OpClone), ExitCode: 1, Detail: "could not connect to " + upstreamString(up)}
	}
	s := src.data
	state := pg.StateInProduction
	if !src.primary {
		state = pg.StateInArchiveRecovery
	}
	i.data = &dataDir{sysid: s.sysid, tl: s.tl, hist: slices.Clone(s.hist), lsn: s.lsn, checkpoint: s.checkpoint,
		state: state, standby: true, upstream: up, backupLabel: true}
	if err := i.writeDiskLocked(); err != nil {
		i.data = nil
		return err
	}
	if progress != nil {
		progress(pg.CloneProgress{DoneBytes: int64(s.lsn), TotalBytes: int64(s.lsn), Percent: 100})
	}
	i.w.recordLocked(i, OpClone, upstreamString(up))
	return nil
}

// Rewind makes the stopped instance's history the running source's when they
// diverged (after crash recovery if it stopped uncleanly), leaving a
// backup_label; it reports whether anything had to be rewound.
func (i *Instance) Rewind(ctx context.Context, up pg.Upstream) (bool, error) {
	if err := i.take(ctx, OpRewind); err != nil {
		return false, err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.running {
		return false, alreadyRunning(OpRewind, i.pid)
	}
	if i.data == nil {
		return false, notInitialized(OpRewind)
	}
	src := i.w.upstreamLocked(up)
	if src == nil || !src.running || !src.ready || src == i {
		return false, &pg.CommandError{Op: string(OpRewind), ExitCode: 1, Detail: "could not connect to " + upstreamString(up)}
	}
	d, s := i.data, src.data
	if d.sysid != s.sysid {
		return false, &pg.CommandError{Op: string(OpRewind), ExitCode: 1, Detail: "source and target clusters are from different systems"}
	}
	if i.cfg.NoRewind {
		return false, &pg.CommandError{Op: string(OpRewind), ExitCode: -1, Cause: pg.ErrRewindNotPossible,
			Detail: "pg_control shows wal_log_hints off and data checksums disabled; reinitialise this member with Clone"}
	}
	if d.state != pg.StateShutDown && d.state != pg.StateShutDownInRecovery {
		d.checkpoint, d.state = d.lsn, pg.StateShutDown // single-user crash recovery first
		d.lsn += checkpointRecord
	}
	if compatible(d, s) {
		i.w.recordLocked(i, OpRewind, "no rewind required")
		return false, nil
	}
	d.tl, d.hist, d.lsn, d.checkpoint = s.tl, slices.Clone(s.hist), s.lsn, s.checkpoint
	d.state, d.backupLabel = pg.StateInArchiveRecovery, true
	if err := i.writeDiskLocked(); err != nil {
		return true, err
	}
	i.w.recordLocked(i, OpRewind, "from "+src.cfg.Name+" to timeline "+strconv.Itoa(d.tl))
	return true, nil
}

// CrashRecovery turns an unclean shutdown of a primary into a clean one
// (single-user mode writes a checkpoint). A clean instance is left alone; a
// crashed replica is refused, as pg refuses it.
func (i *Instance) CrashRecovery(ctx context.Context) error {
	if err := i.take(ctx, OpCrashRecovery); err != nil {
		return err
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	i.syncDiskLocked()
	if i.running {
		return alreadyRunning(OpCrashRecovery, i.pid)
	}
	if i.data == nil {
		return notInitialized(OpCrashRecovery)
	}
	d := i.data
	switch d.state {
	case pg.StateShutDown, pg.StateShutDownInRecovery:
		return nil
	case pg.StateInArchiveRecovery:
		return &pg.DirError{Op: string(OpCrashRecovery), Path: i.cfg.DataDir,
			Problem: "the instance crashed as a replica (in archive recovery); start it again as a standby instead"}
	}
	d.checkpoint, d.state = d.lsn, pg.StateShutDown
	d.lsn += checkpointRecord
	i.w.recordLocked(i, OpCrashRecovery, "")
	return nil
}

// Status reports the running server (role, timeline, positions, WAL
// receiver) or, when stopped, pg_control's view. A server that is starting
// reports Running with no Role and an error, as a real one refuses
// connections then; so does a scripted failure or delay of OpStatus on a
// running server (a query that failed or timed out).
func (i *Instance) Status(ctx context.Context) (pg.Status, error) {
	err := i.take(ctx, OpStatus)
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	var st pg.Status
	if err != nil {
		// As pg's: the postmaster is known to run, the query failed.
		st.Running, st.PID = i.running, i.pid
		return st, err
	}
	i.syncDiskLocked()
	d := i.data
	if d != nil {
		st.RewindPossible = !i.cfg.NoRewind // wal_log_hints, as in pg_control
	}
	if !i.running {
		if d != nil {
			st.Control = i.controlLocked()
		}
		return st, nil
	}
	st.Running, st.PID = true, i.pid
	if !i.ready {
		st.PostmasterStatus = "starting"
		return st, &pg.CommandError{Op: string(OpStatus), ExitCode: -1, Cause: pg.ErrNotRunning,
			Detail: "cannot connect to postgres (pid " + strconv.Itoa(i.pid) + "): the database system is starting up"}
	}
	if i.stopping != nil {
		st.PostmasterStatus = "stopping"
		return st, &pg.CommandError{Op: string(OpStatus), ExitCode: -1, Cause: pg.ErrNotRunning,
			Detail: "cannot connect to postgres (pid " + strconv.Itoa(i.pid) + "): the database system is shutting down"}
	}
	st.SystemID, st.Timeline = d.sysid, d.tl
	if i.primary {
		st.PostmasterStatus, st.Role = "ready", pg.RolePrimary
		st.CurrentLSN, st.FlushLSN = d.lsn, d.lsn
		return st, nil
	}
	st.PostmasterStatus, st.Role = "standby", pg.RoleReplica
	st.ReceiveLSN, st.ReplayLSN = d.lsn, d.lsn
	if u := i.streamingFromLocked(); u != nil {
		st.WALReceiver = &pg.WALReceiver{PID: i.pid + 1, Status: "streaming", ReceivedTimeline: d.tl, FlushedLSN: d.lsn,
			LatestEndLSN: u.data.lsn, SenderHost: u.cfg.Host, SenderPort: u.cfg.Port, SlotName: d.upstream.SlotName}
	}
	return st, nil
}

func (i *Instance) controlLocked() *pg.ControlData {
	d := i.data
	cd := &pg.ControlData{SystemID: d.sysid, State: d.state, CheckpointLSN: d.checkpoint, RedoLSN: d.checkpoint,
		Timeline: d.tl, WALLevel: "replica", WALLogHints: !i.cfg.NoRewind, ChecksumVersion: 0}
	cd.Fields = map[string]string{
		"Database system identifier":     strconv.FormatUint(d.sysid, 10),
		"Database cluster state":         d.state,
		"Latest checkpoint location":     d.checkpoint.String(),
		"Latest checkpoint's TimeLineID": strconv.Itoa(d.tl),
	}
	return cd
}

// TimelineHistory returns the switches that led to timeline tl (nil for
// timeline 1), from the running server, as pg reads the history file.
func (i *Instance) TimelineHistory(ctx context.Context, tl int) ([]pg.TimelineSwitch, error) {
	if err := i.take(ctx, OpTimelineHistory); err != nil {
		return nil, err
	}
	if tl <= 1 {
		return nil, nil
	}
	i.w.mu.Lock()
	defer i.w.mu.Unlock()
	if !i.running || !i.ready {
		return nil, notRunning(OpTimelineHistory)
	}
	var out []pg.TimelineSwitch
	for _, h := range i.data.hist {
		if h.Timeline < tl {
			out = append(out, h)
		}
	}
	if i.data.tl < tl {
		return nil, &pg.CommandError{Op: string(OpTimelineHistory), ExitCode: -1,
			Detail: fmt.Sprintf("could not open file \"pg_wal/%08X.history\"", tl)}
	}
	return out, nil
}

// streamingFromLocked returns the upstream this running replica receives
// from, or nil when it does not stream (no upstream, upstream down, or
// histories incompatible).
func (i *Instance) streamingFromLocked() *Instance {
	if !i.running || !i.ready || i.primary || i.data == nil {
		return nil
	}
	u := i.w.upstreamLocked(i.data.upstream)
	if u == nil || u == i || !u.running || !u.ready || u.data == nil || !compatible(i.data, u.data) {
		return nil
	}
	return u
}

// --- the data directory on disk ----------------------------------------------

// syncDiskLocked forgets the data of a stopped instance whose DataDir lost
// its PG_VERSION (someone removed the directory).
func (i *Instance) syncDiskLocked() {
	if i.cfg.DataDir == "" || i.data == nil || i.running {
		return
	}
	if _, err := os.Stat(filepath.Join(i.cfg.DataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		i.data = nil
		i.w.recordLocked(i, OpRemoveDataDir, i.cfg.DataDir)
	}
}

// writeDiskLocked mirrors the marker files into DataDir.
func (i *Instance) writeDiskLocked() error {
	dir := i.cfg.DataDir
	if dir == "" || i.data == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &pg.DirError{Op: "fakepg", Path: dir, Cause: pg.ErrPermission, Problem: err.Error()}
	}
	files := []struct {
		name    string
		present bool
		content string
	}{
		{"PG_VERSION", true, strconv.Itoa(i.cfg.Version) + "\n"},
		{"standby.signal", i.data.standby, ""},
		{"backup_label", i.data.backupLabel, "START WAL LOCATION: " + i.data.checkpoint.String() + "\n"},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		var err error
		if f.present {
			err = os.WriteFile(p, []byte(f.content), 0o600)
		} else if err = os.Remove(p); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		if err != nil {
			return &pg.DirError{Op: "fakepg", Path: p, Cause: pg.ErrPermission, Problem: err.Error()}
		}
	}
	return nil
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/internal/cluster/noderun"
)

// The emulated watchdog (RELIABILITY.md B5, C2). In production the kernel
// resets the host when the agent stops keeping /dev/watchdog alive; a test
// cannot reset its host, so a Fencer, in the test process, plays the
// device: it reads the named pipe the node writes its keepalives to and,
// when none arrived within the armed timeout, kills the node's Postgres
// and agent (the emulated host reset). It must live outside the node
// process, since the node's agent is what a test freezes or kills.

// DefaultFencerTimeout is the countdown of an emulated device whose
// timeout was never set (softdog's default, soft_margin=60).
const DefaultFencerTimeout = 60 * time.Second

// WatchdogOptions give every process node of a Cluster a watchdog device
// emulated by the harness (a Fencer per node; see Node.Fencer). The node
// drives it as ha.Node drives /dev/watchdog, through
// noderun.WatchdogDriver.
type WatchdogOptions struct {
	// Mode is the nodes' watchdog.mode: "required" (default) or
	// "automatic".
	Mode string
	// SafetyMargin is the nodes' watchdog.safety_margin: the node asks for
	// a timeout of ttl - SafetyMargin (whole seconds). Zero means the
	// watchdog's default (5s), which needs a ttl over 5s plus the renewal
	// interval.
	SafetyMargin time.Duration
}

// FencerConfig configures a Fencer.
type FencerConfig struct {
	// Path is the named pipe to create and read. Required.
	Path string
	// Reset is the emulated host reset, called from the Fencer's goroutine
	// when it fires. Required.
	Reset func() error
	// DefaultTimeout is the countdown until a timeout record sets one.
	// Default DefaultFencerTimeout.
	DefaultTimeout time.Duration
	// Logger receives the Fencer's logs. nil discards them.
	Logger hclog.Logger
}

// FenceFire is one firing of a Fencer.
type FenceFire struct {
	// At is when it fired; LastKeepalive the keepalive before (or the
	// arming); Gap is At - LastKeepalive.
	At, LastKeepalive time.Time
	Gap               time.Duration
	// Timeout is the countdown that ran out.
	Timeout time.Duration
	// Done is when Reset returned; Err what it returned.
	Done time.Time
	Err  error
}

// Fencer emulates a watchdog device on a named pipe (see the protocol in
// package noderun: '1' keepalive, 'V' magic close, "T<seconds>\n" set
// timeout). The first byte arms it (opening a real device arms it; a pipe
// shows no open); every keepalive and every timeout record restarts the
// countdown; the magic close disarms it, the pipe's closing cannot be
// seen, so a writer that dies without 'V' leaves it armed, as a real
// device stays armed after an unexpected close. When the countdown runs
// out it calls Reset once and disarms (the reset host's device starts
// disarmed). Its methods are safe for concurrent use.
type Fencer struct {
	cfg FencerConfig
	log hclog.Logger

	startMu sync.Mutex // serialises Start and Stop
	file    *os.File
	quit    chan struct{}
	ctl     chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	armed      bool
	timeout    time.Duration
	last       time.Time
	keepalives int
	records    []time.Duration // timeouts set, in order
	closes     int
	fires      []FenceFire
}

// NewFencer validates cfg and returns a stopped Fencer.
func NewFencer(cfg FencerConfig) (*Fencer, error) {
	if cfg.Path == "" || cfg.Reset == nil {
		return nil, errors.New("cluster: FencerConfig needs a Path and a Reset")
	}
	if cfg.DefaultTimeout < 0 {
		return nil, fmt.Errorf("cluster: FencerConfig.DefaultTimeout %s is negative", cfg.DefaultTimeout)
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = DefaultFencerTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Fencer{cfg: cfg, log: cfg.Logger.Named("fencer"), timeout: cfg.DefaultTimeout}, nil
}

// Path returns the named pipe the node writes to.
func (f *Fencer) Path() string { return f.cfg.Path }

// Start creates the named pipe (unless it exists), opens it and starts
// watching. It does nothing when already started.
func (f *Fencer) Start() error {
	f.startMu.Lock()
	defer f.startMu.Unlock()
	if f.file != nil {
		return nil
	}
	if err := unix.Mkfifo(f.cfg.Path, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cluster: fencer: mkfifo %s: %w", f.cfg.Path, err)
	}
	if fi, err := os.Stat(f.cfg.Path); err != nil {
		return fmt.Errorf("cluster: fencer: %w", err)
	} else if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("cluster: fencer: %s exists and is not a named pipe", f.cfg.Path)
	}
	// Read-write: the pipe always has a writer, so a reader never sees
	// EOF when a node closes it or dies, and a node never waits to open it.
	file, err := os.OpenFile(f.cfg.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cluster: fencer: %w", err)
	}
	f.file, f.quit, f.ctl = file, make(chan struct{}), make(chan struct{})
	events := make(chan fencerEvent, 64)
	f.wg.Go(func() { f.read(file, events) })
	f.wg.Go(func() { f.loop(events) })
	f.log.Debug("emulated watchdog started", "path", f.cfg.Path)
	return nil
}

// Stop stops watching (a countdown in progress is dropped), waits for the
// Fencer's goroutines and removes the pipe. It does nothing when not
// started. A Fencer can be started again.
func (f *Fencer) Stop() error {
	f.startMu.Lock()
	defer f.startMu.Unlock()
	if f.file == nil {
		return nil
	}
	close(f.quit)
	err := f.file.Close()
	f.wg.Wait()
	f.file = nil
	f.mu.Lock()
	f.armed = false
	f.mu.Unlock()
	if rerr := os.Remove(f.cfg.Path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Disarm disarms the device as a host crash does (the rebooted host's
// device is not counting): Node.Kill calls it. It does nothing when not
// started.
func (f *Fencer) Disarm() {
	f.startMu.Lock()
	quit, ctl := f.quit, f.ctl
	started := f.file != nil
	f.startMu.Unlock()
	if !started {
		return
	}
	select {
	case ctl <- struct{}{}:
	case <-quit:
	}
}

// Armed reports whether the countdown runs.
func (f *Fencer) Armed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.armed
}

// Timeout returns the countdown in force: the last timeout record, or
// the default.
func (f *Fencer) Timeout() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeout
}

// TimeoutsSet returns every timeout the node set, in order.
func (f *Fencer) TimeoutsSet() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.records...)
}

// LastKeepalive returns when the countdown last restarted (zero before).
func (f *Fencer) LastKeepalive() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// Keepalives counts the keepalives received.
func (f *Fencer) Keepalives() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keepalives
}

// MagicCloses counts the magic closes received.
func (f *Fencer) MagicCloses() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closes
}

// Fires returns every firing so far, in order. A firing whose Reset is
// still running is not listed yet.
func (f *Fencer) Fires() []FenceFire {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FenceFire(nil), f.fires...)
}

// WaitFire waits for a firing at or after the given time and returns it.
func (f *Fencer) WaitFire(ctx context.Context, after time.Time) (FenceFire, error) {
	var got FenceFire
	err := Eventually(ctx, func(context.Context) error {
		for _, x := range f.Fires() {
			if !x.At.Before(after) {
				got = x
				return nil
			}
		}
		return fmt.Errorf("the emulated watchdog %s has not fired since %s", f.cfg.Path, after.Format("15:04:05.000"))
	})
	return got, err
}

type fencerKind int

const (
	fencerKeepalive fencerKind = iota
	fencerSetTimeout
	fencerClose
)

type fencerEvent struct {
	kind    fencerKind
	timeout time.Duration
	at      time.Time
}

// read parses the pipe into events until the pipe is closed.
func (f *Fencer) read(file *os.File, events chan<- fencerEvent) {
	buf := make([]byte, 512)
	var rec []byte // a timeout record being read; nil outside one
	for {
		n, err := file.Read(buf)
		now := time.Now()
		for _, b := range buf[:n] {
			var ev fencerEvent
			switch {
			case rec != nil && b == '\n':
				secs, perr := strconv.ParseInt(string(rec[1:]), 10, 64)
				bad := string(rec)
				rec = nil
				if perr != nil || secs <= 0 {
					f.log.Error("bad timeout record on the emulated watchdog", "record", bad)
					continue
				}
				ev = fencerEvent{kind: fencerSetTimeout, timeout: time.Duration(secs) * time.Second}
			case rec != nil:
				rec = append(rec, b)
				continue
			case b == noderun.WatchdogSetTimeout:
				rec = []byte{b}
				continue
			case b == noderun.WatchdogMagicClose:
				ev = fencerEvent{kind: fencerClose}
			default:
				// A real device takes any write as a keepalive.
				ev = fencerEvent{kind: fencerKeepalive}
			}
			ev.at = now
			select {
			case events <- ev:
			case <-f.quit:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// loop runs the countdown.
func (f *Fencer) loop(events <-chan fencerEvent) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var deadline time.Time
	restart := func(at time.Time) {
		f.mu.Lock()
		if !f.armed {
			f.log.Info("emulated watchdog armed", "timeout", f.timeout)
		}
		f.armed, f.last = true, at
		deadline = at.Add(f.timeout)
		f.mu.Unlock()
		timer.Reset(time.Until(deadline))
	}
	disarm := func(why string) {
		timer.Stop()
		f.mu.Lock()
		was := f.armed
		f.armed = false
		f.mu.Unlock()
		if was {
			f.log.Info("emulated watchdog disarmed", "why", why)
		}
	}
	for {
		select {
		case <-f.quit:
			return
		case <-f.ctl:
			disarm("host crash")
		case ev := <-events:
			switch ev.kind {
			case fencerKeepalive:
				f.mu.Lock()
				f.keepalives++
				f.mu.Unlock()
				restart(ev.at)
			case fencerSetTimeout:
				f.mu.Lock()
				f.timeout = ev.timeout
				f.records = append(f.records, ev.timeout)
				f.mu.Unlock()
				restart(ev.at)
			case fencerClose:
				f.mu.Lock()
				f.closes++
				f.mu.Unlock()
				disarm("magic close")
			}
		case now := <-timer.C:
			f.mu.Lock()
			armed := f.armed
			f.mu.Unlock()
			if !armed || now.Before(deadline) {
				continue
			}
			f.fire(now)
		}
	}
}

// fire records a firing, disarms and runs the reset.
func (f *Fencer) fire(now time.Time) {
	f.mu.Lock()
	x := FenceFire{At: now, LastKeepalive: f.last, Gap: now.Sub(f.last), Timeout: f.timeout}
	f.armed = false
	f.mu.Unlock()
	f.log.Warn("emulated watchdog fired: resetting the host (killing the node's Postgres and agent)",
		"timeout", x.Timeout, "since_keepalive", x.Gap)
	x.Err = f.cfg.Reset()
	x.Done = time.Now()
	if x.Err != nil {
		f.log.Error("emulated host reset failed", "error", x.Err)
	}
	f.mu.Lock()
	f.fires = append(f.fires, x)
	f.mu.Unlock()
}

// Fencer returns the node's emulated watchdog (nil unless the cluster was
// created with Options.Watchdog).
func (n *Node) Fencer() *Fencer { return n.fencer }

// hostReset is a Fencer's reset of a node: its agent process (frozen or
// not) and its Postgres (the postmaster and every process it forked, also
// when the agent is already dead) are SIGKILLed, the agent first so it
// cannot react to Postgres dying, and it waits until they are gone.
func (n *Node) hostReset() error {
	n.mu.Lock()
	running := n.runningLocked()
	var pid int
	var done chan struct{}
	if running {
		pid, done = n.cmd.Process.Pid, n.done
	}
	n.mu.Unlock()
	if running {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	err := n.killPostgres()
	if errors.Is(err, ErrNoPostmaster) {
		err = nil
	}
	if running {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			err = errors.Join(err, fmt.Errorf("cluster: %s: process %d did not exit after SIGKILL", n.Name, pid))
		}
	}
	n.log.Warn("emulated host reset: killed the node's Postgres and agent", "agent_pid", pid, "agent_was_running", running)
	return err
}

// newFencer gives a process node its emulated watchdog when opts is set:
// the node's spec names the pipe, and the Fencer resets the node.
func (n *Node) newFencer(opts *WatchdogOptions) error {
	if opts == nil {
		return nil
	}
	mode := opts.Mode
	if mode == "" {
		mode = "required"
	}
	n.spec.WatchdogDevice = filepath.Join(n.dir, "watchdog")
	n.spec.WatchdogMode = mode
	n.spec.WatchdogSafetyMargin = opts.SafetyMargin
	f, err := NewFencer(FencerConfig{Path: n.spec.WatchdogDevice, Reset: n.hostReset, Logger: n.log})
	if err != nil {
		return err
	}
	n.fencer = f
	return nil
}

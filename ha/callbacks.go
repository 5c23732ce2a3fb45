package ha

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
)

// The callback actions, passed to the scripts as their first argument
// (Patroni's CallbackAction).
const (
	ActionOnStart      = "on_start"
	ActionOnStop       = "on_stop"
	ActionOnRestart    = "on_restart"
	ActionOnReload     = "on_reload"
	ActionOnRoleChange = "on_role_change"
)

// Callbacks are Patroni's callback scripts (postgresql.callbacks,
// postgresql.pre_promote, postgresql.before_stop). Each is a command line
// split shell-style (quotes and backslashes as in a POSIX shell, no
// expansion); "" means none. See SPEC.md 7.
//
// The five event callbacks run asynchronously as
// "<command> <action> <role> <scope>", where role is the node's role at the
// event ("primary", "replica", "demoted", "uninitialized"). A new callback
// kills the previous one if it still runs, with its process group; on_reload
// runs in a slot of its own, so it kills only a previous on_reload. They
// fire exactly once per event:
//
//   - on_start: Postgres started and answers (after a clone, a rewind, a
//     start as replica, a restart of a crashed primary, a bootstrap), and
//     once in the first cycle of Run if Postgres already runs and no other
//     callback fired yet.
//   - on_stop: after a stop that signalled the postmaster (not in a restart).
//   - on_restart: after Node.Restart (instead of on_stop and on_start).
//   - on_reload: after Node.Reload.
//   - on_role_change: after a promotion (role primary) and after a demoted
//     primary started again as a replica (role replica, instead of on_start).
//
// PrePromote runs synchronously after the node won the leader key and
// before Postgres is promoted, with no arguments; a non-zero exit, or not
// finishing within Timeout, cancels the promotion: the node releases the
// key and does not race for a TTL (as a failed promotion does). BeforeStop
// runs synchronously right before the postmaster is signalled to stop
// (not before the fence's immediate stop, which never waits); its exit
// status is only logged.
type Callbacks struct {
	OnStart      string
	OnStop       string
	OnRestart    string
	OnReload     string
	OnRoleChange string
	PrePromote   string
	BeforeStop   string
	// Timeout bounds PrePromote and BeforeStop, and how long Run waits
	// when it returns for event callbacks still running before it kills
	// them. Default: the TTL.
	Timeout time.Duration
}

// Validate reports every command that cannot be split and a negative
// Timeout.
func (c Callbacks) Validate() error { return errors.Join(c.validate()...) }

func (c Callbacks) validate() []error {
	var errs []error
	for _, f := range []struct{ name, cmd string }{
		{ActionOnStart, c.OnStart}, {ActionOnStop, c.OnStop}, {ActionOnRestart, c.OnRestart},
		{ActionOnReload, c.OnReload}, {ActionOnRoleChange, c.OnRoleChange},
		{"pre_promote", c.PrePromote}, {"before_stop", c.BeforeStop},
	} {
		if _, err := SplitCommand(f.cmd); err != nil {
			errs = append(errs, fmt.Errorf("ha: Callbacks %s: %w", f.name, err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("ha: Callbacks.Timeout must not be negative"))
	}
	return errs
}

func (c Callbacks) command(action string) string {
	switch action {
	case ActionOnStart:
		return c.OnStart
	case ActionOnStop:
		return c.OnStop
	case ActionOnRestart:
		return c.OnRestart
	case ActionOnReload:
		return c.OnReload
	case ActionOnRoleChange:
		return c.OnRoleChange
	}
	return ""
}

// SplitCommand splits a callback's command line as a POSIX shell (and
// Python's shlex.split, which Patroni uses) does: whitespace separates words, single quotes keep
// everything literally, double quotes keep everything but a backslash
// before ", \, $, ` or a newline, and a backslash outside quotes keeps the
// next character. No expansion happens.
func SplitCommand(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 >= len(s) {
				return nil, errors.New("the command ends with a backslash")
			}
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
			}
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, errors.New("unterminated double quote")
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// scripts runs the callback scripts.
type scripts struct {
	cfg   Callbacks
	scope string
	log   hclog.Logger

	mu    sync.Mutex
	slots [2]*script // 0: on_start/on_stop/on_restart/on_role_change, 1: on_reload
	wg    sync.WaitGroup
}

// script is one running event callback.
type script struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func newScripts(cfg Callbacks, scope string, log hclog.Logger) *scripts {
	return &scripts{cfg: cfg, scope: scope, log: log.Named("callback")}
}

// maxOutput bounds what is kept of a script's output for the log.
const maxOutput = 4096

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

func command(args []string, out *limitedBuffer) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild that keeps the output open must not keep Wait waiting.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// killGroup kills the script and every process of its group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// fire starts the event callback for action, killing the previous one of
// its slot if it still runs. It does not wait for it.
func (s *scripts) fire(action, role string) {
	line := s.cfg.command(action)
	if line == "" {
		return
	}
	args, err := SplitCommand(line)
	if err != nil || len(args) == 0 {
		s.log.Error("cannot run callback", "action", action, "command", line, "error", err)
		return
	}
	args = append(args, action, role, s.scope)
	slot := 0
	if action == ActionOnReload {
		slot = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev := s.slots[slot]; prev != nil {
		select {
		case <-prev.done:
		default:
			s.log.Warn("killing the previous callback, still running", "command", prev.cmd.String())
			killGroup(prev.cmd)
		}
	}
	out := &limitedBuffer{}
	cmd := command(args, out)
	if err := cmd.Start(); err != nil {
		s.log.Error("callback could not start", "action", action, "command", line, "error", err)
		s.slots[slot] = nil
		return
	}
	s.log.Info("callback started", "action", action, "role", role, "pid", cmd.Process.Pid)
	sc := &script{cmd: cmd, done: make(chan struct{})}
	s.slots[slot] = sc
	s.wg.Go(func() {
		err := cmd.Wait()
		close(sc.done)
		if err != nil {
			s.log.Warn("callback failed", "action", action, "role", role, "error", err, "output", out.String())
		}
	})
}

// run runs a synchronous script (pre_promote, before_stop) with no extra
// arguments, bounded by ctx and timeout; its process group is killed when
// either ends first.
func (s *scripts) run(ctx context.Context, what, line string, timeout time.Duration) error {
	args, err := SplitCommand(line)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(args) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitedBuffer{}
	cmd := command(args, out)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		killGroup(cmd)
		<-done
		return fmt.Errorf("%s %q did not finish: %w", what, line, ctx.Err())
	}
	if werr != nil {
		if o := out.String(); o != "" {
			return fmt.Errorf("%s %q: %w: %s", what, line, werr, o)
		}
		return fmt.Errorf("%s %q: %w", what, line, werr)
	}
	return nil
}

// close waits until expired for the event callbacks still running, then
// kills them and waits for them to exit.
func (s *scripts) close(expired <-chan time.Time) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-expired:
	}
	s.mu.Lock()
	for _, sc := range s.slots {
		if sc != nil {
			select {
			case <-sc.done:
			default:
				s.log.Warn("killing a callback still running on exit", "command", sc.cmd.String())
				killGroup(sc.cmd)
			}
		}
	}
	s.mu.Unlock()
	<-done
}

// --- the node's side -------------------------------------------------------

// callbackRole is the role a callback reports: Patroni's "promoted" is
// reported as primary, no role as uninitialized.
func callbackRole(role string) string {
	switch role {
	case dcs.RolePromoted, dcs.RoleMaster:
		return dcs.RolePrimary
	case "":
		return dcs.RoleUninitialized
	}
	return role
}

// scriptTimeout is Callbacks.Timeout, or the TTL.
func (n *Node) scriptTimeout() time.Duration {
	if t := n.cfg.Callbacks.Timeout; t > 0 {
		return t
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return max(n.tm.ttl, time.Second)
}

// event reports one Postgres event: the typed hook, then the script.
func (n *Node) event(action, role string) {
	role = callbackRole(role)
	if action != ActionOnReload {
		n.cbCalled.Store(true)
	}
	var h func(string)
	switch action {
	case ActionOnStart:
		h = n.cfg.Hooks.OnStart
	case ActionOnStop:
		h = n.cfg.Hooks.OnStop
	case ActionOnRestart:
		h = n.cfg.Hooks.OnRestart
	case ActionOnReload:
		h = n.cfg.Hooks.OnReload
	}
	if h != nil {
		n.hook(func() { h(role) })
	}
	n.scripts.fire(action, role)
}

// roleNow is the node's role for callbacks fired outside the loop
// goroutine (n.role is the loop's).
func (n *Node) roleNow() string {
	if r, ok := n.cbRole.Load().(string); ok {
		return r
	}
	return ""
}

// stopPostgres is every stop of a running Postgres but the fence's: the
// BeforeStop hook and before_stop script, the stop, then, once it
// succeeded, the watchdog is disabled (no user backend can commit any
// more) and on_stop fires (not in a restart). A Postgres that does not
// run is left alone and nothing fires.
func (n *Node) stopPostgres(ctx context.Context, mode pg.StopMode, restart bool) error {
	if _, running := n.pg.Running(); !running {
		return nil
	}
	role := n.roleNow()
	n.beforeStop(ctx)
	err := n.pg.Stop(ctx, mode)
	if errors.Is(err, pg.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	n.postgresStopped(role, !restart)
	return nil
}

// beforeStop runs the BeforeStop hook and the before_stop script.
func (n *Node) beforeStop(ctx context.Context) {
	timeout := n.scriptTimeout()
	if h := n.cfg.Hooks.BeforeStop; h != nil {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		if err := safeRun(hctx, func(ctx context.Context) error { h(ctx); return nil }); err != nil {
			n.log.Warn("BeforeStop hook", "error", err)
		}
		cancel()
	}
	if line := n.cfg.Callbacks.BeforeStop; line != "" {
		if err := n.scripts.run(ctx, "before_stop", line, timeout); err != nil {
			n.log.Warn("before_stop failed (Postgres is stopped anyway)", "error", err)
		} else {
			n.log.Info("before_stop done")
		}
	}
}

// postgresStopped follows a successful stop: the watchdog is disabled and
// on_stop fires when onStop.
func (n *Node) postgresStopped(role string, onStop bool) {
	_ = n.wd.Disable()
	if onStop {
		n.event(ActionOnStop, role)
	}
}

// restartPostgres is Node.Restart's stop and start: on_restart instead of
// on_stop and on_start.
func (n *Node) restartPostgres(ctx context.Context) error {
	if err := n.stopPostgres(ctx, pg.StopFast, true); err != nil {
		return err
	}
	if err := n.pg.Start(ctx); err != nil {
		return err
	}
	n.restarted.Store(true)
	n.event(ActionOnRestart, n.roleNow())
	return nil
}

// prePromote runs the BeforePromote hook and the pre_promote script; an
// error from either cancels the promotion.
func (n *Node) prePromote(ctx context.Context) error {
	timeout := n.scriptTimeout()
	if h := n.cfg.Hooks.BeforePromote; h != nil {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := safeRun(hctx, h)
		cancel()
		if err != nil {
			n.log.Warn("BeforePromote vetoed the promotion", "error", err)
			return fmt.Errorf("promotion vetoed by BeforePromote: %w", err)
		}
	}
	if line := n.cfg.Callbacks.PrePromote; line != "" {
		if err := n.scripts.run(ctx, "pre_promote", line, timeout); err != nil {
			n.log.Warn("pre_promote failed: not promoting", "error", err)
			return fmt.Errorf("promotion cancelled: %w", err)
		}
		n.log.Info("pre_promote done")
	}
	return nil
}

// actionDone fires the callbacks a finished long action calls for (loop
// goroutine): on_start after an action that started Postgres, on_role_change
// after a demoted primary came back as a replica.
func (n *Node) actionDone(r *failover.Result) {
	restarted := n.restarted.Swap(false)
	if r == nil || r.Err != "" {
		return
	}
	if _, running := n.pg.Running(); !running {
		return
	}
	switch r.Action {
	case failover.ActionBootstrap:
		n.event(ActionOnStart, dcs.RolePrimary)
	case failover.ActionRestartPrimary:
		if !restarted {
			n.event(ActionOnStart, dcs.RolePrimary)
		}
	case failover.ActionStartAsReplica:
		if !restarted {
			n.event(ActionOnStart, dcs.RoleReplica)
		}
	case failover.ActionClone, failover.ActionRewind, failover.ActionReinitialize:
		n.event(ActionOnStart, dcs.RoleReplica)
	case failover.ActionDemote:
		n.event(ActionOnRoleChange, dcs.RoleReplica)
	}
}

// afterCycle is the end of every loop cycle: the watchdog follows the
// node's leadership, and the first cycle of a Run fires on_start for a
// Postgres that was already running (SPEC.md 7).
func (n *Node) afterCycle(l failover.Local) {
	n.tendWatchdog(l)
	if !n.firstCycleDone {
		n.firstCycleDone = true
		if l.Running && !n.cbCalled.Load() {
			n.event(ActionOnStart, n.role)
		}
	}
}

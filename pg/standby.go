package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Upstream is the server a replica streams from, clones from or rewinds
// against.
type Upstream struct {
	Host string // host name or address (required)
	Port int    // default 5432
	// SlotName is primary_slot_name: the physical slot on the upstream this
	// replica uses, normally SlotName(member name). Empty means the one set
	// with [Instance.SetStandbySlot] (none by default). pg does not create
	// the slot; the upstream's owner does.
	SlotName string
	// SSLMode is the libpq sslmode for the connection. Default "prefer".
	SSLMode string
}

func (u Upstream) withDefaults() Upstream {
	if u.Port == 0 {
		u.Port = DefaultPort
	}
	if u.SSLMode == "" {
		u.SSLMode = "prefer"
	}
	return u
}

func (u Upstream) check(op string) error {
	if u.Host == "" {
		return &ConfigError{Field: op + ": Upstream.Host", Problem: "required"}
	}
	if u.Port < 1 || u.Port > 65535 {
		return &ConfigError{Field: op + ": Upstream.Port", Problem: fmt.Sprintf("must be between 1 and 65535, got %d", u.Port)}
	}
	if u.SlotName != "" && !validSlot(u.SlotName) {
		return &ConfigError{Field: op + ": Upstream.SlotName", Problem: fmt.Sprintf("%q is not a valid slot name ([a-z0-9_]{1,63}); use SlotName(member)", u.SlotName)}
	}
	return nil
}

func validSlot(s string) bool {
	if len(s) == 0 || len(s) > MaxSlotNameLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// replicationConninfo is primary_conninfo for up (SPEC 6.3): the
// replication role, the password through passfile, application_name = the
// member name.
func (i *Instance) replicationConninfo(up Upstream) string {
	return conninfo(
		"host", up.Host,
		"port", strconv.Itoa(up.Port),
		"user", i.cfg.Replication.Username,
		"passfile", i.cfg.PgpassFile,
		"application_name", i.cfg.Name,
		"sslmode", up.SSLMode,
		"gssencmode", "prefer",
		"channel_binding", "prefer",
	)
}

// ConfigureStandby makes the instance a replica of up (the zero Upstream: a
// read-only standby with no upstream, which replays only what it has): it writes
// pgha.recovery.conf (primary_conninfo with application_name = Config.Name
// and the password in Config.PgpassFile, primary_slot_name,
// recovery_target_timeline = 'latest', recovery targets blanked) and
// creates standby.signal. If the server runs, it reloads it, which makes a
// running replica switch to the new upstream (PostgreSQL 13+); a running
// primary becomes a replica only after a restart.
func (i *Instance) ConfigureStandby(ctx context.Context, up Upstream) error {
	const op = "configure standby"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	return i.configureStandby(op, up)
}

func (i *Instance) configureStandby(op string, up Upstream) error {
	none := up == (Upstream{})
	rs := &recoverySettings{}
	if !none {
		up = up.withDefaults()
		if up.SlotName == "" {
			up.SlotName = i.StandbySlot()
		}
		if err := up.check(op); err != nil {
			return err
		}
	}
	if err := i.checkInitialized(op); err != nil {
		return err
	}
	if err := i.prepareRuntime(op); err != nil {
		return err
	}
	if !none {
		if err := i.setPgpass(up.Host, up.Port, i.cfg.Replication); err != nil {
			return &DirError{Op: op, Path: i.cfg.PgpassFile, Cause: ErrPermission, Problem: err.Error()}
		}
		rs = &recoverySettings{conninfo: i.replicationConninfo(up), slot: up.SlotName}
	}
	if err := i.writeRecoveryConf(rs); err != nil {
		return &DirError{Op: op, Path: i.dataPath(RecoveryConfFile), Cause: ErrPermission, Problem: err.Error()}
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	_ = os.Remove(i.dataPath(recoverySignal))
	if err := i.id.writeOwnedFile(i.dataPath(standbySignal), nil, 0o600); err != nil {
		return &DirError{Op: op, Path: i.dataPath(standbySignal), Cause: ErrPermission, Problem: err.Error()}
	}
	if none {
		i.log.Info("configured as standby without upstream")
	} else {
		i.log.Info("configured as standby", "upstream", fmt.Sprintf("%s:%d", up.Host, up.Port), "slot", up.SlotName)
	}
	if err := i.signal(op, syscall.SIGHUP); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return nil
}

// ConfigurePrimary removes the standby configuration: standby.signal,
// recovery.signal and the settings in pgha.recovery.conf. The next start is
// as a primary. It does not promote a running replica; use Promote.
func (i *Instance) ConfigurePrimary(ctx context.Context) error {
	const op = "configure primary"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	if err := i.checkInitialized(op); err != nil {
		return err
	}
	return i.clearStandby(op)
}

func (i *Instance) clearStandby(op string) error {
	for _, f := range []string{standbySignal, recoverySignal} {
		if err := os.Remove(i.dataPath(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &DirError{Op: op, Path: i.dataPath(f), Cause: ErrPermission, Problem: err.Error()}
		}
	}
	if err := i.writeRecoveryConf(nil); err != nil {
		return &DirError{Op: op, Path: i.dataPath(RecoveryConfFile), Cause: ErrPermission, Problem: err.Error()}
	}
	return nil
}

// Promote turns a running replica into a primary and waits until it is out
// of recovery: it calls pg_promote(wait => false) and then polls
// pg_is_in_recovery() every few milliseconds (pg_promote's own wait, like
// pg_ctl promote -w, checks only every 100ms). Afterwards it clears the
// standby settings in pgha.recovery.conf. Promoting a primary is a no-op.
// The new timeline reaches pg_control only at the next checkpoint; see
// [Instance.Checkpoint].
func (i *Instance) Promote(ctx context.Context) error {
	const op = "promote"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	p := i.current()
	if p == nil {
		return fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
	}
	conn, giveBack, err := i.borrow(ctx, p.pid)
	if err != nil {
		return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), Detail: "cannot connect"}
	}
	defer giveBack(true)
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	if !inRecovery {
		return i.clearStandby(op)
	}
	i.log.Info("promoting", "pid", p.pid)
	var signalled bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_promote(wait => false)").Scan(&signalled); err != nil {
		return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile}
	}
	if !signalled {
		return &CommandError{Op: op, ExitCode: -1, LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile,
			Detail: "pg_promote could not signal the postmaster"}
	}
	delay := 500 * time.Microsecond
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return &CommandError{Op: op, ExitCode: -1, Err: errors.New(p.exit.String()),
				LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile, Detail: "postgres exited during promotion"}
		case <-ctx.Done():
			return &CommandError{Op: op, ExitCode: -1, Err: ctx.Err(), Cause: ctxCause(ctx.Err()),
				LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile, Detail: "still in recovery"}
		case <-t.C:
		}
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			if ctx.Err() == nil {
				return &CommandError{Op: op, ExitCode: -1, Err: err, LogTail: i.logTail(p.logOffset), LogFile: i.cfg.LogFile}
			}
			continue // the ctx case reports it
		}
		if !inRecovery {
			i.log.Info("promoted", "pid", p.pid)
			return i.clearStandby(op)
		}
		if delay < 5*time.Millisecond {
			delay *= 2
		}
		t.Reset(delay)
	}
}

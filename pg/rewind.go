package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Rewind makes a stopped former primary (or diverged replica) follow a new
// timeline: it runs pg_rewind against the running server up, connecting
// with Config.Rewind. Before that it reads pg_control: an unclean shutdown
// is first finished with single-user crash recovery (SPEC 3.12), and if the
// cluster has neither wal_log_hints nor data checksums the error has Cause
// ErrRewindNotPossible (reinitialise the member with Clone instead). The
// source must have checkpointed since its promotion (see
// [Instance.Checkpoint]). After a successful rewind, the replication slots
// copied from the source are removed and pgha's files rewritten; the
// instance is left stopped, to be configured with ConfigureStandby and
// started. Rewind reports whether pg_rewind found a divergence to repair.
// It is bounded by Config.TransferTimeout and ctx. An error from before
// pg_rewind ran (the server still running, pg_controldata or crash recovery
// failing, ...) wraps ErrRewindNotStarted: nothing was changed and the
// rewind may be tried again.
func (i *Instance) Rewind(ctx context.Context, up Upstream) (rewound bool, err error) {
	const op = "rewind"
	started := false
	defer func() {
		// A failure before pg_rewind ran changed nothing: say so, so that
		// callers try again instead of giving up on this member.
		if err != nil && !started && !errors.Is(err, ErrRewindNotPossible) {
			err = fmt.Errorf("%w: %w", ErrRewindNotStarted, err)
		}
	}()
	release, err := i.begin(ctx, op)
	if err != nil {
		return false, err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.TransferTimeout)
	defer cancel()
	up = up.withDefaults()
	if err := up.check(op); err != nil {
		return false, err
	}
	if p := i.current(); p != nil {
		return false, fmt.Errorf("pg: %s: %w (pid %d); stop it first", op, ErrAlreadyRunning, p.pid)
	}
	cd, err := i.controlData(ctx, op)
	if err != nil {
		return false, err
	}
	if !cd.CleanShutdown() {
		i.log.Warn("unclean shutdown; running single-user crash recovery before pg_rewind", "state", cd.State)
		if err := i.crashRecovery(ctx, op, cd); err != nil {
			return false, err
		}
		if cd, err = i.controlData(ctx, op); err != nil {
			return false, err
		}
	}
	if !cd.RewindPossible() {
		return false, &CommandError{Op: op, ExitCode: -1, Cause: ErrRewindNotPossible,
			Detail: "pg_control shows wal_log_hints off and data checksums disabled; reinitialise this member with Clone"}
	}
	if err := i.prepareRuntime(op); err != nil {
		return false, err
	}
	if err := i.setPgpass(up.Host, up.Port, i.cfg.Rewind); err != nil {
		return false, &DirError{Op: op, Path: i.cfg.PgpassFile, Cause: ErrPermission, Problem: err.Error()}
	}
	src := conninfo("host", up.Host, "port", strconv.Itoa(up.Port), "user", i.cfg.Rewind.Username,
		"dbname", i.cfg.Database, "passfile", i.cfg.PgpassFile, "application_name", i.cfg.Name, "sslmode", up.SSLMode)
	i.log.Info("running pg_rewind", "source", fmt.Sprintf("%s:%d", up.Host, up.Port), "timeline", cd.Timeline)
	noop := false
	started = true
	_, err = i.run(ctx, command{op: op, name: "pg_rewind",
		args:   []string{"-D", i.cfg.DataDir, "--source-server=" + src},
		env:    []string{"LC_ALL=C", "LANG=C", "PGPASSFILE=" + i.cfg.PgpassFile},
		onLine: func(l string) { noop = noop || strings.Contains(l, "no rewind required") }})
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Detail == "" {
			ce.Detail = detailLine(ce.Stderr)
		}
		return false, err
	}
	rewound = !noop
	// The slots came from the source (or are this member's old ones);
	// neither is right for the rewound member (SPEC 3.12).
	slots, _ := os.ReadDir(i.dataPath("pg_replslot"))
	for _, s := range slots {
		_ = os.RemoveAll(filepath.Join(i.dataPath("pg_replslot"), s.Name()))
	}
	if err := i.writeConfFiles(); err != nil {
		return rewound, &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	i.log.Info("pg_rewind finished")
	return rewound, nil
}

// CrashRecovery finishes an unclean shutdown of a stopped former primary
// (pg_control says "in production", "shutting down" or "in crash
// recovery") by running postgres in single-user mode (postgres --single,
// with archive_mode=on and archive_command=false so nothing is archived),
// as Patroni does when it must not simply start a crashed primary (SPEC
// 3.8). It removes standby.signal and recovery.signal for the run
// (single-user mode does not support standby mode) and puts back a
// standby.signal that was there. After a clean shutdown it does nothing.
//
// It refuses a replica that crashed ("in archive recovery"): recovery ends
// with a checkpoint written at the end of the replica's own WAL, which its
// upstream does not have, so the replica could not resume streaming on the
// same timeline. Start such a replica again (postgres recovers by itself);
// Rewind runs single-user recovery itself when a rewind follows. It also
// refuses a data directory with a backup_label (a copy whose recovery never
// finished). Bounded by Config.TransferTimeout and ctx.
func (i *Instance) CrashRecovery(ctx context.Context) error {
	const op = "crash recovery"
	release, err := i.begin(ctx, op)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.TransferTimeout)
	defer cancel()
	if p := i.current(); p != nil {
		return fmt.Errorf("pg: %s: %w (pid %d)", op, ErrAlreadyRunning, p.pid)
	}
	cd, err := i.controlData(ctx, op)
	if err != nil {
		return err
	}
	switch {
	case cd.CleanShutdown():
		return nil
	case cd.State == StateInArchiveRecovery:
		return &DirError{Op: op, Path: i.cfg.DataDir, Problem: "the instance crashed as a replica (in archive recovery); " +
			"start it again as a standby instead (single-user recovery would write a checkpoint its upstream does not have), " +
			"or Rewind it, which recovers it first"}
	}
	return i.crashRecovery(ctx, op, cd)
}

func (i *Instance) crashRecovery(ctx context.Context, op string, cd ControlData) error {
	if i.hasBackupLabel() {
		return &DirError{Op: op, Path: i.dataPath("backup_label"), Cause: ErrCorruptDataDir, Problem: fmt.Sprintf(
			"the cluster is %q and has a backup_label: it is a base backup whose recovery never finished; start it as a standby (or clone again) instead of crash recovery", cd.State)}
	}
	if err := i.checkDataDir(op); err != nil {
		return err
	}
	_, statErr := os.Stat(i.dataPath(standbySignal))
	wasStandby := statErr == nil
	for _, f := range []string{standbySignal, recoverySignal} {
		if err := os.Remove(i.dataPath(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &DirError{Op: op, Path: i.dataPath(f), Cause: ErrPermission, Problem: err.Error()}
		}
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: op, Path: i.cfg.DataDir, Cause: ErrPermission, Problem: err.Error()}
	}
	args := append([]string{"--single"}, i.postmasterArgs(false)...)
	args = append(args, "-c", "archive_mode=on", "-c", "archive_command=false", "template1")
	i.log.Info("running single-user crash recovery", "state", cd.State)
	_, err := i.run(ctx, command{op: op, name: "postgres", args: args, stdin: strings.NewReader("")})
	if wasStandby {
		if werr := i.id.writeOwnedFile(i.dataPath(standbySignal), nil, 0o600); werr != nil && err == nil {
			err = &DirError{Op: op, Path: i.dataPath(standbySignal), Cause: ErrPermission, Problem: werr.Error()}
		}
	}
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && ce.Detail == "" {
			ce.Detail = detailLine(ce.Stderr)
		}
		return err
	}
	after, err := i.controlData(ctx, op)
	if err != nil {
		return err
	}
	if !after.CleanShutdown() {
		return &CommandError{Op: op, ExitCode: -1, Cause: ErrCorruptDataDir,
			Detail: fmt.Sprintf("pg_control still says %q after single-user recovery", after.State)}
	}
	i.log.Info("crash recovery finished", "checkpoint_lsn", after.CheckpointLSN.String(), "timeline", after.Timeline)
	return nil
}

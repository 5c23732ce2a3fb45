package pg

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Cluster states as pg_controldata prints them (in the C locale, which pgha
// forces when it runs pg_controldata).
const (
	StateStartingUp         = "starting up"
	StateShutDown           = "shut down"
	StateShutDownInRecovery = "shut down in recovery"
	StateShuttingDown       = "shutting down"
	StateInCrashRecovery    = "in crash recovery"
	StateInArchiveRecovery  = "in archive recovery"
	StateInProduction       = "in production"
)

// ControlData is what pg_controldata reports about a data directory. It is
// what pgha knows about a stopped instance: whether it was shut down
// cleanly, where its last checkpoint is, on which timeline, and whether
// pg_rewind can work on it.
type ControlData struct {
	SystemID uint64 // "Database system identifier"
	// State is "Database cluster state", one of the State* constants.
	State string
	// CheckpointLSN is "Latest checkpoint location"; RedoLSN its REDO
	// location.
	CheckpointLSN LSN
	RedoLSN       LSN // where replay of the last checkpoint starts
	// Timeline is "Latest checkpoint's TimeLineID".
	Timeline int
	// MinRecoveryEndLSN and MinRecoveryEndTimeline are the "Minimum recovery
	// ending location" and its timeline (zero when not in recovery).
	MinRecoveryEndLSN      LSN
	MinRecoveryEndTimeline int    // timeline of MinRecoveryEndLSN
	WALLevel               string // "wal_level setting"
	WALLogHints            bool   // "wal_log_hints setting"
	// ChecksumVersion is "Data page checksum version"; 0 means checksums are
	// off.
	ChecksumVersion int
	// Fields holds every "key: value" line as printed.
	Fields map[string]string
}

// CleanShutdown reports whether the last shutdown was clean ("shut down" or
// "shut down in recovery"). Anything else needs crash recovery before
// pg_rewind can run (SPEC 3.8, 3.12).
func (c ControlData) CleanShutdown() bool {
	return c.State == StateShutDown || c.State == StateShutDownInRecovery
}

// RewindPossible reports whether pg_rewind can work on this data directory:
// it needs wal_log_hints = on or data checksums (SPEC 3.12).
func (c ControlData) RewindPossible() bool {
	return c.WALLogHints || c.ChecksumVersion != 0
}

// ParseControlData parses pg_controldata output printed in the C locale.
// It fails if the output says the control file's checksum does not match,
// or if the fields pgha relies on are missing or malformed.
func ParseControlData(out string) (ControlData, error) {
	c := ControlData{Fields: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "WARNING: Calculated CRC checksum does not match") {
			return c, fmt.Errorf("pg_control's checksum does not match its contents (damaged or written by another PostgreSQL version)")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		c.Fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	var errs []string
	need := func(k string) string {
		v, ok := c.Fields[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("no %q", k))
		}
		return v
	}
	lsn := func(k string) LSN {
		v := need(k)
		if v == "" {
			return 0
		}
		l, err := ParseLSN(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k, err))
		}
		return l
	}
	num := func(k string) int {
		v := need(k)
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not a number", k, v))
		}
		return n
	}
	if v := need("Database system identifier"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("system identifier %q is not a number", v))
		}
		c.SystemID = id
	}
	c.State = need("Database cluster state")
	c.CheckpointLSN = lsn("Latest checkpoint location")
	c.RedoLSN = lsn("Latest checkpoint's REDO location")
	c.Timeline = num("Latest checkpoint's TimeLineID")
	c.MinRecoveryEndLSN = lsn("Minimum recovery ending location")
	c.MinRecoveryEndTimeline = num("Min recovery ending loc's timeline")
	c.WALLevel = need("wal_level setting")
	c.WALLogHints = need("wal_log_hints setting") == "on"
	c.ChecksumVersion = num("Data page checksum version")
	if len(errs) > 0 {
		return c, fmt.Errorf("unexpected pg_controldata output: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// ControlData runs pg_controldata on the data directory. It works whether
// or not the server runs, but the values describe the last checkpoint, so
// for a running server [Instance.Status] is the better source. A damaged
// control file gives a *CommandError with Cause ErrCorruptDataDir; a missing
// data directory a *DirError with Cause ErrNotInitialized.
func (i *Instance) ControlData(ctx context.Context) (ControlData, error) {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	return i.controlData(ctx, "controldata")
}

func (i *Instance) controlData(ctx context.Context, op string) (ControlData, error) {
	if err := i.checkInitialized(op); err != nil {
		return ControlData{}, err
	}
	argv := []string{"-D", i.cfg.DataDir}
	out, err := i.run(ctx, command{op: op, name: "pg_controldata", args: argv, env: []string{"LC_ALL=C", "LANG=C"}})
	if err != nil {
		if ce, ok := err.(*CommandError); ok && ce.Cause == nil && ce.ExitCode > 0 {
			ce.Cause = ErrCorruptDataDir
			ce.Detail = strings.TrimPrefix(lastLines(ce.Stderr, 1), "pg_controldata: ")
			ce.Stderr = ""
		}
		return ControlData{}, err
	}
	cd, perr := ParseControlData(out)
	if perr != nil {
		return cd, &CommandError{Op: op, ExitCode: -1, Cause: ErrCorruptDataDir,
			Detail: "pg_controldata -D " + i.cfg.DataDir + ": " + perr.Error()}
	}
	return cd, nil
}

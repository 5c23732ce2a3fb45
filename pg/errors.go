package pg

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Callers test for them with errors.Is; the typed errors
// below wrap them as their Cause.
var (
	// ErrNotRunning: the operation needs a running postmaster and there is none.
	ErrNotRunning = errors.New("postgres is not running")
	// ErrAlreadyRunning: the operation needs a stopped instance (initdb, start,
	// clone, rewind, single-user recovery) but a postmaster is running on the
	// data directory.
	ErrAlreadyRunning = errors.New("postgres is already running")
	// ErrTimeout: the operation did not finish within its timeout (the
	// operation's Config.Timeout or the context's deadline).
	ErrTimeout = errors.New("timed out")
	// ErrPortInUse: postgres could not listen because another process holds
	// the TCP port or the unix socket.
	ErrPortInUse = errors.New("port already in use")
	// ErrInvalidParameter: postgres rejected a configuration parameter (an
	// unknown name or an invalid value in Config.Parameters or in the user's
	// configuration files).
	ErrInvalidParameter = errors.New("invalid configuration parameter")
	// ErrCorruptDataDir: the data directory exists and looks initialised but
	// postgres or pg_controldata cannot use it (damaged pg_control, missing
	// files).
	ErrCorruptDataDir = errors.New("data directory is damaged")
	// ErrNotInitialized: the data directory does not exist or holds no
	// PG_VERSION file; run Initdb or Clone first.
	ErrNotInitialized = errors.New("data directory is not initialized")
	// ErrDataDirNotEmpty: Initdb or Clone was asked to create a cluster in a
	// directory that already has files in it.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")
	// ErrVersionMismatch: the data directory was created by a different
	// PostgreSQL major version than the binaries in use.
	ErrVersionMismatch = errors.New("data directory and binaries have different major versions")
	// ErrRewindNotPossible: pg_rewind cannot work on this data directory
	// because it has neither wal_log_hints nor data checksums.
	ErrRewindNotPossible = errors.New("pg_rewind is not possible")
	// ErrRewindNotStarted: Rewind failed before pg_rewind ran (nothing was
	// changed; it may be tried again).
	ErrRewindNotStarted = errors.New("pg_rewind did not run")
	// ErrPermission: the OS user postgres runs as cannot reach or write a
	// path it needs.
	ErrPermission = errors.New("permission problem")
	// ErrClosed: the Instance was closed.
	ErrClosed = errors.New("instance closed")
)

// Retryable reports whether the same call may succeed later with no change
// of configuration or data: a timeout, a port that another process holds,
// or a server that is not running yet. Every other error needs an action
// (fix the configuration, reinitialise, install binaries) before a retry can
// help.
func Retryable(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrPortInUse) || errors.Is(err, ErrNotRunning)
}

// ConfigError is one problem found by [Config.Validate]. Validate joins all
// problems with errors.Join; use errors.As to get the first, or
// interface{ Unwrap() []error } to walk them all.
type ConfigError struct {
	Field   string // the Config field, for example "DataDir" or "Parameters[port]"
	Problem string // what is wrong and what to do about it
}

// Error formats the problem with its field.
func (e *ConfigError) Error() string { return "pg: config: " + e.Field + ": " + e.Problem }

// MissingBinaryError says that a PostgreSQL program could not be found.
type MissingBinaryError struct {
	Program  string   // "postgres", "initdb", "pg_basebackup", ...
	Searched []string // the places looked at, in order, for the user to check
}

// Error names the program and every place searched.
func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("pg: PostgreSQL program %q not found (looked in: %s); install PostgreSQL 13 or newer or set Config.BinDir / PGHA_PG_BIN",
		e.Program, strings.Join(e.Searched, ", "))
}

// DirError is a problem with a directory or file pgha checked before running
// a command: the data directory is missing, not empty, of another major
// version, owned by the wrong user, or not reachable by the OS user.
type DirError struct {
	Op      string // the Instance method, for example "start"
	Path    string // the path at fault
	Problem string // what is wrong and what to do about it
	Cause   error  // a sentinel (ErrNotInitialized, ErrPermission, ...) or nil
}

// Error names the operation, the path and the problem.
func (e *DirError) Error() string {
	s := fmt.Sprintf("pg: %s: %s: %s", e.Op, e.Path, e.Problem)
	if e.Cause != nil {
		s += " (" + e.Cause.Error() + ")"
	}
	return s
}

// Unwrap returns the Cause.
func (e *DirError) Unwrap() error { return e.Cause }

// CommandError reports a PostgreSQL program (or the postmaster) that failed,
// timed out, or exited when it should not have. It carries what a person
// needs to act: the command line (passwords are never on it), the exit
// status, the tail of the program's stderr and, for the server, the tail of
// the server log written during this attempt.
type CommandError struct {
	Op       string   // the Instance method: "initdb", "start", "stop", "promote", "clone", "rewind", ...
	Command  []string // program and arguments
	ExitCode int      // exit status; -1 when killed by a signal, still running, or never started
	Stderr   string   // last lines of the program's stderr/stdout (up to a few KiB)
	LogTail  string   // last lines the server wrote to Config.LogFile during this attempt
	LogFile  string   // where the full server log is
	Detail   string   // the decisive line (from the log or a diagnosis), if one was found
	Cause    error    // a sentinel classifying the failure (ErrPortInUse, ErrTimeout, ...) or nil
	Err      error    // the underlying error (exec, context), or nil
}

// Error gives the operation, cause, decisive line, command, exit status
// and the last lines of output and server log, on one line.
func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString("pg: ")
	b.WriteString(e.Op)
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if len(e.Command) > 0 {
		b.WriteString(": ")
		b.WriteString(shortCommand(e.Command))
		if e.ExitCode >= 0 {
			fmt.Fprintf(&b, " exited with code %d", e.ExitCode)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if t := lastLines(e.Stderr, 3); t != "" {
		b.WriteString("; output: ")
		b.WriteString(t)
	}
	if t := lastLines(e.LogTail, 5); t != "" {
		b.WriteString("; server log")
		if e.LogFile != "" {
			b.WriteString(" (" + e.LogFile + ")")
		}
		b.WriteString(": ")
		b.WriteString(t)
	}
	return b.String()
}

// Unwrap returns the Cause and the underlying error, so errors.Is works for
// both the sentinel and, for example, context.DeadlineExceeded.
func (e *CommandError) Unwrap() []error {
	var errs []error
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// shortCommand renders a command line for an error message, cutting long
// argument lists.
func shortCommand(cmd []string) string {
	const max = 8
	if len(cmd) > max {
		return strings.Join(cmd[:max], " ") + " ..."
	}
	return strings.Join(cmd, " ")
}

// lastLines returns the last n non-empty lines of s joined with " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append(keep, l)
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	return strings.Join(keep, " | ")
}

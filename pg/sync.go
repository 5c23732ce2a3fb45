package pg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInRecovery is returned by primary-only queries on a server in
// recovery.
var ErrInRecovery = errors.New("the server is in recovery")

// isRecoveryError reports PostgreSQL's "recovery is in progress" error.
func isRecoveryError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55000" && strings.Contains(pe.Message, "recovery is in progress")
}

// SyncConfFile holds synchronous_standby_names while pgha manages it
// (synchronous mode); pgha.conf includes it last, so it wins over
// Config.Parameters. Empty (a comment only) when pgha does not manage it.
const SyncConfFile = "pgha.sync.conf"

// SyncState is what a primary's synchronous replication looks like from
// inside: the synchronous_standby_names in force, the local flush position,
// and its WAL senders with their positions.
type SyncState struct {
	// Names is the synchronous_standby_names the server uses (SHOW).
	Names string
	// FlushLSN is pg_current_wal_flush_lsn(): every commit acknowledged so
	// far is at or below it.
	FlushLSN LSN
	// Standbys are the rows of pg_stat_replication.
	Standbys []SyncStandby
}

// SyncStandby is a WAL sender as synchronous replication sees it.
type SyncStandby struct {
	// Name is the application_name (pgha sets it to the member name).
	Name string
	// State is "streaming", "catchup", "startup" or "backup".
	State string
	// SyncState is "async", "potential", "sync" or "quorum", as the querying
	// session's synchronous_standby_names judges it.
	SyncState string
	// WriteLSN, FlushLSN and ReplayLSN are the standby's reported positions
	// (0 when unknown).
	WriteLSN, FlushLSN, ReplayLSN LSN
}

const syncQuery = `
SELECT pg_catalog.current_setting('synchronous_standby_names'),
       pg_catalog.pg_current_wal_flush_lsn()::text,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('n', s.application_name, 's', s.state,
               'y', s.sync_state, 'w', s.write_lsn::text, 'f', s.flush_lsn::text, 'r', s.replay_lsn::text)
               ORDER BY s.application_name)::text
          FROM pg_catalog.pg_stat_replication AS s)`

// SyncStatus reads a running primary's synchronous replication state. A
// server in recovery yields ErrInRecovery.
func (i *Instance) SyncStatus(ctx context.Context) (SyncState, error) {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	var st SyncState
	p := i.current()
	if p == nil {
		return st, fmt.Errorf("pg: sync status: %w", ErrNotRunning)
	}
	conn, release, err := i.borrow(ctx, p.pid)
	if err != nil {
		return st, &CommandError{Op: "sync status", ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	var flush string
	var rows *string
	err = conn.QueryRow(ctx, syncQuery).Scan(&st.Names, &flush, &rows)
	release(err == nil)
	if err != nil {
		if isRecoveryError(err) {
			return st, fmt.Errorf("pg: sync status: %w", ErrInRecovery)
		}
		return st, &CommandError{Op: "sync status", ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	if st.FlushLSN, err = ParseLSN(flush); err != nil {
		return st, fmt.Errorf("pg: sync status: %w", err)
	}
	if rows != nil {
		var raw []struct{ N, S, Y, W, F, R *string }
		if err := json.Unmarshal([]byte(*rows), &raw); err != nil {
			return st, fmt.Errorf("pg: sync status: pg_stat_replication: %w", err)
		}
		for _, r := range raw {
			s := SyncStandby{Name: deref(r.N), State: deref(r.S), SyncState: deref(r.Y)}
			s.WriteLSN, _ = ParseLSN(deref(r.W))
			s.FlushLSN, _ = ParseLSN(deref(r.F))
			s.ReplayLSN, _ = ParseLSN(deref(r.R))
			st.Standbys = append(st.Standbys, s)
		}
	}
	return st, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SetSynchronousStandbyNames makes value the synchronous_standby_names of
// the instance: it writes pgha.sync.conf and, when the server runs, reloads
// it and waits until a new session sees the value, bounded by ctx. The
// setting survives restarts; [Instance.ClearSynchronousStandbyNames] hands
// it back to Config.Parameters. value is not checked beyond the
// configuration file's syntax: PostgreSQL rejects a malformed list on
// reload (keeping the old value), which this method reports as a timeout.
func (i *Instance) SetSynchronousStandbyNames(ctx context.Context, value string) error {
	return i.setSyncConf(ctx, &value)
}

// ClearSynchronousStandbyNames stops managing synchronous_standby_names:
// Config.Parameters (or postgresql.conf) decide it again. A running server
// is reloaded.
func (i *Instance) ClearSynchronousStandbyNames(ctx context.Context) error {
	return i.setSyncConf(ctx, nil)
}

func (i *Instance) setSyncConf(ctx context.Context, value *string) error {
	if value != nil && strings.ContainsAny(*value, "\x00\n\r") {
		return &ConfigError{Field: "synchronous_standby_names", Problem: "value must not contain NUL or line breaks"}
	}
	release, err := i.begin(ctx, "set synchronous_standby_names")
	if err != nil {
		return err
	}
	defer release()
	if err := i.checkInitialized("set synchronous_standby_names"); err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# Written by pgha (synchronous mode). Do not edit.\n")
	if value != nil {
		fmt.Fprintf(&b, "synchronous_standby_names = %s\n", quoteConf(*value))
	}
	path := i.dataPath(SyncConfFile)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	changed := !bytes.Equal(old, b.Bytes())
	if changed {
		if err := i.id.writeOwnedFile(path, b.Bytes(), 0o600); err != nil {
			return &DirError{Op: "set synchronous_standby_names", Path: path, Problem: err.Error()}
		}
	}
	if err := i.writeConfFiles(); err != nil {
		return &DirError{Op: "set synchronous_standby_names", Path: i.cfg.DataDir, Problem: "writing pgha's configuration files: " + err.Error()}
	}
	p := i.current()
	if p == nil {
		return nil
	}
	want := ""
	if value != nil {
		want = *value
	}
	// The server's view: SHOW in a session that has processed the reload.
	// Compare against what PostgreSQL itself prints for the written value.
	for attempt := 0; ; attempt++ {
		if attempt == 0 && changed {
			if err := i.signal("set synchronous_standby_names", syscall.SIGHUP); err != nil {
				return err
			}
		}
		got, err := i.showSetting(ctx, p.pid, "synchronous_standby_names")
		if err == nil && (value == nil || got == want) {
			return nil
		}
		if attempt == 0 && !changed && err == nil {
			// The file already held it but the server disagrees: reload.
			if err := i.signal("set synchronous_standby_names", syscall.SIGHUP); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return &CommandError{Op: "set synchronous_standby_names", ExitCode: -1, Err: ctx.Err(), Cause: ctxCause(ctx.Err()),
				Detail: fmt.Sprintf("the server still shows %q instead of %q (a value it rejected is kept out, see the server log)", got, want)}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// showSetting is current_setting(name) on the cached connection.
func (i *Instance) showSetting(ctx context.Context, pid int, name string) (string, error) {
	conn, release, err := i.borrow(ctx, pid)
	if err != nil {
		return "", err
	}
	var v string
	err = conn.QueryRow(ctx, "SELECT pg_catalog.current_setting($1)", name).Scan(&v)
	release(err == nil)
	return v, err
}

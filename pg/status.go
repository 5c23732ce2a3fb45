package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Role is what the server is doing: primary (read-write) or replica (in
// recovery). The strings are Patroni's member roles.
type Role string

// Roles.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// Status is a snapshot of the instance. When the server runs, the fields
// come from one query; when it does not, Control holds what pg_controldata
// says.
type Status struct {
	Running bool // a live postmaster owns the data directory
	PID     int  // the postmaster's pid, when Running
	// PostmasterStatus is line 8 of postmaster.pid: PMStarting, PMReady,
	// PMStandby or PMStopping.
	PostmasterStatus string

	Role Role // "" when not running or not accepting connections
	// Timeline is the current timeline: on a primary, the one it writes
	// (taken from its current WAL file name, so it is right immediately after
	// a promotion); on a replica, the one its WAL receiver receives, or, with
	// no receiver, the timeline of its last restartpoint.
	Timeline int
	SystemID uint64 // the cluster's system identifier (pg_control_system)

	// On a primary: the current write position and how far WAL is flushed.
	CurrentLSN LSN // pg_current_wal_lsn()
	FlushLSN   LSN // pg_current_wal_flush_lsn()
	// On a replica: how far WAL has been received (and flushed) and
	// replayed.
	ReceiveLSN LSN // pg_last_wal_receive_lsn()
	ReplayLSN  LSN // pg_last_wal_replay_lsn()

	// WALReceiver is the replica's WAL receiver, nil when there is none.
	WALReceiver *WALReceiver
	// PendingRestart is true when a changed parameter needs a restart.
	PendingRestart bool

	// ServerVersion is server_version_num (e.g. 150018).
	ServerVersion int
	// PostmasterStartTime is pg_postmaster_start_time().
	PostmasterStartTime time.Time
	// ReplayTimestamp is a replica's pg_last_xact_replay_timestamp(), nil
	// when none was replayed (or on a primary).
	ReplayTimestamp *time.Time
	// ReplayPaused is a replica's pg_is_wal_replay_paused().
	ReplayPaused bool
	// Replication lists a server's WAL senders (pg_stat_replication).
	Replication []WALSender
	// RewindPossible is true when pg_rewind can work on this data
	// directory: data checksums or wal_log_hints are on. Set from the
	// running server, or from Control when it does not run.
	RewindPossible bool

	// Control is pg_controldata's view, set when the server does not run
	// and the data directory is initialized.
	Control *ControlData
}

// WALSender is a row of pg_stat_replication, with the fields Patroni
// reports in GET /patroni.
type WALSender struct {
	Usename         string `json:"usename"`
	ApplicationName string `json:"application_name"`
	ClientAddr      string `json:"client_addr"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
	SyncPriority    int    `json:"sync_priority"`
}

// WALReceiver is a row of pg_stat_wal_receiver.
type WALReceiver struct {
	PID int // the WAL receiver process
	// Status is "streaming", "starting", "waiting", "stopping",
	// "restarting" or "stopped".
	Status           string
	ReceivedTimeline int    // timeline of the WAL being received
	FlushedLSN       LSN    // received and flushed to disk
	LatestEndLSN     LSN    // last position reported by the upstream
	SlotName         string // primary_slot_name in use
	SenderHost       string // the upstream's host
	SenderPort       int    // the upstream's port
}

// Connect opens a connection to the instance as the superuser, through the
// unix socket in Config.SocketDir, to Config.Database. The caller closes it.
func (i *Instance) Connect(ctx context.Context) (*pgx.Conn, error) {
	return i.connectAs(ctx, i.cfg.Superuser, i.cfg.Database)
}

func (i *Instance) connectAs(ctx context.Context, cr Credentials, db string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc.Host = i.cfg.SocketDir
	cc.Port = uint16(i.cfg.Port)
	cc.User = cr.Username
	cc.Password = cr.Password
	cc.Database = db
	cc.TLSConfig = nil
	cc.Fallbacks = nil
	cc.RuntimeParams = map[string]string{"application_name": "pgha"}
	cc.ConnectTimeout = 10 * time.Second
	return pgx.ConnectConfig(ctx, cc)
}

// Status reports the instance's state. For a running server it queries it
// (bounded by Config.Timeout); if the server runs but does not accept
// connections yet (still starting, or a replica not yet consistent), Status
// returns the process fields with Role empty and the connection error. For
// a stopped server it runs pg_controldata; an uninitialized data directory
// gives a zero Status and no error.
func (i *Instance) Status(ctx context.Context) (Status, error) {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	var st Status
	p := i.current()
	if p == nil {
		if !i.Initialized() {
			return st, nil
		}
		cd, err := i.controlData(ctx, "status")
		if err != nil {
			return st, err
		}
		st.Control = &cd
		st.RewindPossible = cd.RewindPossible()
		return st, nil
	}
	st.Running, st.PID = true, p.pid
	if pf, err := readPidFile(i.cfg.DataDir); err == nil && pf.pid == p.pid {
		st.PostmasterStatus = pf.status
	}
	conn, release, err := i.borrow(ctx, p.pid)
	if err != nil {
		return st, &CommandError{Op: "status", ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()),
			Detail: "cannot connect to postgres (pid " + fmt.Sprint(p.pid) + ")"}
	}
	if err := i.query(ctx, conn, &st); err != nil {
		release(false)
		return st, &CommandError{Op: "status", ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	release(true)
	return st, nil
}

const statusQuery = `
SELECT r,
       (SELECT system_identifier FROM pg_catalog.pg_control_system())::text,
       CASE WHEN r THEN NULL ELSE pg_catalog.pg_current_wal_lsn()::text END,
       CASE WHEN r THEN NULL ELSE pg_catalog.pg_current_wal_flush_lsn()::text END,
       pg_catalog.pg_last_wal_receive_lsn()::text,
       pg_catalog.pg_last_wal_replay_lsn()::text,
       CASE WHEN r THEN NULL ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()),
       EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE pending_restart),
       w.pid, w.status, w.received_tli, w.flushed_lsn::text, w.latest_end_lsn::text,
       w.slot_name, w.sender_host, w.sender_port,
       pg_catalog.pg_postmaster_start_time(),
       pg_catalog.current_setting('server_version_num')::int,
       CASE WHEN r THEN pg_catalog.pg_last_xact_replay_timestamp() END,
       CASE WHEN r THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('usename', s.usename,
               'application_name', s.application_name, 'client_addr', pg_catalog.host(s.client_addr),
               'state', s.state, 'sync_state', s.sync_state, 'sync_priority', s.sync_priority)
               ORDER BY s.application_name)::text
          FROM pg_catalog.pg_stat_replication AS s),
       pg_catalog.current_setting('data_checksums')::bool OR pg_catalog.current_setting('wal_log_hints')::bool
  FROM pg_catalog.pg_is_in_recovery() AS r
  LEFT JOIN pg_catalog.pg_stat_get_wal_receiver() AS w ON w.pid IS NOT NULL`

func (i *Instance) query(ctx context.Context, conn *pgx.Conn, st *Status) error {
	var (
		inRecovery                            bool
		sysid                                 string
		cur, flush, recv, replay              *string
		walTLI                                *int32
		ckptTLI                               int32
		pending                               bool
		wPID, wTLI, wPort                     *int32
		wStatus, wFlushed, wEnd, wSlot, wHost *string
		replayTS                              *time.Time
		senders                               *string
	)
	err := conn.QueryRow(ctx, statusQuery).Scan(&inRecovery, &sysid, &cur, &flush, &recv, &replay, &walTLI, &ckptTLI, &pending,
		&wPID, &wStatus, &wTLI, &wFlushed, &wEnd, &wSlot, &wHost, &wPort,
		&st.PostmasterStartTime, &st.ServerVersion, &replayTS, &st.ReplayPaused, &senders, &st.RewindPossible)
	if err != nil {
		return err
	}
	st.ReplayTimestamp = replayTS
	if senders != nil {
		if err := json.Unmarshal([]byte(*senders), &st.Replication); err != nil {
			return fmt.Errorf("pg_stat_replication: %w", err)
		}
	}
	var errs []error
	lsn := func(s *string) LSN {
		if s == nil {
			return 0
		}
		l, err := ParseLSN(*s)
		if err != nil {
			errs = append(errs, err)
		}
		return l
	}
	if _, err := fmt.Sscan(sysid, &st.SystemID); err != nil {
		errs = append(errs, fmt.Errorf("system identifier %q: %w", sysid, err))
	}
	st.PendingRestart = pending
	if inRecovery {
		st.Role = RoleReplica
		st.ReceiveLSN, st.ReplayLSN = lsn(recv), lsn(replay)
		st.Timeline = int(ckptTLI)
	} else {
		st.Role = RolePrimary
		st.CurrentLSN, st.FlushLSN = lsn(cur), lsn(flush)
		if walTLI != nil {
			st.Timeline = int(*walTLI)
		}
	}
	if wPID != nil {
		w := &WALReceiver{PID: int(*wPID), FlushedLSN: lsn(wFlushed), LatestEndLSN: lsn(wEnd)}
		if wStatus != nil {
			w.Status = *wStatus
		}
		if wTLI != nil {
			w.ReceivedTimeline = int(*wTLI)
			if inRecovery && w.ReceivedTimeline > st.Timeline {
				st.Timeline = w.ReceivedTimeline
			}
		}
		if wSlot != nil {
			w.SlotName = *wSlot
		}
		if wHost != nil {
			w.SenderHost = *wHost
		}
		if wPort != nil {
			w.SenderPort = int(*wPort)
		}
		st.WALReceiver = w
	}
	return errors.Join(errs...)
}

// Checkpoint runs CHECKPOINT. After a promotion, the new primary's
// pg_control records the new timeline only at its first checkpoint; until
// then pg_rewind against it sees no divergence, so call Checkpoint after
// Promote before other members rewind against it (Patroni does the same).
func (i *Instance) Checkpoint(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	return i.exec(ctx, "checkpoint", "CHECKPOINT")
}

func (i *Instance) exec(ctx context.Context, op string, sqls ...string) error {
	if i.current() == nil {
		return fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
	}
	conn, err := i.Connect(ctx)
	if err != nil {
		return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), Detail: firstWords(q)}
		}
	}
	return nil
}

// firstWords names a statement in an error without its literals (which may
// hold a password).
func firstWords(q string) string {
	f := strings.Fields(q)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

// EnsureRoles creates or updates the roles the configuration names, on a
// running primary (Patroni's post-bootstrap step, SPEC 3.14): it sets the
// superuser's password, creates the replication role (LOGIN REPLICATION)
// and, when Config.Rewind names a role other than the superuser, the rewind
// role with EXECUTE on the functions pg_rewind needs. Passwords are sent in
// the statements, as Patroni does; keep log_statement from logging DDL if
// that matters.
func (i *Instance) EnsureRoles(ctx context.Context) error {
	release, err := i.begin(ctx, "ensure roles")
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	const op = "ensure roles"
	if i.current() == nil {
		return fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
	}
	conn, err := i.Connect(ctx)
	if err != nil {
		return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	run := func(q string) error {
		if _, err := conn.Exec(ctx, q); err != nil {
			return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), Detail: firstWords(q)}
		}
		return nil
	}
	if err := run("SET standard_conforming_strings = on"); err != nil {
		return err
	}
	ensure := func(cr Credentials, attrs string) error {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", cr.Username).Scan(&exists); err != nil {
			return &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
		}
		verb := "CREATE"
		if exists {
			verb = "ALTER"
		}
		q := verb + " ROLE " + pgx.Identifier{cr.Username}.Sanitize() + " WITH " + attrs
		if cr.Password != "" {
			q += " PASSWORD " + quoteLiteral(cr.Password)
		}
		return run(q)
	}
	su := i.cfg.Superuser
	if su.Password != "" {
		if err := ensure(su, "LOGIN SUPERUSER"); err != nil {
			return err
		}
	}
	if r := i.cfg.Replication; r.Username != su.Username {
		if err := ensure(r, "LOGIN REPLICATION"); err != nil {
			return err
		}
	}
	if r := i.cfg.Rewind; r.Username != su.Username {
		if r.Username != i.cfg.Replication.Username {
			if err := ensure(r, "LOGIN"); err != nil {
				return err
			}
		}
		id := pgx.Identifier{r.Username}.Sanitize()
		for _, fn := range []string{
			"pg_catalog.pg_ls_dir(text, boolean, boolean)",
			"pg_catalog.pg_stat_file(text, boolean)",
			"pg_catalog.pg_read_binary_file(text)",
			"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
		} {
			if err := run("GRANT EXECUTE ON FUNCTION " + fn + " TO " + id); err != nil {
				return err
			}
		}
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// on).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// hasBackupLabel reports whether the data directory holds a backup_label
// (a base backup whose recovery has not finished).
func (i *Instance) hasBackupLabel() bool {
	_, err := os.Stat(filepath.Join(i.cfg.DataDir, "backup_label"))
	return err == nil
}

// ReplayTimeline returns the timeline a standby replays. Status reports a
// standby's timeline from its WAL receiver, or, with none, from its last
// restartpoint, which after a failover stays behind the timeline being
// replayed until the next restartpoint: a healthy replica would look
// diverged. ReplayTimeline asks the standby itself, with IDENTIFY_SYSTEM
// over a physical replication connection to itself (the superuser, through
// the unix socket), as Patroni does: it needs a "local replication" line
// in pg_hba.conf for the superuser (initdb's defaults have one). The
// answer is cached until the postmaster or the replay position changes: a
// replication connection forks a WAL sender, too slow for every status.
func (i *Instance) ReplayTimeline(ctx context.Context) (int, error) {
	st, err := i.Status(ctx)
	if err != nil {
		return 0, err
	}
	if st.Role != RoleReplica {
		return 0, fmt.Errorf("pg: replay timeline: %w: not a running standby", ErrNotRunning)
	}
	i.mu.Lock()
	c := i.replayTL
	i.mu.Unlock()
	if c.pid == st.PID && c.lsn == st.ReplayLSN && c.tl > 0 {
		return c.tl, nil
	}
	tl, err := i.replayTimeline(ctx)
	if err != nil {
		return 0, err
	}
	i.mu.Lock()
	i.replayTL.pid, i.replayTL.lsn, i.replayTL.tl = st.PID, st.ReplayLSN, tl
	i.mu.Unlock()
	return tl, nil
}

// replayTimeline asks IDENTIFY_SYSTEM over a physical replication
// connection: on a standby it reports the timeline of the last replayed
// record.
func (i *Instance) replayTimeline(ctx context.Context) (int, error) {
	cc, err := pgconn.ParseConfig("")
	if err != nil {
		return 0, err
	}
	cc.Host = i.cfg.SocketDir
	cc.Port = uint16(i.cfg.Port)
	cc.User = i.cfg.Superuser.Username
	cc.Password = i.cfg.Superuser.Password
	cc.Database = i.cfg.Database
	cc.TLSConfig = nil
	cc.Fallbacks = nil
	cc.RuntimeParams = map[string]string{"application_name": "pgha", "replication": "true"}
	cc.ConnectTimeout = 5 * time.Second
	conn, err := pgconn.ConnectConfig(ctx, cc)
	if err != nil {
		return 0, fmt.Errorf("replication connection: %w", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, errors.New("IDENTIFY_SYSTEM: unexpected result")
	}
	tl, err := strconv.Atoi(string(res[0].Rows[0][1]))
	if err != nil || tl <= 0 {
		return 0, fmt.Errorf("IDENTIFY_SYSTEM: timeline %q", res[0].Rows[0][1])
	}
	return tl, nil
}

package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Queryer runs SQL: *pgx.Conn, *pgxpool.Pool and pgx.Tx all satisfy it. The
// replication helpers below take one, so they work on a connection the
// caller owns as well as through [Instance.WithConn].
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// WithConn runs fn with the instance's cached superuser connection (the one
// Status uses), bounded by Config.Timeout. fn must not keep conn. It fails
// with ErrNotRunning when the server does not run.
func (i *Instance) WithConn(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) error {
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	p := i.current()
	if p == nil {
		return fmt.Errorf("pg: query: %w", ErrNotRunning)
	}
	conn, release, err := i.borrow(ctx, p.pid)
	if err != nil {
		return &CommandError{Op: "query", ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), Detail: "cannot connect"}
	}
	err = fn(ctx, conn)
	// A failed statement leaves the session usable unless the connection
	// itself broke; pgx marks a broken connection closed.
	release(!conn.IsClosed() && ctx.Err() == nil)
	return err
}

// ReplicationSlot is a row of pg_replication_slots (PostgreSQL 13+).
type ReplicationSlot struct {
	Name string
	// Type is "physical" or "logical".
	Type string
	// Plugin and Database are set for logical slots.
	Plugin, Database string
	Temporary        bool
	// Active is true while a WAL sender (or a logical decoding session)
	// uses the slot; ActivePID is its pid.
	Active    bool
	ActivePID int
	// HasXmin is true when the slot holds back xmin or catalog_xmin
	// (hot_standby_feedback of a consumer, or logical decoding).
	HasXmin bool
	// RestartLSN is the oldest WAL the slot needs; 0 when it reserves none
	// (a physical slot created without reserving WAL).
	RestartLSN LSN
	// ConfirmedFlushLSN is a logical slot's confirmed position.
	ConfirmedFlushLSN LSN
	// WALStatus is "reserved", "extended", "unreserved" or "lost" (the
	// WAL the slot needs was removed: it is useless).
	WALStatus string
	// SafeWALSize is how many more bytes of WAL can be written before the
	// slot risks being lost (max_slot_wal_keep_size); nil when unlimited.
	SafeWALSize *int64
	// RetainedBytes is how much WAL the slot holds back: from RestartLSN
	// to the server's current position (a primary's current WAL position,
	// a replica's last received or replayed one). 0 without RestartLSN.
	RetainedBytes int64
}

const slotsQuery = `
WITH pos AS (
  SELECT CASE WHEN pg_catalog.pg_is_in_recovery()
              THEN GREATEST(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())
              ELSE pg_catalog.pg_current_wal_lsn() END AS lsn)
SELECT s.slot_name::text, s.slot_type, COALESCE(s.plugin::text, ''), COALESCE(s.database::text, ''),
       s.temporary, s.active, s.active_pid,
       (s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL),
       s.restart_lsn::text, s.confirmed_flush_lsn::text, COALESCE(s.wal_status, ''), s.safe_wal_size,
       COALESCE(GREATEST(pg_catalog.pg_wal_lsn_diff(pos.lsn, s.restart_lsn), 0)::bigint, 0)
  FROM pg_catalog.pg_replication_slots AS s, pos
 ORDER BY s.slot_name`

// ListSlots returns every replication slot of the server, by name.
func ListSlots(ctx context.Context, q Queryer) ([]ReplicationSlot, error) {
	rows, err := q.Query(ctx, slotsQuery)
	if err != nil {
		return nil, fmt.Errorf("pg: listing replication slots: %w", err)
	}
	defer rows.Close()
	var out []ReplicationSlot
	for rows.Next() {
		var (
			s              ReplicationSlot
			pid            *int32
			restart, flush *string
		)
		if err := rows.Scan(&s.Name, &s.Type, &s.Plugin, &s.Database, &s.Temporary, &s.Active, &pid,
			&s.HasXmin, &restart, &flush, &s.WALStatus, &s.SafeWALSize, &s.RetainedBytes); err != nil {
			return nil, fmt.Errorf("pg: listing replication slots: %w", err)
		}
		if pid != nil {
			s.ActivePID = int(*pid)
		}
		if s.RestartLSN, err = optLSN(restart); err != nil {
			return nil, err
		}
		if s.ConfirmedFlushLSN, err = optLSN(flush); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pg: listing replication slots: %w", err)
	}
	return out, nil
}

func optLSN(s *string) (LSN, error) {
	if s == nil {
		return 0, nil
	}
	return ParseLSN(*s)
}

// CreatePhysicalSlot creates the physical slot name, reserving WAL at once
// (pg_create_physical_replication_slot(name, true)), unless a slot of that
// name exists. It reports whether it created one.
func CreatePhysicalSlot(ctx context.Context, q Queryer, name string) (bool, error) {
	if !validSlot(name) {
		return false, &ConfigError{Field: "slot name", Problem: fmt.Sprintf("%q is not a valid slot name ([a-z0-9_]{1,63})", name)}
	}
	rows, err := q.Query(ctx, `SELECT 1 FROM pg_catalog.pg_create_physical_replication_slot($1, true)
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)`, name)
	if err != nil {
		return false, fmt.Errorf("pg: creating replication slot %q: %w", name, err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("pg: creating replication slot %q: %w", name, err)
	}
	return n > 0, nil
}

// DropSlot drops the slot name if no one uses it. It reports whether the
// slot was dropped and whether it was active (an active slot is left
// alone); a slot that does not exist gives false, false.
func DropSlot(ctx context.Context, q Queryer, name string) (dropped, active bool, err error) {
	err = q.QueryRow(ctx, `WITH s AS (SELECT slot_name, active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1),
 d AS (SELECT pg_catalog.pg_drop_replication_slot(slot_name), true AS dropped FROM s WHERE NOT active)
SELECT COALESCE(s.active, false), COALESCE(d.dropped, false) FROM s FULL OUTER JOIN d ON true`, name).Scan(&active, &dropped)
	if err == pgx.ErrNoRows {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("pg: dropping replication slot %q: %w", name, err)
	}
	return dropped, active, nil
}

// AdvanceSlot moves the slot's position forward to lsn with
// pg_replication_slot_advance and returns where it ended (on a replica, no
// further than what it replayed). PostgreSQL refuses to move a slot
// backwards (SQLSTATE 55000): advance only past RestartLSN.
func AdvanceSlot(ctx context.Context, q Queryer, name string, lsn LSN) (LSN, error) {
	var endS *string
	err := q.QueryRow(ctx, "SELECT end_lsn::text FROM pg_catalog.pg_replication_slot_advance($1, $2::pg_lsn)",
		name, lsn.String()).Scan(&endS)
	if err != nil {
		return 0, fmt.Errorf("pg: advancing replication slot %q to %s: %w", name, lsn, err)
	}
	return optLSN(endS)
}

// WALSenderStat is a row of pg_stat_replication with its positions and
// lags, and the slot the WAL sender uses.
type WALSenderStat struct {
	PID             int
	Usename         string
	ApplicationName string
	ClientAddr      string
	// State is "startup", "catchup", "streaming", "backup" or "stopping".
	State string
	// SyncState is "async", "potential", "sync" or "quorum".
	SyncState    string
	SyncPriority int
	// Positions the standby reported (0 when not yet known).
	SentLSN, WriteLSN, FlushLSN, ReplayLSN LSN
	// WriteLag, FlushLag and ReplayLag are PostgreSQL's measured delays
	// between a local flush and the standby's write, flush and replay of
	// it; nil when PostgreSQL has no current sample (an idle standby that
	// caught up).
	WriteLag, FlushLag, ReplayLag *time.Duration
	// ReplyTime is the standby's last status message, nil when none.
	ReplyTime *time.Time
	// BackendStart is when the WAL sender started.
	BackendStart time.Time
	// SlotName is the replication slot the sender uses ("" when none).
	SlotName string
}

const walSendersQuery = `
SELECT s.pid, COALESCE(s.usename::text, ''), COALESCE(s.application_name, ''),
       COALESCE(pg_catalog.host(s.client_addr), ''), COALESCE(s.state, ''), COALESCE(s.sync_state, ''),
       COALESCE(s.sync_priority, 0),
       s.sent_lsn::text, s.write_lsn::text, s.flush_lsn::text, s.replay_lsn::text,
       (EXTRACT(epoch FROM s.write_lag) * 1000000)::bigint,
       (EXTRACT(epoch FROM s.flush_lag) * 1000000)::bigint,
       (EXTRACT(epoch FROM s.replay_lag) * 1000000)::bigint,
       s.reply_time, s.backend_start, COALESCE(r.slot_name::text, '')
  FROM pg_catalog.pg_stat_replication AS s
  LEFT JOIN pg_catalog.pg_replication_slots AS r ON r.active_pid = s.pid AND r.slot_type = 'physical'
 ORDER BY s.application_name, s.pid`

// ListWALSenders returns pg_stat_replication, ordered by application_name.
func ListWALSenders(ctx context.Context, q Queryer) ([]WALSenderStat, error) {
	rows, err := q.Query(ctx, walSendersQuery)
	if err != nil {
		return nil, fmt.Errorf("pg: reading pg_stat_replication: %w", err)
	}
	defer rows.Close()
	var out []WALSenderStat
	for rows.Next() {
		var (
			w                          WALSenderStat
			pid, prio                  int32
			sent, write, flush, replay *string
			wlag, flag, rlag           *int64
			backendStart               *time.Time
		)
		if err := rows.Scan(&pid, &w.Usename, &w.ApplicationName, &w.ClientAddr, &w.State, &w.SyncState, &prio,
			&sent, &write, &flush, &replay, &wlag, &flag, &rlag, &w.ReplyTime, &backendStart, &w.SlotName); err != nil {
			return nil, fmt.Errorf("pg: reading pg_stat_replication: %w", err)
		}
		w.PID, w.SyncPriority = int(pid), int(prio)
		if backendStart != nil {
			w.BackendStart = *backendStart
		}
		for _, p := range []struct {
			s   *string
			dst *LSN
		}{{sent, &w.SentLSN}, {write, &w.WriteLSN}, {flush, &w.FlushLSN}, {replay, &w.ReplayLSN}} {
			if *p.dst, err = optLSN(p.s); err != nil {
				return nil, err
			}
		}
		w.WriteLag, w.FlushLag, w.ReplayLag = micros(wlag), micros(flag), micros(rlag)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pg: reading pg_stat_replication: %w", err)
	}
	return out, nil
}

func micros(v *int64) *time.Duration {
	if v == nil {
		return nil
	}
	d := time.Duration(*v) * time.Microsecond
	return &d
}

// WALReceiverStat is pg_stat_wal_receiver: a replica's WAL receiver.
type WALReceiverStat struct {
	PID int
	// Status is "streaming", "starting", "waiting", "stopping",
	// "restarting" or "stopped".
	Status string
	// ReceiveStartLSN and ReceiveStartTimeline are where the receiver
	// started streaming.
	ReceiveStartLSN      LSN
	ReceiveStartTimeline int
	// WrittenLSN and FlushedLSN are how far received WAL is written and
	// flushed to disk; ReceivedTimeline is the timeline of FlushedLSN.
	WrittenLSN, FlushedLSN LSN
	ReceivedTimeline       int
	// LastMsgSendTime and LastMsgReceiptTime are the upstream's last
	// message's send and receipt times.
	LastMsgSendTime, LastMsgReceiptTime *time.Time
	// LatestEndLSN and LatestEndTime are the upstream's last reported WAL
	// position and when it was reported.
	LatestEndLSN  LSN
	LatestEndTime *time.Time
	// SlotName is the slot the receiver streams from ("" when none).
	SlotName   string
	SenderHost string
	SenderPort int
}

const walReceiverQuery = `
SELECT pid, COALESCE(status, ''), receive_start_lsn::text, COALESCE(receive_start_tli, 0),
       written_lsn::text, flushed_lsn::text, COALESCE(received_tli, 0),
       last_msg_send_time, last_msg_receipt_time, latest_end_lsn::text, latest_end_time,
       COALESCE(slot_name, ''), COALESCE(sender_host, ''), COALESCE(sender_port, 0)
  FROM pg_catalog.pg_stat_wal_receiver
 WHERE pid IS NOT NULL`

// GetWALReceiver returns the server's WAL receiver, nil when it has none (a
// primary, or a replica that is not streaming).
func GetWALReceiver(ctx context.Context, q Queryer) (*WALReceiverStat, error) {
	var (
		w                               WALReceiverStat
		pid, startTLI, tli, port        int32
		start, written, flushed, latest *string
	)
	err := q.QueryRow(ctx, walReceiverQuery).Scan(&pid, &w.Status, &start, &startTLI, &written, &flushed, &tli,
		&w.LastMsgSendTime, &w.LastMsgReceiptTime, &latest, &w.LatestEndTime, &w.SlotName, &w.SenderHost, &port)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pg: reading pg_stat_wal_receiver: %w", err)
	}
	w.PID, w.ReceiveStartTimeline, w.ReceivedTimeline, w.SenderPort = int(pid), int(startTLI), int(tli), int(port)
	for _, p := range []struct {
		s   *string
		dst *LSN
	}{{start, &w.ReceiveStartLSN}, {written, &w.WrittenLSN}, {flushed, &w.FlushedLSN}, {latest, &w.LatestEndLSN}} {
		if *p.dst, err = optLSN(p.s); err != nil {
			return nil, err
		}
	}
	return &w, nil
}

// Positions are the server's WAL positions at one instant.
type Positions struct {
	InRecovery bool
	// CurrentLSN and FlushLSN are a primary's write and flush positions.
	CurrentLSN, FlushLSN LSN
	// ReceiveLSN and ReplayLSN are a replica's received and replayed
	// positions.
	ReceiveLSN, ReplayLSN LSN
	// ReplayTimestamp is the commit time of the last replayed transaction
	// (replica), nil when none.
	ReplayTimestamp *time.Time
	// ReplayPaused is pg_is_wal_replay_paused() (replica).
	ReplayPaused bool
	// Now is the server's clock (statement time).
	Now time.Time
}

const positionsQuery = `
SELECT r,
       CASE WHEN r THEN NULL ELSE pg_catalog.pg_current_wal_lsn()::text END,
       CASE WHEN r THEN NULL ELSE pg_catalog.pg_current_wal_flush_lsn()::text END,
       pg_catalog.pg_last_wal_receive_lsn()::text, pg_catalog.pg_last_wal_replay_lsn()::text,
       CASE WHEN r THEN pg_catalog.pg_last_xact_replay_timestamp() END,
       CASE WHEN r THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END,
       pg_catalog.statement_timestamp()
  FROM pg_catalog.pg_is_in_recovery() AS r`

// GetPositions returns the server's WAL positions.
func GetPositions(ctx context.Context, q Queryer) (Positions, error) {
	var (
		p                        Positions
		cur, flush, recv, replay *string
	)
	if err := q.QueryRow(ctx, positionsQuery).Scan(&p.InRecovery, &cur, &flush, &recv, &replay,
		&p.ReplayTimestamp, &p.ReplayPaused, &p.Now); err != nil {
		return p, fmt.Errorf("pg: reading WAL positions: %w", err)
	}
	var err error
	for _, x := range []struct {
		s   *string
		dst *LSN
	}{{cur, &p.CurrentLSN}, {flush, &p.FlushLSN}, {recv, &p.ReceiveLSN}, {replay, &p.ReplayLSN}} {
		if *x.dst, err = optLSN(x.s); err != nil {
			return p, err
		}
	}
	return p, nil
}

// SetStandbySlot sets the primary_slot_name ConfigureStandby writes when
// its Upstream names no slot: normally SlotName(Config.Name) while the
// cluster uses replication slots, "" (the default) for none. It applies to
// later ConfigureStandby calls; it does not rewrite the current settings.
func (i *Instance) SetStandbySlot(name string) error {
	if name != "" && !validSlot(name) {
		return &ConfigError{Field: "standby slot", Problem: fmt.Sprintf("%q is not a valid slot name ([a-z0-9_]{1,63}); use SlotName(member)", name)}
	}
	i.mu.Lock()
	i.slot = name
	i.mu.Unlock()
	return nil
}

// StandbySlot returns the slot name set with SetStandbySlot.
func (i *Instance) StandbySlot() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.slot
}

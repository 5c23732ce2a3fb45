package history

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultTable is the table the workload writes to when Workload.Table is
// empty.
const DefaultTable = "pgha_history"

// Workload describes the clients that write and read a set table on a
// cluster while faults happen (RELIABILITY.md section 4). Each write inserts
// one row with a unique id in an explicit transaction; the server stamps
// the row with its port, timeline and WAL position in the INSERT itself and
// returns them. Reads fetch the whole set together with pg_is_in_recovery(),
// so a read is a primary read only if the server said, in the same
// statement, that it was not in recovery.
type Workload struct {
	// ConnString reaches the primary: writers and primary readers connect
	// with it, and reconnect with it after every error (a multi-host
	// string with target_session_attrs=read-write follows a failover, as a
	// client would; so does a router's address). Required.
	ConnString string
	// ReplicaConnString, when set, is used by the replica readers (for
	// example target_session_attrs=standby).
	ReplicaConnString string
	// Table is the set table; default DefaultTable. Setup creates it.
	Table string
	// Nodes maps a server port to its node name, to name the servers in
	// stamps; unknown ports are named "port N".
	Nodes map[int]string
	// Writers is the number of writing clients (default 4), Readers the
	// number of primary readers (default 1), ReplicaReaders the number of
	// replica readers (default 1 when ReplicaConnString is set).
	Writers, Readers, ReplicaReaders int
	// Interval is each client's pause between two operations (default
	// 20 ms); OpTimeout bounds each operation and each connection attempt
	// (default 2 s).
	Interval, OpTimeout time.Duration
}

func (w *Workload) defaults() error {
	if w.ConnString == "" {
		return errors.New("history: Workload.ConnString is required")
	}
	if w.Table == "" {
		w.Table = DefaultTable
	}
	if !validIdent(w.Table) {
		return fmt.Errorf("history: table name %q: use letters, digits and _", w.Table)
	}
	if w.Writers == 0 {
		w.Writers = 4
	}
	if w.Readers == 0 {
		w.Readers = 1
	}
	if w.ReplicaReaders == 0 && w.ReplicaConnString != "" {
		w.ReplicaReaders = 1
	}
	if w.Writers < 0 || w.Readers < 0 || w.ReplicaReaders < 0 {
		return errors.New("history: negative client count")
	}
	if w.Interval <= 0 {
		w.Interval = 20 * time.Millisecond
	}
	if w.OpTimeout <= 0 {
		w.OpTimeout = 2 * time.Second
	}
	for _, cs := range []string{w.ConnString, w.ReplicaConnString} {
		if cs == "" {
			continue
		}
		if _, err := pgx.ParseConfig(cs); err != nil {
			return fmt.Errorf("history: connection string: %w", err)
		}
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// Setup creates the table on the primary (the ConnString server), if it
// does not exist, and fails if it holds rows (a table left by another run).
func (w Workload) Setup(ctx context.Context) error {
	if err := w.defaults(); err != nil {
		return err
	}
	cn, err := pgx.Connect(ctx, w.ConnString)
	if err != nil {
		return fmt.Errorf("history: setup: %w", err)
	}
	defer cn.Close(context.Background())
	_, err = cn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+w.Table+
		" (id bigint PRIMARY KEY, process int NOT NULL, node text, port int NOT NULL, timeline bigint NOT NULL, lsn pg_lsn NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	if err != nil {
		return fmt.Errorf("history: setup: %w", err)
	}
	// A table left by an earlier run would make ids (from 1 again) collide
	// and its rows look like unexpected values.
	var used bool
	if err := cn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+w.Table+")").Scan(&used); err != nil {
		return fmt.Errorf("history: setup: %w", err)
	}
	if used {
		return fmt.Errorf("history: setup: table %s already holds rows: each run needs a table of its own", w.Table)
	}
	return nil
}

// Running is a started workload.
type Running struct {
	w      Workload
	h      *History
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nextID atomic.Int64
}

// Start starts the workload's clients, recording into h, and returns at
// once. Stop ends them.
func (w Workload) Start(h *History) (*Running, error) {
	if err := w.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{w: w, h: h, cancel: cancel}
	for range w.Writers {
		r.wg.Go(func() { r.client(ctx, w.ConnString, true) })
	}
	for range w.Readers {
		r.wg.Go(func() { r.client(ctx, w.ConnString, false) })
	}
	for range w.ReplicaReaders {
		r.wg.Go(func() { r.client(ctx, w.ReplicaConnString, false) })
	}
	return r, nil
}

// Stop ends every client and waits for them; an operation in flight is
// cancelled and recorded by its outcome (a write cancelled during COMMIT is
// indeterminate).
func (r *Running) Stop() {
	r.cancel()
	r.wg.Wait()
}

// syncCancelled is the text of the warning PostgreSQL sends with a COMMIT
// whose wait for synchronous replication was cancelled: the transaction is
// committed locally but maybe not replicated.
const syncCancelled = "wait for synchronous replication"

type conn struct {
	cn     *pgx.Conn
	notice atomic.Pointer[string] // last notice received during a COMMIT
}

func (r *Running) connect(ctx context.Context, connString string) (*conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	c := &conn{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, syncCancelled) {
			m := n.Message
			c.notice.Store(&m)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.w.OpTimeout)
	defer cancel()
	if c.cn, err = pgx.ConnectConfig(cctx, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *conn) close() {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = c.cn.Close(ctx)
}

// client runs one client's loop: a writer or a reader.
func (r *Running) client(ctx context.Context, connString string, writer bool) {
	var c *conn
	defer func() { c.close() }()
	process := r.h.NewProcess()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(r.w.Interval)
		if c == nil {
			var err error
			if c, err = r.connect(ctx, connString); err != nil {
				c = nil
				if writer && ctx.Err() == nil {
					// Recorded so that the history shows the client tried;
					// a write whose connection failed certainly did nothing.
					now := r.h.Since()
					r.h.Add(Op{Process: process, Kind: Write, Value: r.nextID.Add(1), Invoke: now, Complete: now, Result: Fail, Err: "connect: " + err.Error()})
				}
				continue
			}
		}
		var res Result
		if writer {
			res = r.write(ctx, c, process)
		} else {
			res = r.read(ctx, c, process)
		}
		if res != OK {
			c.close()
			c = nil
		}
		if res == Info {
			process = r.h.NewProcess()
		}
	}
}

func (r *Running) write(ctx context.Context, c *conn, process int) Result {
	id := r.nextID.Add(1)
	op := Op{Process: process, Kind: Write, Value: id, Invoke: r.h.Since()}
	octx, cancel := context.WithTimeout(ctx, r.w.OpTimeout)
	defer cancel()
	op.Result, op.Stamp, op.Err = r.insert(octx, c, id, process)
	op.Complete = r.h.Since()
	if ctx.Err() != nil && op.Result == Fail {
		return Fail // stopped before the write was sent: not an operation
	}
	r.h.Add(op)
	return op.Result
}

// insert runs BEGIN; INSERT ... RETURNING stamps; COMMIT and classifies the
// outcome. Nothing before COMMIT can commit the transaction, so every error
// before it is Fail; an error during COMMIT is Info unless the server
// reported a rollback; a COMMIT carrying the cancelled-sync-wait warning is
// Info.
func (r *Running) insert(ctx context.Context, c *conn, id int64, process int) (Result, Stamp, string) {
	var st Stamp
	tx, err := c.cn.Begin(ctx)
	if err != nil {
		return Fail, st, "begin: " + err.Error()
	}
	var lsn string
	err = tx.QueryRow(ctx, "INSERT INTO "+r.w.Table+" (id, process, node, port, timeline, lsn) VALUES ($1, $2, "+
		"current_setting('cluster_name'), inet_server_port(), "+
		"('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint, pg_current_wal_lsn()) "+
		"RETURNING port, timeline, lsn::text", id, process).Scan(&st.Port, &st.Timeline, &lsn)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = tx.Rollback(rctx)
		cancel()
		return Fail, Stamp{}, "insert: " + err.Error()
	}
	st.Node = r.nodeName(st.Port)
	st.LSN, _ = ParseLSN(lsn)
	c.notice.Store(nil)
	err = tx.Commit(ctx)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrTxCommitRollback) || (errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "40")) {
			return Fail, st, "commit rolled back: " + err.Error()
		}
		return Info, st, "commit: " + err.Error()
	}
	if n := c.notice.Load(); n != nil {
		return Info, st, "commit: warning: " + *n
	}
	return OK, st, ""
}

func (r *Running) nodeName(port int) string {
	if n, ok := r.w.Nodes[port]; ok {
		return n
	}
	return "port " + strconv.Itoa(port)
}

func (r *Running) read(ctx context.Context, c *conn, process int) Result {
	op := Op{Process: process, Kind: PrimaryRead, Invoke: r.h.Since()}
	octx, cancel := context.WithTimeout(ctx, r.w.OpTimeout)
	defer cancel()
	var inRecovery bool
	err := c.cn.QueryRow(octx, "SELECT pg_is_in_recovery(), inet_server_port(), COALESCE(array_agg(id ORDER BY id), '{}') FROM "+r.w.Table).
		Scan(&inRecovery, &op.Stamp.Port, &op.Values)
	op.Complete = r.h.Since()
	if err != nil {
		if ctx.Err() != nil {
			return Fail
		}
		op.Result, op.Err, op.Values = Fail, err.Error(), nil
		r.h.Add(op)
		return Fail
	}
	if inRecovery {
		op.Kind = ReplicaRead
	}
	op.Stamp.Node = r.nodeName(op.Stamp.Port)
	op.Result = OK
	r.h.Add(op)
	return OK
}

// ParseLSN parses a PostgreSQL LSN (X/X).
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("history: bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("history: bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("history: bad LSN %q", s)
	}
	return h<<32 | l, nil
}

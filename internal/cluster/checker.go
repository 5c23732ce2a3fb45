package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CheckInterval is the pause between two rounds of the split-brain checker.
const CheckInterval = 20 * time.Millisecond

// checkTable is the table the checker writes to.
const checkTable = "pgha_splitbrain_check"

// Write is one write the checker got acknowledged.
type Write struct {
	// Node is the node written to; Timeline the timeline the row was
	// written on (from the primary's current WAL file).
	Node     string
	Timeline int64
	// Round is the checker round.
	Round int
	// Invoke and Complete bound the write, as Cluster.Since durations:
	// the INSERT was sent after Invoke and acknowledged before Complete.
	Invoke, Complete time.Duration
}

// Report is what a split-brain checker saw.
type Report struct {
	// Rounds is the number of polling rounds; Writes the acknowledged
	// writes, all of them.
	Rounds int
	Writes []Write
	// Violations lists every witnessed instant with two writable
	// primaries, one line each (empty when there was none).
	Violations []string
}

// String summarises the report.
func (r Report) String() string {
	per := map[string]int{}
	for _, w := range r.Writes {
		per[fmt.Sprintf("%s/tl%d", w.Node, w.Timeline)]++
	}
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, per[k])
	}
	s := fmt.Sprintf("%d rounds, %d acknowledged writes (%s), %d violations", r.Rounds, len(r.Writes),
		strings.Join(parts, " "), len(r.Violations))
	for _, v := range r.Violations {
		s += "\n  " + v
	}
	return s
}

// Checker polls every node of a cluster in rounds: each round asks every
// node's Postgres pg_is_in_recovery() in parallel and writes a row through
// each one that says it is a primary. It records two kinds of split brain,
// each a witnessed instant with two writable primaries:
//
//   - in one round, two nodes both acknowledged a write (the round's
//     parallel probes take a few milliseconds);
//   - across rounds, from acknowledged writes alone (RELIABILITY.md section
//     4, check 4): two nodes acknowledged writes on the same timeline (two
//     independent promotions), or a write on an older timeline was sent
//     after a write on a newer timeline had been acknowledged, so the old
//     primary still accepted writes after the new one had.
//
// Role labels (the DCS, the REST API) play no part: only acknowledged
// writes count.
type Checker struct {
	c    *Cluster
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	rounds     int
	writes     []Write
	violations []string
	conns      map[string]*pgx.Conn // owned by the polling goroutine
}

// StartChecker starts a split-brain checker; Stop ends it and returns its
// report.
func (c *Cluster) StartChecker() *Checker {
	ch := &Checker{c: c, stop: make(chan struct{}), done: make(chan struct{}), conns: map[string]*pgx.Conn{}}
	go ch.run()
	return ch
}

func (ch *Checker) run() {
	defer close(ch.done)
	defer func() {
		for _, cn := range ch.conns {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = cn.Close(ctx)
			cancel()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for round := 1; ; round++ {
		select {
		case <-ch.stop:
			return
		case <-t.C:
		}
		ch.round(round)
		t.Reset(CheckInterval)
	}
}

// round probes every node once, in parallel.
func (ch *Checker) round(round int) {
	nodes := ch.c.nodes
	conns := make([]*pgx.Conn, len(nodes))
	for i, n := range nodes {
		conns[i] = ch.conns[n.Name]
	}
	results := make([]*Write, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			results[i], conns[i] = ch.probe(n, conns[i], round)
		})
	}
	wg.Wait()
	var acked []*Write
	for i, n := range nodes {
		if conns[i] == nil {
			delete(ch.conns, n.Name)
		} else {
			ch.conns[n.Name] = conns[i]
		}
		if results[i] != nil {
			acked = append(acked, results[i])
		}
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.rounds = round
	for _, w := range acked {
		ch.writes = append(ch.writes, *w)
	}
	if len(acked) > 1 {
		var parts []string
		for _, w := range acked {
			parts = append(parts, fmt.Sprintf("%s (timeline %d, write %s..%s)", w.Node, w.Timeline, w.Invoke, w.Complete))
		}
		ch.violations = append(ch.violations, fmt.Sprintf("round %d: %d nodes acknowledged writes in the same round: %s",
			round, len(acked), strings.Join(parts, ", ")))
	}
}

// probe asks one node whether it is a primary and, if so, writes through
// it. It returns the acknowledged write (or nil) and the connection to keep
// (nil after an error).
func (ch *Checker) probe(n *Node, cn *pgx.Conn, round int) (*Write, *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if cn == nil {
		var err error
		if cn, err = n.Connect(ctx); err != nil {
			return nil, nil
		}
	}
	fail := func() (*Write, *pgx.Conn) {
		cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = cn.Close(cctx)
		ccancel()
		return nil, nil
	}
	var inRecovery bool
	if err := cn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fail()
	}
	if inRecovery {
		return nil, cn
	}
	const insert = "INSERT INTO " + checkTable + " (node) VALUES ($1) RETURNING " +
		"('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint"
	invoke := ch.c.Since()
	var tl int64
	err := cn.QueryRow(ctx, insert, n.Name).Scan(&tl)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: the first write
		_, err = cn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+checkTable+
			" (id bigserial PRIMARY KEY, node text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
		if err == nil {
			invoke = ch.c.Since()
			err = cn.QueryRow(ctx, insert, n.Name).Scan(&tl)
		}
	}
	complete := ch.c.Since()
	if err != nil {
		if errors.As(err, &pgErr) {
			return nil, cn // the server answered (read-only, ...): keep the connection
		}
		return fail()
	}
	return &Write{Node: n.Name, Timeline: tl, Round: round, Invoke: invoke, Complete: complete}, cn
}

// Stop ends the checker, waits for its last round and returns the report:
// the per-round violations and those found across the whole history of
// acknowledged writes.
func (ch *Checker) Stop() Report {
	select {
	case <-ch.stop:
	default:
		close(ch.stop)
	}
	<-ch.done
	ch.mu.Lock()
	defer ch.mu.Unlock()
	r := Report{Rounds: ch.rounds, Writes: append([]Write(nil), ch.writes...)}
	r.Violations = append(append([]string(nil), ch.violations...), CheckHistory(r.Writes)...)
	return r
}

// CheckHistory checks acknowledged writes for two writable primaries
// (RELIABILITY.md section 4, check 4a and 4b): each timeline must belong to
// one node, and once a newer timeline acknowledged a write, no write sent
// later may be acknowledged on an older timeline. It returns one line per
// violation.
func CheckHistory(writes []Write) []string {
	var out []string
	owner := map[int64]string{}
	firstAck := map[int64]Write{} // per timeline, the write acknowledged first
	for _, w := range writes {
		if o, ok := owner[w.Timeline]; ok && o != w.Node {
			out = append(out, fmt.Sprintf("timeline %d acknowledged writes on two nodes: %s and %s (two promotions)",
				w.Timeline, o, w.Node))
			owner[w.Timeline] = w.Node // report each switch once
		} else if !ok {
			owner[w.Timeline] = w.Node
		}
		if f, ok := firstAck[w.Timeline]; !ok || w.Complete < f.Complete {
			firstAck[w.Timeline] = w
		}
	}
	for _, w := range writes {
		for tl, f := range firstAck {
			if tl > w.Timeline && w.Invoke > f.Complete {
				out = append(out, fmt.Sprintf("%s acknowledged a write on timeline %d sent at %s, after %s had acknowledged one on timeline %d at %s (overlap %s)",
					w.Node, w.Timeline, w.Invoke, f.Node, tl, f.Complete, w.Complete-f.Complete))
			}
		}
	}
	return out
}

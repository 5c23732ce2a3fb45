package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Target is one node for ReadFinal.
type Target struct {
	// Name is the node's name; ConnString reaches that node alone.
	Name       string
	ConnString string
}

const stateQuery = `SELECT pg_is_in_recovery(),
	CASE WHEN pg_is_in_recovery()
		THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
		ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END,
	COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)`

// ReadFinal reads every node's final state, once the faults are healed:
// the primary's table first (from the one node not in recovery; with
// several, each is read as it is), then its WAL position, then each
// replica's table once it replayed that position (bounded by ctx; a replica
// that does not get there, or a node that cannot be read, gets Err). Set
// Final.Leader from the DCS before Check.
func ReadFinal(ctx context.Context, table string, targets []Target) (Final, error) {
	if table == "" {
		table = DefaultTable
	}
	if !validIdent(table) {
		return Final{}, fmt.Errorf("history: table name %q: use letters, digits and _", table)
	}
	if len(targets) == 0 {
		return Final{}, errors.New("history: ReadFinal: no targets")
	}
	states := make([]NodeState, len(targets))
	conns := make([]*pgx.Conn, len(targets))
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				_ = cn.Close(context.Background())
			}
		}
	}()
	var primaries []int
	for i, t := range targets {
		states[i].Name = t.Name
		cn, err := pgx.Connect(ctx, t.ConnString)
		if err != nil {
			states[i].Err = err.Error()
			continue
		}
		conns[i] = cn
		if err := cn.QueryRow(ctx, stateQuery).Scan(&states[i].InRecovery, &states[i].Timeline, &states[i].Streaming); err != nil {
			states[i].Err = err.Error()
			continue
		}
		if !states[i].InRecovery {
			primaries = append(primaries, i)
		}
	}
	var target uint64
	for _, i := range primaries {
		if err := readValues(ctx, conns[i], table, &states[i]); err != nil {
			states[i].Err = err.Error()
			continue
		}
		var lsn string
		if err := conns[i].QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
			states[i].Err = err.Error()
			continue
		}
		l, err := ParseLSN(lsn)
		if err != nil {
			return Final{}, err
		}
		target = max(target, l)
	}
	for i := range states {
		if conns[i] == nil || !states[i].InRecovery || states[i].Err != "" {
			continue
		}
		if err := waitReplay(ctx, conns[i], target); err != nil {
			states[i].Err = err.Error()
			continue
		}
		if err := readValues(ctx, conns[i], table, &states[i]); err != nil {
			states[i].Err = err.Error()
		}
	}
	return Final{Nodes: states}, nil
}

func readValues(ctx context.Context, cn *pgx.Conn, table string, st *NodeState) error {
	return cn.QueryRow(ctx, "SELECT COALESCE(array_agg(id ORDER BY id), '{}') FROM "+table).Scan(&st.Values)
}

func waitReplay(ctx context.Context, cn *pgx.Conn, target uint64) error {
	for {
		var s *string
		if err := cn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&s); err != nil {
			return err
		}
		if s != nil {
			l, err := ParseLSN(*s)
			if err != nil {
				return err
			}
			if l >= target {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay did not reach %s: %w", FormatLSN(target), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

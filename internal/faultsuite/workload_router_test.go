package faultsuite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
	"github.com/pgha/pgha/routing"
)

// wlLeaderSample is the leader key seen at one instant of the history's
// clock.
type wlLeaderSample struct {
	At     time.Duration
	Leader string
}

// TestWorkloadRouter is K1 and K2: a routing.Router (following the leader
// key through the DCS watch) carries writes, read-your-writes reads and bank
// transfers while the primary's node is SIGKILLed (B4) and then while a
// switchover runs (F1), in async mode, where an old primary that still
// accepted writes would show up.
//
// K1 verifies, from the server stamps, that every write the router got
// acknowledged went to a node that held the leader key at some instant
// within 100 ms of the write (polled every 20 ms), that after the
// switchover no write reached the old primary, that a read given the
// write's LSN token sees the write, and the usual history checks. K2
// verifies that every consistent read of the bank (one snapshot, on the
// primary or a replica) sees the conserved total, and that every node has
// it at the end.
func TestWorkloadRouter(t *testing.T) {
	wlRequireSlow(t)
	e := wlNewEnv(t, "async")
	s := e.begin(t, "K1")

	router, err := routing.New(wlWithin(t, 30*time.Second), routing.Config{
		Source:     routing.FromDCS(e.c.Store()),
		ConnString: fmt.Sprintf("user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 application_name=pgha-faultsuite-router", cluster.SuperuserPassword),
	})
	require.NoError(t, err)
	routerClosed := false
	closeRouter := func() {
		if !routerClosed {
			routerClosed = true
			router.Close()
		}
	}
	t.Cleanup(closeRouter)

	// Leader samples.
	var mu sync.Mutex
	var samples []wlLeaderSample
	s.extraWG.Go(func() {
		for s.extraCtx.Err() == nil {
			ctx, cancel := context.WithTimeout(s.extraCtx, time.Second)
			l, err := e.c.Leader(ctx)
			cancel()
			if err == nil {
				mu.Lock()
				samples = append(samples, wlLeaderSample{At: s.h.Since(), Leader: l})
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// K1 clients: write through the router, then read with the write's
	// token.
	var ryw struct {
		sync.Mutex
		checked, missing int
		examples         []string
	}
	for range 2 {
		s.extraWG.Go(func() {
			ctx := s.extraCtx
			process := s.h.NewProcess()
			for ctx.Err() == nil {
				op, token, err := routerWriteOp(ctx, router, s.h, s.w.Table, e.names, process, s.extraID.Add(1), 5*time.Second)
				if ctx.Err() != nil && op.Result != history.OK {
					if op.Result == history.Info {
						// Cut short by the end of the test: it may have
						// committed, so the checker must know of it.
						s.h.Add(op)
					}
					return
				}
				s.h.Add(op)
				if op.Result == history.Info {
					process = s.h.NewProcess()
				}
				if op.Result != history.OK {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				rop := history.Op{Process: process, Kind: history.ReplicaRead, Invoke: s.h.Since()}
				octx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var inRecovery bool
				err = router.Read(octx, routing.ReadOptions{After: token}, func(tx pgx.Tx) error {
					return tx.QueryRow(octx, "SELECT pg_is_in_recovery(), inet_server_port(), COALESCE(array_agg(id ORDER BY id), '{}') FROM "+s.w.Table).
						Scan(&inRecovery, &rop.Stamp.Port, &rop.Values)
				})
				cancel()
				rop.Complete = s.h.Since()
				if err != nil {
					continue // a failed read says nothing
				}
				if !inRecovery {
					rop.Kind = history.PrimaryRead
				}
				rop.Stamp.Node = e.names[rop.Stamp.Port]
				rop.Result = history.OK
				s.h.Add(rop)
				ryw.Lock()
				ryw.checked++
				if _, found := slices.BinarySearch(rop.Values, op.Value); !found {
					ryw.missing++
					if len(ryw.examples) < 5 {
						ryw.examples = append(ryw.examples, fmt.Sprintf("id %d written on %s at %X, read on %s with token %s did not see it", op.Value, op.Stamp.Node, op.Stamp.LSN, rop.Stamp.Node, token))
					}
				}
				ryw.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	// K2: the bank.
	const accounts, initial = 8, 100
	bank := s.w.Table + "_bank"
	p := s.current(t)
	require.NoError(t, p.Exec(wlWithin(t, 10*time.Second), "CREATE TABLE "+bank+" (id int PRIMARY KEY, balance int NOT NULL)"))
	require.NoError(t, p.Exec(wlWithin(t, 10*time.Second), fmt.Sprintf("INSERT INTO %s SELECT g, %d FROM generate_series(1, %d) g", bank, initial, accounts)))
	var transfers, transferFails, transferAmbiguous atomic.Int64
	var bankMu sync.Mutex
	var bankReads, bankBad int
	var bankExamples []string
	for i := range 2 {
		s.extraWG.Go(func() {
			ctx := s.extraCtx
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for ctx.Err() == nil {
				from, to := rng.IntN(accounts)+1, rng.IntN(accounts)+1
				if from == to {
					continue
				}
				amount := rng.IntN(10) + 1
				octx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := router.Write(octx, func(tx pgx.Tx) error {
					if _, err := tx.Exec(octx, "UPDATE "+bank+" SET balance = balance - $2 WHERE id = $1", from, amount); err != nil {
						return err
					}
					if _, err := tx.Exec(octx, "SELECT pg_sleep(0.01)"); err != nil {
						return err
					}
					_, err := tx.Exec(octx, "UPDATE "+bank+" SET balance = balance + $2 WHERE id = $1", to, amount)
					return err
				})
				cancel()
				switch {
				case err == nil:
					transfers.Add(1)
				case errors.Is(err, routing.ErrAmbiguousCommit):
					transferAmbiguous.Add(1)
				default:
					transferFails.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	s.extraWG.Go(func() {
		ctx := s.extraCtx
		for n := 0; ctx.Err() == nil; n++ {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var sum, count int64
			var port int
			var inRecovery bool
			q := "SELECT COALESCE(sum(balance), 0), count(*), inet_server_port(), pg_is_in_recovery() FROM " + bank
			var err error
			if n%2 == 0 {
				err = router.Read(octx, routing.ReadOptions{}, func(tx pgx.Tx) error {
					return tx.QueryRow(octx, q).Scan(&sum, &count, &port, &inRecovery)
				})
			} else {
				// On the primary, in a write transaction's snapshot.
				_, err = router.Write(octx, func(tx pgx.Tx) error {
					return tx.QueryRow(octx, q).Scan(&sum, &count, &port, &inRecovery)
				})
			}
			cancel()
			if err == nil {
				bankMu.Lock()
				bankReads++
				if sum != accounts*initial || count != accounts {
					bankBad++
					if len(bankExamples) < 5 {
						bankExamples = append(bankExamples, fmt.Sprintf("%s (recovery %v): sum %d over %d accounts", e.names[port], inRecovery, sum, count))
					}
				}
				bankMu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	require.NoError(t, s.waitOK(wlWithin(t, time.Minute), p.Name, s.h.Since(), 10))
	b4 := wlFaultB4(t, s)
	_, err = e.c.WaitStable(wlWithin(t, 3*time.Minute))
	require.NoError(t, err)
	time.Sleep(2 * time.Second) // load on the new primary before the switchover
	f1 := wlFaultF1(t, s)
	o := s.finish(wlExpect{TwoWriters: 0})
	closeRouter()

	// K1: writes only reached the holder.
	mu.Lock()
	ls := slices.Clone(samples)
	mu.Unlock()
	var routed, notHolder, toOldAfterSwitch int
	var notHolderEx []string
	for _, op := range o.ops {
		if op.Kind != history.Write || op.Result != history.OK || op.Value <= 1<<40 {
			continue
		}
		routed++
		held := false
		for _, sm := range ls {
			if sm.At >= op.Invoke-100*time.Millisecond && sm.At <= op.Complete+100*time.Millisecond && sm.Leader == op.Stamp.Node {
				held = true
				break
			}
		}
		if !held {
			notHolder++
			if len(notHolderEx) < 5 {
				notHolderEx = append(notHolderEx, fmt.Sprintf("op %d (id %d) acknowledged by %s between %s and %s", op.ID, op.Value, op.Stamp.Node, op.Invoke, op.Complete))
			}
		}
		if op.Stamp.Node == f1.Old.Name && op.Invoke > f1.At+time.Duration(f1.Measured["first_new_ack"]) {
			toOldAfterSwitch++
		}
	}
	require.NotZero(t, routed, "writes through the router")
	require.Zero(t, notHolder, "router writes acknowledged by a node that did not hold the leader key: %v", notHolderEx)
	require.Zero(t, toOldAfterSwitch, "router writes acknowledged by the old primary after the switchover")
	ryw.Lock()
	require.Zero(t, ryw.missing, "reads with the write's token missed the write: %v", ryw.examples)
	require.NotZero(t, ryw.checked)
	t.Logf("K1 async: injected %s, then %s, with 2 router writers (each write followed by a read with its LSN token) next to the workload; "+
		"verified: %d router writes acknowledged, every one by the node holding the leader key (%d leader samples), none by the old primary after the switchover, "+
		"%d read-your-writes reads all saw their write; %s",
		b4.Desc, f1.Desc, routed, len(ls), ryw.checked, o.summary())
	ryw.Unlock()

	// K2: the bank total on every node.
	for _, n := range e.c.Nodes() {
		got, err := n.QueryInt(wlWithin(t, 10*time.Second), "SELECT sum(balance) FROM "+bank)
		require.NoError(t, err)
		require.Equal(t, int64(accounts*initial), got, "bank total on %s", n.Name)
	}
	bankMu.Lock()
	defer bankMu.Unlock()
	require.NotZero(t, bankReads)
	require.Zero(t, bankBad, "consistent bank reads with a wrong total: %v", bankExamples)
	require.NotZero(t, transfers.Load())
	t.Logf("K2 async: injected the same B4 and F1 under 2 router clients running two-statement bank transfers; verified: %d transfers acknowledged "+
		"(%d failed, %d ambiguous), %d consistent reads (replica and primary) all saw the total %d over %d accounts, and every node holds it at the end",
		transfers.Load(), transferFails.Load(), transferAmbiguous.Load(), bankReads, accounts*initial, accounts)
}

// routerWriteOp inserts id into table through the router (one Write,
// bounded by timeout) and returns the history op it makes, with the
// server's stamp when acknowledged: an ambiguous commit or a timeout is
// indeterminate, other errors a failure. The caller adds it to h.
func routerWriteOp(ctx context.Context, router *routing.Router, h *history.History, table string, names map[int]string,
	process int, id int64, timeout time.Duration) (history.Op, routing.LSN, error) {
	op := history.Op{Process: process, Kind: history.Write, Value: id, Invoke: h.Since()}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lsn string
	token, err := router.Write(octx, func(tx pgx.Tx) error {
		return tx.QueryRow(octx, fmt.Sprintf(wlInsert, table), id, process).Scan(&op.Stamp.Port, &op.Stamp.Timeline, &lsn)
	})
	op.Complete = h.Since()
	switch {
	case err == nil:
		op.Result = history.OK
		op.Stamp.Node = names[op.Stamp.Port]
		op.Stamp.LSN, _ = history.ParseLSN(lsn)
	case errors.Is(err, routing.ErrAmbiguousCommit), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		op.Result, op.Err, op.Stamp = history.Info, err.Error(), history.Stamp{}
	default:
		op.Result, op.Err, op.Stamp = history.Fail, err.Error(), history.Stamp{}
	}
	return op, token, err
}

package routing

import (
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
)

type probeTarget struct{ name, addr string }

// probeSQL reads, in one round trip, whether the server is in recovery, its
// current (primary) or replay (replica) position, its WAL receiver state and
// its timeline. pg_stat_wal_receiver hides status and received_tli from
// roles without pg_read_all_stats; a visible receiver pid then counts as
// streaming and the timeline stays unknown.
const probeSQL = `SELECT r,
  (CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,
  CASE WHEN r THEN (SELECT coalesce(status, CASE WHEN pid IS NOT NULL THEN 'streaming' END) FROM pg_stat_wal_receiver) END,
  CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver)
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
FROM pg_is_in_recovery() AS r`

// setTargets hands the prober the nodes to probe, waking it when the set
// changed.
func (r *Router) setTargets(t *Topology) {
	var ts []probeTarget
	for _, n := range t.Nodes {
		if n.Addr != "" {
			ts = append(ts, probeTarget{name: n.Name, addr: n.Addr})
		}
	}
	if slices.Equal(ts, r.m.targets) {
		return
	}
	r.m.targets = ts
	r.targets.Store(&ts)
	poke(r.probeWake)
}

type probeConn struct {
	addr string
	conn *pgx.Conn
}

// probeLoop probes every target each ProbeInterval (at once when the
// targets change), in parallel, over one connection per node that it keeps
// open.
func (r *Router) probeLoop() {
	defer r.loops.Done()
	conns := map[string]*probeConn{}
	defer func() {
		for _, pc := range conns {
			r.closeProbeConn(pc)
		}
	}()
	timer := r.clk.NewTimer(r.cfg.ProbeInterval)
	defer timer.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C():
		case <-r.probeWake:
			timer.Stop()
		}
		var targets []probeTarget
		if p := r.targets.Load(); p != nil {
			targets = *p
		}
		names := map[string]bool{}
		for _, t := range targets {
			names[t.name] = true
			if pc := conns[t.name]; pc != nil && pc.addr != t.addr {
				r.closeProbeConn(pc)
				delete(conns, t.name)
			}
			if conns[t.name] == nil {
				conns[t.name] = &probeConn{addr: t.addr}
			}
		}
		for name, pc := range conns {
			if !names[name] {
				r.closeProbeConn(pc)
				delete(conns, name)
			}
		}
		results := make([]probeResult, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			pc := conns[t.name]
			wg.Go(func() { results[i] = r.probe(pc) })
		}
		wg.Wait()
		if r.ctx.Err() != nil {
			return
		}
		r.in.mu.Lock()
		for name := range r.in.probes {
			if !names[name] {
				delete(r.in.probes, name)
			}
		}
		for i, t := range targets {
			res := results[i]
			if prev, ok := r.in.probes[t.name]; ok && res.err != nil {
				if prev.err == nil {
					res.lastOK = &prev
				} else {
					res.lastOK = prev.lastOK
				}
			}
			r.in.probes[t.name] = res
		}
		r.in.rounds++
		r.in.mu.Unlock()
		poke(r.wake)
		timer.Reset(r.cfg.ProbeInterval)
	}
}

func (r *Router) closeProbeConn(pc *probeConn) {
	if pc.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ProbeTimeout)
	defer cancel()
	_ = pc.conn.Close(ctx)
	pc.conn = nil
}

// probe queries one node, connecting first if needed.
func (r *Router) probe(pc *probeConn) probeResult {
	res := probeResult{addr: pc.addr}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.ProbeTimeout)
	defer cancel()
	if pc.conn == nil || pc.conn.IsClosed() {
		cc, err := nodeConnConfig(r.base.ConnConfig, pc.addr)
		if err != nil {
			res.err, res.at = err, r.clk.Now()
			return res
		}
		cc.ValidateConnect = nil
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		cc.RuntimeParams["application_name"] = "pgha-routing-probe"
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			res.err, res.at = err, r.clk.Now()
			return res
		}
		pc.conn = conn
	}
	var (
		inRecovery bool
		lsn        *string
		walRecv    *string
		timeline   *int64
	)
	start := r.clk.Now()
	err := pc.conn.QueryRow(ctx, probeSQL).Scan(&inRecovery, &lsn, &walRecv, &timeline)
	res.at = r.clk.Now()
	res.latency = res.at.Sub(start)
	if err != nil {
		res.err = err
		r.closeProbeConn(pc)
		return res
	}
	res.inRecovery = inRecovery
	if lsn != nil {
		if v, err := ParseLSN(*lsn); err == nil {
			res.lsn = v
		}
	}
	if walRecv != nil {
		res.walRecv = *walRecv
	}
	if timeline != nil {
		res.timeline = *timeline
	}
	if r.log.IsTrace() {
		r.log.Trace("probed", logMember, pc.addr, "in_recovery", inRecovery, logLSN, res.lsn.String(),
			logTimeline, strconv.FormatInt(res.timeline, 10), "latency", res.latency)
	}
	return res
}

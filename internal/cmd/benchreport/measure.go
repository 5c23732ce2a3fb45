package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/routing"
)

// writeInterval is the pause between two write attempts of one writer.
const writeInterval = 10 * time.Millisecond

const insertSQL = "INSERT INTO benchreport (src) VALUES ($1) RETURNING inet_server_port(), pg_postmaster_start_time()"

// ack is one acknowledged write.
type ack struct {
	src     string // "node:<name>", "haproxy" or "router"
	at      time.Time
	port    int       // the server that took it
	pmStart time.Time // its postmaster's start time
}

// recorder collects the writers' acknowledgements and failures.
type recorder struct {
	mu    sync.Mutex
	acks  []ack
	fails map[string][]time.Time
	wake  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{fails: map[string][]time.Time{}, wake: make(chan struct{})}
}

func (r *recorder) ok(a ack) {
	r.mu.Lock()
	r.acks = append(r.acks, a)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) fail(src string, at time.Time) {
	r.mu.Lock()
	r.fails[src] = append(r.fails[src], at)
	r.mu.Unlock()
}

// first waits for the earliest acknowledgement matching pred.
func (r *recorder) first(ctx context.Context, what string, pred func(a ack) bool) (ack, error) {
	for {
		r.mu.Lock()
		var best ack
		found := false
		for _, a := range r.acks {
			if pred(a) && (!found || a.at.Before(best.at)) {
				best, found = a, true
			}
		}
		wake := r.wake
		r.mu.Unlock()
		if found {
			return best, nil
		}
		select {
		case <-ctx.Done():
			return ack{}, fmt.Errorf("no %s: %w", what, ctx.Err())
		case <-wake:
		}
	}
}

// last returns the latest acknowledgement matching pred.
func (r *recorder) last(pred func(a ack) bool) (ack, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best ack
	found := false
	for _, a := range r.acks {
		if pred(a) && (!found || a.at.After(best.at)) {
			best, found = a, true
		}
	}
	return best, found
}

// failsBetween counts src's failed writes in [from, to].
func (r *recorder) failsBetween(src string, from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.fails[src] {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}

// writers write every writeInterval through every node, through HAProxy
// and through the router.
type writers struct {
	rec    *recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startWriters(s system, haproxyPort int, router *routing.Router) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{rec: newRecorder(), cancel: cancel}
	for _, n := range s.nodes() {
		w.wg.Go(func() { w.connLoop(ctx, "node:"+n.name, connString(n.pgPort)) })
	}
	if haproxyPort > 0 {
		w.wg.Go(func() { w.connLoop(ctx, "haproxy", connString(haproxyPort)) })
	}
	if router != nil {
		w.wg.Go(func() { w.routerLoop(ctx, router) })
	}
	return w
}

func (w *writers) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *writers) connLoop(ctx context.Context, src, cs string) {
	var cn *pgx.Conn
	defer func() {
		if cn != nil {
			_ = cn.Close(context.Background())
		}
	}()
	for range cluster.Every(ctx, writeInterval) {
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if cn == nil {
			var err error
			if cn, err = pgx.Connect(octx, cs); err != nil {
				cn = nil
				cancel()
				if ctx.Err() == nil && src == "haproxy" {
					w.rec.fail(src, time.Now())
				}
				continue
			}
		}
		a := ack{src: src}
		err := cn.QueryRow(octx, insertSQL, src).Scan(&a.port, &a.pmStart)
		a.at = time.Now()
		cancel()
		if err == nil {
			w.rec.ok(a)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		w.rec.fail(src, a.at)
		_ = cn.Close(context.Background())
		cn = nil
	}
}

func (w *writers) routerLoop(ctx context.Context, r *routing.Router) {
	for range cluster.Every(ctx, writeInterval) {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a := ack{src: "router"}
		_, err := r.Write(octx, func(tx pgx.Tx) error {
			return tx.QueryRow(octx, insertSQL, "router").Scan(&a.port, &a.pmStart)
		})
		a.at = time.Now()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			w.rec.ok(a)
		} else {
			w.rec.fail("router", a.at)
		}
	}
}

// newRouter starts a router following the system through its DCS.
func newRouter(ctx context.Context, s system) (*routing.Router, func(), error) {
	cl, _, path := s.etcd()
	store, err := etcddcs.New(ctx, etcddcs.Config{Client: cl, Path: path})
	if err != nil {
		return nil, nil, err
	}
	r, err := routing.New(ctx, routing.Config{Source: routing.FromDCS(store),
		ConnString: fmt.Sprintf("user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2 pool_max_conns=4", superPassword)})
	if err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	return r, func() { r.Close(); _ = store.Close() }, nil
}

// haproxy is a running haproxy in front of a system.
type haproxy struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startHAProxy runs haproxy with the users' guide's primary section (TCP
// mode, /primary health checks on each node's REST API, shutdown-sessions)
// for the system's nodes; it returns nil when haproxy is not installed.
func startHAProxy(s system, dir string) (*haproxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy"
		if _, err := os.Stat(bin); err != nil {
			return nil, nil
		}
	}
	port, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 1000
defaults
  mode    tcp
  timeout connect 5000ms
  timeout client  50000ms
  timeout server  50000ms
listen pg-primary
  bind 127.0.0.1:%d
  mode tcp
  option httpchk GET /primary HTTP/1.0
  default-server fall 3 rise 2 on-marked-down shutdown-sessions
`, port)
	for i, n := range s.nodes() {
		_, rest, _ := strings.Cut(n.restAddr, ":")
		backup := ""
		if i > 0 {
			backup = " backup"
		}
		fmt.Fprintf(&b, "  server %s 127.0.0.1:%d check port %s%s\n", n.name, n.pgPort, rest, backup)
	}
	conf := filepath.Join(dir, s.label()+"-haproxy.cfg")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &haproxy{port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
			return h, nil
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("haproxy does not listen: %w", err)
		}
	}
}

func (h *haproxy) stop() {
	if h == nil {
		return
	}
	_ = syscall.Kill(h.cmd.Process.Pid, syscall.SIGKILL)
	<-h.done
}

// results holds every figure's samples for one system.
type results map[string][]float64

func (r results) add(fig string, v float64) { r[fig] = append(r[fig], v) }

func secs(d time.Duration) float64 { return d.Seconds() }

// trials runs n rounds of switchover, Postgres crash and node loss.
func trials(ctx context.Context, s system, t timing, n int, w *writers, res results, log func(string, ...any)) error {
	nodes := s.nodes()
	// writingPrimary waits for a stable system and then for a write
	// acknowledged directly by its primary, and returns that primary.
	writingPrimary := func() (int, bnode, error) {
		p, err := waitStable(withTimeout(ctx, 3*time.Minute), s)
		if err != nil {
			return 0, bnode{}, err
		}
		pn := nodes[p]
		since := time.Now()
		if _, err := w.rec.first(withTimeout(ctx, time.Minute), "write on "+pn.name, func(a ack) bool { return a.src == "node:"+pn.name && a.at.After(since) }); err != nil {
			return 0, bnode{}, err
		}
		return p, pn, nil
	}
	for round := 1; round <= n; round++ {
		// Planned switchover.
		p, pn, err := writingPrimary()
		if err != nil {
			return err
		}
		time.Sleep(time.Second) // let the replicas catch up with the writes before asking
		t0 := time.Now()
		type answer struct {
			code int
			body string
			err  error
		}
		answered := make(chan answer, 1)
		// A refused or failed request ends the waits for its effect at once.
		sctx, refused := context.WithCancel(ctx)
		defer refused()
		go func() {
			code, body, err := switchover(withTimeout(ctx, time.Minute), pn)
			if err != nil || code != 200 {
				refused()
			}
			answered <- answer{code, body, err}
		}()
		direct := func(a ack) bool { return strings.HasPrefix(a.src, "node:") }
		outage := func(pred func(ack) bool, what string) (time.Duration, error) {
			first, err := w.rec.first(withTimeout(sctx, time.Minute), what, func(a ack) bool { return pred(a) && a.port != pn.pgPort && a.at.After(t0) })
			if err != nil {
				select {
				case ans := <-answered:
					answered <- ans
					return 0, fmt.Errorf("%w; POST /switchover to %s answered %d %q %v", err, pn.name, ans.code, ans.body, ans.err)
				default:
					return 0, err
				}
			}
			lastOld, ok := w.rec.last(func(a ack) bool { return pred(a) && a.port == pn.pgPort && a.at.Before(first.at) })
			if !ok || lastOld.at.Before(t0) {
				lastOld.at = t0
			}
			return first.at.Sub(lastOld.at), nil
		}
		od, err := outage(direct, "direct write on a new primary after the switchover")
		if err != nil {
			return err
		}
		ans := <-answered
		if ans.err != nil || ans.code != 200 {
			return fmt.Errorf("switchover of %s: %d %s %v", pn.name, ans.code, ans.body, ans.err)
		}
		res.add(figSwitchDirect, secs(od))
		line := fmt.Sprintf("switchover %s: direct outage %s", pn.name, od.Round(time.Millisecond))
		if w.hasSrc("haproxy") {
			oh, err := outage(func(a ack) bool { return a.src == "haproxy" }, "write through HAProxy on the new primary")
			if err != nil {
				return err
			}
			res.add(figSwitchHAProxy, secs(oh))
			line += fmt.Sprintf(", HAProxy outage %s", oh.Round(time.Millisecond))
		}
		if w.hasSrc("router") {
			or, err := outage(func(a ack) bool { return a.src == "router" }, "write through the router on the new primary")
			if err != nil {
				return err
			}
			res.add(figSwitchRouter, secs(or))
			line += fmt.Sprintf(", router outage %s", or.Round(time.Millisecond))
		}
		if _, err := waitStable(withTimeout(ctx, 3*time.Minute), s); err != nil {
			return err
		}
		end := time.Now()
		if w.hasSrc("haproxy") {
			f := w.rec.failsBetween("haproxy", t0, end)
			res.add(figFailHAProxy, float64(f))
			line += fmt.Sprintf(", failed via HAProxy %d", f)
		}
		if w.hasSrc("router") {
			f := w.rec.failsBetween("router", t0, end)
			res.add(figFailRouter, float64(f))
			line += fmt.Sprintf(", failed via router %d", f)
		}
		log("%s round %d: %s", s.label(), round, line)

		// Postgres crash: the primary's postmaster and children, agent alive.
		p, pn, err = writingPrimary()
		if err != nil {
			return err
		}
		t0 = time.Now()
		if err := s.killPostgres(p); err != nil {
			return err
		}
		first, err := w.rec.first(withTimeout(ctx, time.Duration(3*t.ttl)*time.Second+2*time.Minute), "write after the crash",
			func(a ack) bool { return direct(a) && a.at.After(t0) && (a.port != pn.pgPort || a.pmStart.After(t0)) })
		if err != nil {
			return err
		}
		res.add(figCrash, secs(first.at.Sub(t0)))
		where := "restarted in place"
		if first.port != pn.pgPort {
			where = "failed over to port " + fmt.Sprint(first.port)
		}
		log("%s round %d: postmaster of %s killed: first write %s later (%s)", s.label(), round, pn.name, first.at.Sub(t0).Round(time.Millisecond), where)

		// Node loss: agent and postmaster.
		p, pn, err = writingPrimary()
		if err != nil {
			return err
		}
		deleted := watchDelete(ctx, s)
		t0 = time.Now()
		if err := s.killNode(p); err != nil {
			return err
		}
		first, err = w.rec.first(withTimeout(ctx, time.Duration(3*t.ttl)*time.Second+time.Minute), "write on a new primary",
			func(a ack) bool { return direct(a) && a.at.After(t0) && a.port != pn.pgPort })
		if err != nil {
			return err
		}
		res.add(figNodeLoss, secs(first.at.Sub(t0)))
		expiry := "no leader key deletion seen before the first write"
		select {
		case d := <-deleted:
			if d.Before(first.at) {
				res.add(figExpiry, secs(first.at.Sub(d)))
				expiry = fmt.Sprintf("leader key deleted %s after the kill, first write %s after that",
					d.Sub(t0).Round(time.Millisecond), first.at.Sub(d).Round(time.Millisecond))
			}
		case <-time.After(time.Second):
		}
		r0 := time.Now()
		if err := s.startNode(ctx, p); err != nil {
			return err
		}
		if _, err := waitStable(withTimeout(ctx, 3*time.Minute), s); err != nil {
			return fmt.Errorf("%s did not rejoin: %w", pn.name, err)
		}
		res.add(figRejoin, secs(time.Since(r0)))
		log("%s round %d: node %s killed: first write on a new primary %s later (%s); it rejoined %s after its restart",
			s.label(), round, pn.name, first.at.Sub(t0).Round(time.Millisecond), expiry, time.Since(r0).Round(time.Millisecond))
	}
	return nil
}

// watchDelete watches the system's leader key and sends the time of its
// first deletion (the dead leader's lease expired) on the returned channel.
// The watch ends with the first deletion, or after five minutes.
func watchDelete(ctx context.Context, s system) <-chan time.Time {
	cl, _, path := s.etcd()
	out := make(chan time.Time, 1)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	ch := cl.Watch(clientv3.WithRequireLeader(wctx), path.Key(dcs.KeyLeader))
	go func() {
		defer cancel()
		for resp := range ch {
			now := time.Now()
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					out <- now
					return
				}
			}
		}
	}()
	return out
}

func (w *writers) hasSrc(src string) bool {
	_, ok := w.rec.last(func(a ack) bool { return a.src == src })
	return ok
}

// withTimeout returns a context that ends after d; its cancel runs when
// ctx ends or d passes (a short-lived helper for bounded waits).
func withTimeout(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	go func() { <-c.Done(); cancel() }()
	return c
}

// idle measures, over n windows, each node's agent RSS and CPU and the
// etcd message rate per node, with no client activity.
func idle(ctx context.Context, s system, n int, window time.Duration, res results, log func(string, ...any)) error {
	const clkTck = 100 // USER_HZ on Linux
	_, addr, _ := s.etcd()
	nodes := s.nodes()
	for range n {
		ticks := func() []int64 {
			out := make([]int64, len(nodes))
			for i := range nodes {
				for _, pid := range s.agentPIDs(i) {
					if st, err := readStat(pid); err == nil {
						out[i] += st.cpuTicks
					}
				}
			}
			return out
		}
		m0, err := etcdMessages(ctx, addr)
		if err != nil {
			return err
		}
		t0, start := ticks(), time.Now()
		time.Sleep(window)
		t1, el := ticks(), time.Since(start)
		m1, err := etcdMessages(ctx, addr)
		if err != nil {
			return err
		}
		var parts []string
		for i, nd := range nodes {
			var rss int64
			pids := s.agentPIDs(i)
			for _, pid := range pids {
				rss += rssKiB(pid)
			}
			cpu := float64(t1[i]-t0[i]) / clkTck / el.Seconds() * 100
			res.add(figRSS, float64(rss)/1024)
			res.add(figCPU, cpu)
			parts = append(parts, fmt.Sprintf("%s pids %v rss %.1f MiB cpu %.2f%%", nd.name, pids, float64(rss)/1024, cpu))
		}
		rate := (m1 - m0) / el.Seconds() / float64(len(nodes))
		res.add(figEtcd, rate)
		log("%s idle %s: %s; etcd %.2f msgs/s per node", s.label(), el.Round(time.Millisecond), strings.Join(parts, "; "), rate)
	}
	return nil
}

// opCost measures acquire + SELECT 1 + release through a plain pgxpool on
// the primary, through the router and through HAProxy, interleaved op by op
// so that a busy machine slows them alike, n times ops operations.
func opCost(ctx context.Context, s system, hp *haproxy, n, ops int, res results, log func(string, ...any)) error {
	p, err := waitStable(withTimeout(ctx, 3*time.Minute), s)
	if err != nil {
		return err
	}
	plain, err := pgxpool.New(ctx, connString(s.nodes()[p].pgPort)+" pool_max_conns=4")
	if err != nil {
		return err
	}
	defer plain.Close()
	r, closeRouter, err := newRouter(ctx, s)
	if err != nil {
		return err
	}
	defer closeRouter()
	acquire := []func(context.Context) (*pgxpool.Conn, error){plain.Acquire, r.Primary}
	names := []string{"pgxpool", "router"}
	if hp != nil {
		viaHA, err := pgxpool.New(ctx, connString(hp.port)+" pool_max_conns=4")
		if err != nil {
			return err
		}
		defer viaHA.Close()
		acquire = append(acquire, viaHA.Acquire)
		names = append(names, "haproxy")
	}
	// Warm up every pool (connections, the router's topology).
	for range 50 {
		for _, a := range acquire {
			c, err := a(withTimeout(ctx, 30*time.Second))
			if err != nil {
				return err
			}
			_, err = c.Exec(ctx, "SELECT 1")
			c.Release()
			if err != nil {
				return err
			}
		}
	}
	for range n {
		total := make([]time.Duration, len(acquire))
		for i := range ops {
			for j := range acquire {
				k := (i + j) % len(acquire)
				start := time.Now()
				c, err := acquire[k](ctx)
				if err != nil {
					return err
				}
				if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
					c.Release()
					return err
				}
				c.Release()
				total[k] += time.Since(start)
			}
		}
		per := make([]float64, len(total))
		for k := range total {
			per[k] = float64(total[k].Microseconds()) / float64(ops)
		}
		res.add(figOpPlain, per[0])
		res.add(figOpRouter, per[1])
		res.add(figOverRouter, per[1]/per[0])
		line := fmt.Sprintf("pgxpool %.0f µs, router %.0f µs", per[0], per[1])
		if len(per) > 2 {
			res.add(figOpHAProxy, per[2])
			res.add(figOverHAProxy, per[2]/per[0])
			line += fmt.Sprintf(", HAProxy %.0f µs", per[2])
		}
		// Each system's own write path: pgha's router, Patroni's HAProxy.
		if s.label() == "pgha" {
			res.add(figPathCmp, per[1])
		} else if len(per) > 2 {
			res.add(figPathCmp, per[2])
		}
		log("%s per-op cost (%d ops each): %s", s.label(), ops, line)
	}
	return nil
}

// measureSystem runs every measurement on one started system.
func measureSystem(ctx context.Context, s system, t timing, n int, window time.Duration, tmp string, log func(string, ...any)) (res results, err error) {
	res = results{}
	p, err := waitStable(withTimeout(ctx, 3*time.Minute), s)
	if err != nil {
		return nil, err
	}
	cn, err := pgx.Connect(ctx, connString(s.nodes()[p].pgPort))
	if err != nil {
		return nil, err
	}
	_, err = cn.Exec(ctx, "CREATE TABLE IF NOT EXISTS benchreport (id bigserial PRIMARY KEY, src text, at timestamptz DEFAULT clock_timestamp())")
	_ = cn.Close(context.Background())
	if err != nil {
		return nil, err
	}
	hp, err := startHAProxy(s, tmp)
	if err != nil {
		return nil, err
	}
	defer hp.stop()
	if hp == nil {
		log("%s: haproxy is not installed: no HAProxy figures", s.label())
	}
	r, closeRouter, err := newRouter(ctx, s)
	if err != nil {
		return nil, err
	}
	port := 0
	if hp != nil {
		port = hp.port
	}
	w := startWriters(s, port, r)
	err = trials(ctx, s, t, n, w, res, log)
	w.stop()
	closeRouter()
	if err != nil {
		return res, err
	}
	if err := opCost(ctx, s, hp, max(n, 5), 5000, res, log); err != nil {
		return res, err
	}
	// Idle: no writer, no router, no poller; let the last checkpoint pass.
	if _, err := waitStable(withTimeout(ctx, 3*time.Minute), s); err != nil {
		return res, err
	}
	time.Sleep(3 * time.Second)
	if err := idle(ctx, s, n, window, res, log); err != nil {
		return res, err
	}
	return res, nil
}

// median and max of a sample.
func stats(v []float64) (med, mx float64, ok bool) {
	if len(v) == 0 {
		return 0, 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		med = s[len(s)/2]
	} else {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[len(s)-1], true
}

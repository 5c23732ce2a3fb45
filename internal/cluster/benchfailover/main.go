// Command benchfailover measures how fast pgha moves the primary, on a real
// 3-node cluster (embedded etcd, real PostgreSQL, nodes as OS processes) built
// with package cluster, and prints the median and maximum of each figure over
// repeated trials.
//
// Mode kill: SIGKILL the primary's node process and its postmaster, then
// measure
//   - failover: from the SIGKILL to the first acknowledged write on another
//     node (writes are attempted every 10 ms through every node);
//   - reaction: from etcd deleting the leader key (its lease expired; seen by
//     a watch) to that first write;
//
// and restart the killed node, which rejoins as a replica, before the next
// trial.
//
// Mode switchover: ask for a switchover to any healthy member (a /failover
// write, as patronictl does) under the same continuous writes, and measure
//   - write outage: from the last acknowledged write on the old primary to the
//     first on the new one;
//   - switchover: from the request to that first write.
//
// Usage (as root, from inside the module; it builds nodeproc with go build):
//
//	go run ./internal/cluster/benchfailover -mode kill -n 10 -ttl 3 -loop-wait 1 -retry-timeout 1
//	go run ./internal/cluster/benchfailover -mode switchover -n 10 -ttl 3 -loop-wait 1 -retry-timeout 1
//
// Test support; not covered by compatibility promises.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster"
)

// writeInterval is the pause between two write attempts on one node.
const writeInterval = 10 * time.Millisecond

func main() {
	n := flag.Int("n", 5, "number of trials")
	ttl := flag.Int("ttl", 3, "ttl (seconds)")
	loopWait := flag.Int("loop-wait", 1, "loop_wait (seconds)")
	retry := flag.Int("retry-timeout", 1, "retry_timeout (seconds)")
	mode := flag.String("mode", "kill", "kill, switchover or soak")
	duration := flag.Duration("duration", 10*time.Minute, "soak: how long to run (first half under write load, second half idle)")
	verbose := flag.Bool("v", false, "print the harness's and the nodes' logs to stderr")
	keep := flag.Bool("keep", false, "keep the cluster directory (node logs) and print its path")
	debug := flag.Bool("debug", false, "nodes log at debug level (with -keep: in their node.log)")
	trace := flag.Bool("trace", false, "nodes log the duration of every DCS, Postgres and probe call (with -keep: in their node.log)")
	check := flag.Bool("check", true, "run the split-brain checker alongside (polls every node every 20 ms)")
	flag.BoolVar(&syncMode, "sync", false, "synchronous_mode on (the promoted node must be the /sync standby)")
	flag.Parse()
	if *mode != "kill" && *mode != "switchover" && *mode != "soak" {
		fmt.Fprintln(os.Stderr, "benchfailover: -mode must be kill, switchover or soak")
		os.Exit(2)
	}
	soakFor = *duration
	if err := run(*mode, *n, *ttl, *loopWait, *retry, *verbose, *keep, *debug, *trace, *check); err != nil {
		fmt.Fprintln(os.Stderr, "benchfailover:", err)
		os.Exit(1)
	}
}

// syncMode is -sync.
var syncMode bool

func run(mode string, trials, ttl, loopWait, retry int, verbose, keep, debug, trace, checker bool) (err error) {
	ctx := context.Background()
	build, err := os.MkdirTemp("", "pgha-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	bin, err := cluster.BuildNodeProc(ctx, build)
	if err != nil {
		return err
	}
	out := io.Discard
	if verbose {
		out = os.Stderr
	}
	opts := cluster.Options{
		Mode: cluster.Processes, NodeProc: bin,
		Dynamic: map[string]any{"ttl": ttl, "loop_wait": loopWait, "retry_timeout": retry,
			"synchronous_mode": syncMode,
			"postgresql":       map[string]any{"use_pg_rewind": true, "use_slots": false}},
		Namespace: "pgha-bench",
		Debug:     debug,
		Trace:     trace,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "bench", Output: out, Level: hclog.Info}),
	}
	if keep {
		if opts.Dir, err = os.MkdirTemp("", "pgha-bench-cluster-"); err != nil {
			return err
		}
		fmt.Printf("cluster directory (kept; node logs in <node>/node.log): %s\n", opts.Dir)
	}
	c, err := cluster.New(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()

	fmt.Printf("pgha failover benchmark: mode=%s ttl=%ds loop_wait=%ds retry_timeout=%ds trials=%d (3 nodes, processes, writes every %s through every node)\n",
		mode, ttl, loopWait, retry, trials, writeInterval)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	p, err := c.WaitStable(wctx)
	cancel()
	if err != nil {
		return err
	}
	if err := p.Exec(ctx, "CREATE TABLE IF NOT EXISTS bench (id bigserial PRIMARY KEY, node text, at timestamptz DEFAULT clock_timestamp())"); err != nil {
		return err
	}
	w := startWriters(c)
	defer w.stop()
	lw, err := watchLeader(ctx, c)
	if err != nil {
		return err
	}
	defer lw.stop()
	var check *cluster.Checker
	if checker {
		check = c.StartChecker()
	}

	if mode == "soak" {
		return soak(ctx, c, w, check)
	}
	var figs []figure
	if mode == "kill" {
		figs = []figure{{name: "SIGKILL -> first write on the new primary"}, {name: "leader key deleted (lease expired) -> first write"},
			{name: "SIGKILL -> leader key deleted"}, {name: "killed node back as a streaming replica (after restart)"}}
	} else {
		figs = []figure{{name: "write outage (last write on old -> first on new)"}, {name: "request -> first write on the new primary"}}
	}
	for i := 1; i <= trials; i++ {
		var line string
		if mode == "kill" {
			line, err = killTrial(ctx, c, w, lw, ttl, figs)
		} else {
			line, err = switchoverTrial(ctx, c, w, figs)
		}
		if err != nil {
			return fmt.Errorf("trial %d: %w", i, err)
		}
		fmt.Printf("trial %2d: %s\n", i, line)
	}
	fmt.Println()
	fmt.Printf("%-58s %9s %9s %9s  (n=%d)\n", "figure", "median", "max", "min", trials)
	for _, f := range figs {
		fmt.Printf("%-58s %9s %9s %9s\n", f.name, round(f.median()), round(f.max()), round(f.min()))
	}
	if check == nil {
		return nil
	}
	r := check.Stop()
	fmt.Printf("split-brain checker: %d rounds, %d acknowledged writes, %d violations\n", r.Rounds, len(r.Writes), len(r.Violations))
	for _, v := range r.Violations {
		fmt.Println("  ", v)
	}
	if len(r.Violations) > 0 {
		return errors.New("two writable primaries were seen")
	}
	return nil
}

func killTrial(ctx context.Context, c *cluster.Cluster, w *writers, lw *leaderWatch, ttl int, figs []figure) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := c.WaitStable(sctx)
	if err != nil {
		return "", err
	}
	if _, err := w.waitWrite(sctx, p.Name, time.Now()); err != nil {
		return "", err
	}
	killed := time.Now()
	if err := p.Kill(); err != nil {
		return "", err
	}
	fctx, fcancel := context.WithTimeout(ctx, time.Duration(3*ttl)*time.Second+30*time.Second)
	defer fcancel()
	q, first, err := w.waitWriteOther(fctx, p.Name, killed)
	if err != nil {
		return "", err
	}
	deleted, ok := lw.deletedAfter(killed)
	if !ok || deleted.After(first) {
		return "", fmt.Errorf("no leader key deletion seen between the kill and the first write")
	}
	figs[0].add(first.Sub(killed))
	figs[1].add(first.Sub(deleted))
	figs[2].add(deleted.Sub(killed))
	restarted := time.Now()
	if err := p.Start(ctx); err != nil {
		return "", err
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	s, err := c.WaitStable(rctx)
	if err != nil {
		return "", fmt.Errorf("%s did not rejoin: %w", p.Name, err)
	}
	if s.Name != q {
		return "", fmt.Errorf("after %s rejoined, %s is the primary, not %s", p.Name, s.Name, q)
	}
	figs[3].add(time.Since(restarted))
	return fmt.Sprintf("[kill %s, key deleted %s, first write %s] killed %s; %s wrote %s after the SIGKILL, %s after the leader key was deleted (%s after the SIGKILL); %s rejoined %s after its restart",
		clock(killed), clock(deleted), clock(first),
		p.Name, q, round(first.Sub(killed)), round(first.Sub(deleted)), round(deleted.Sub(killed)), p.Name, round(time.Since(restarted))), nil
}

func switchoverTrial(ctx context.Context, c *cluster.Cluster, w *writers, figs []figure) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := c.WaitStable(sctx)
	if err != nil {
		return "", err
	}
	// Every replica must be caught up for a switchover to be allowed; a
	// stable cluster under light writes is.
	if _, err := w.waitWrite(sctx, p.Name, time.Now()); err != nil {
		return "", err
	}
	asked := time.Now()
	if err := c.RequestFailover(sctx, p.Name, ""); err != nil {
		return "", err
	}
	q, first, err := w.waitWriteOther(sctx, p.Name, asked)
	if err != nil {
		return "", err
	}
	last, ok := w.lastBefore(p.Name, first)
	if !ok || last.Before(asked) {
		last = asked // no write acknowledged on the old primary after the request
	}
	figs[0].add(first.Sub(last))
	figs[1].add(first.Sub(asked))
	if _, err := c.WaitStable(sctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("[request %s, last old write %s, first new write %s] %s -> %s: write outage %s (last write on %s %s after the request, first on %s %s after it)",
		clock(asked), clock(last), clock(first),
		p.Name, q, round(first.Sub(last)), p.Name, round(last.Sub(asked)), q, round(first.Sub(asked))), nil
}

// writers attempt a write every writeInterval through every node, each on
// its own connection, and record when writes were acknowledged.
type writers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	acks map[string][]time.Time // per node, acknowledgement times, in order
	wake chan struct{}          // closed and replaced on each acknowledgement
}

func startWriters(c *cluster.Cluster) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{cancel: cancel, acks: map[string][]time.Time{}, wake: make(chan struct{})}
	for _, n := range c.Nodes() {
		w.wg.Go(func() { w.loop(ctx, n) })
	}
	return w
}

func (w *writers) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *writers) loop(ctx context.Context, n *cluster.Node) {
	var cn *pgx.Conn
	defer func() {
		if cn != nil {
			_ = cn.Close(context.Background())
		}
	}()
	for range cluster.Every(ctx, writeInterval) {
		octx, cancel := context.WithTimeout(ctx, time.Second)
		if cn == nil {
			var err error
			if cn, err = n.Connect(octx); err != nil {
				cn = nil
				cancel()
				continue
			}
		}
		_, err := cn.Exec(octx, "INSERT INTO bench (node) VALUES ($1)", n.Name)
		acked := time.Now()
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acks[n.Name] = append(w.acks[n.Name], acked)
			close(w.wake)
			w.wake = make(chan struct{})
			w.mu.Unlock()
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) { // not an answer from the server: reconnect
			_ = cn.Close(context.Background())
			cn = nil
		}
	}
}

// waitWrite waits for a write acknowledged on node after since.
func (w *writers) waitWrite(ctx context.Context, node string, since time.Time) (time.Time, error) {
	for {
		w.mu.Lock()
		acks, wake := w.acks[node], w.wake
		w.mu.Unlock()
		if len(acks) > 0 && acks[len(acks)-1].After(since) {
			i, _ := slices.BinarySearchFunc(acks, since, func(a, b time.Time) int { return a.Compare(b) })
			for i < len(acks) && !acks[i].After(since) {
				i++
			}
			return acks[i], nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no write acknowledged on %s: %w", node, ctx.Err())
		case <-wake:
		}
	}
}

// waitWriteOther waits for the first write acknowledged after since on a
// node other than not, and returns that node and the time.
func (w *writers) waitWriteOther(ctx context.Context, not string, since time.Time) (string, time.Time, error) {
	for {
		w.mu.Lock()
		var best string
		var first time.Time
		for node, acks := range w.acks {
			if node == not {
				continue
			}
			i, _ := slices.BinarySearchFunc(acks, since, func(a, b time.Time) int { return a.Compare(b) })
			for i < len(acks) && !acks[i].After(since) {
				i++
			}
			if i < len(acks) && (first.IsZero() || acks[i].Before(first)) {
				best, first = node, acks[i]
			}
		}
		wake := w.wake
		w.mu.Unlock()
		if best != "" {
			return best, first, nil
		}
		select {
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("no write acknowledged on a new primary: %w", ctx.Err())
		case <-wake:
		}
	}
}

// lastBefore returns the last write acknowledged on node before t.
func (w *writers) lastBefore(node string, t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	acks := w.acks[node]
	i, _ := slices.BinarySearchFunc(acks, t, func(a, b time.Time) int { return a.Compare(b) })
	if i == 0 {
		return time.Time{}, false
	}
	return acks[i-1], true
}

// leaderWatch records when etcd deleted the leader key, as seen by a watch.
type leaderWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	deletes []time.Time
}

func watchLeader(ctx context.Context, c *cluster.Cluster) (*leaderWatch, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	lw := &leaderWatch{cancel: cancel, done: make(chan struct{})}
	ch := c.Etcd().Watch(wctx, c.Path().Key(dcs.KeyLeader))
	go func() {
		defer close(lw.done)
		for resp := range ch {
			now := time.Now()
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					lw.mu.Lock()
					lw.deletes = append(lw.deletes, now)
					lw.mu.Unlock()
				}
			}
		}
	}()
	return lw, nil
}

func (lw *leaderWatch) stop() {
	lw.cancel()
	<-lw.done
}

// deletedAfter returns the first deletion after t.
func (lw *leaderWatch) deletedAfter(t time.Time) (time.Time, bool) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	for _, d := range lw.deletes {
		if d.After(t) {
			return d, true
		}
	}
	return time.Time{}, false
}

// figure is one measured quantity over the trials.
type figure struct {
	name string
	vals []time.Duration
}

func (f *figure) add(d time.Duration) { f.vals = append(f.vals, d) }

func (f *figure) sorted() []time.Duration {
	s := slices.Clone(f.vals)
	slices.Sort(s)
	return s
}

func (f *figure) median() time.Duration {
	s := f.sorted()
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (f *figure) max() time.Duration {
	s := f.sorted()
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (f *figure) min() time.Duration {
	s := f.sorted()
	if len(s) == 0 {
		return 0
	}
	return s[0]
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

func round(d time.Duration) string { return d.Round(time.Millisecond).String() }

// soakFor is the -duration of a soak.
var soakFor time.Duration

// soak runs the cluster with no fault, under write load for the first half
// and idle for the second, and reports every leader change (a new tenure of
// the leader key): with no fault there must be none.
func soak(ctx context.Context, c *cluster.Cluster, w *writers, check *cluster.Checker) error {
	name, rev, err := c.LeaderRevision(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("soak: %s, no faults; leader %s (create revision %d); first half under write load, second half idle\n", soakFor, name, rev)
	start := time.Now()
	changes, samples, idle := 0, 0, false
	for time.Since(start) < soakFor {
		if !idle && time.Since(start) > soakFor/2 {
			w.stop()
			idle = true
			fmt.Printf("soak: %s under load, now idle\n", time.Since(start).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
		n, r, err := c.LeaderRevision(ctx)
		if err != nil {
			continue
		}
		samples++
		if n != name || r != rev {
			changes++
			fmt.Printf("soak: leader changed at %s: %s (rev %d) -> %q (rev %d)\n", time.Since(start).Round(time.Millisecond), name, rev, n, r)
			name, rev = n, r
		}
	}
	fmt.Printf("soak: %d leader changes over %s (%d samples every 200 ms)\n", changes, soakFor, samples)
	if check != nil {
		r := check.Stop()
		fmt.Printf("split-brain checker: %d rounds, %d acknowledged writes, %d violations\n", r.Rounds, len(r.Writes), len(r.Violations))
		if len(r.Violations) > 0 {
			return errors.New("two writable primaries were seen")
		}
	}
	if changes > 0 {
		return fmt.Errorf("%d leader changes with no fault", changes)
	}
	return nil
}

package routing_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/routing"
)

// Benchmarks. They print figures; they assert nothing about time.
//
//	go test -run '^$' -bench . -benchtime 3s ./routing/
//
// BenchmarkSwitchover needs a three-node cluster and runs one switchover per
// iteration: use -benchtime 3x.

const benchPool = " pool_max_conns=8"

func hostAddr(inst *pg.Instance) string { return fmt.Sprintf("127.0.0.1:%d", port(inst)) }

func selectOne(b *testing.B, acquire func(context.Context) (*pgxpool.Conn, error)) {
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = c.Exec(ctx, "SELECT 1")
			c.Release()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPrimaryAcquire compares Router.Primary with a plain
// pgxpool.Pool.Acquire on the same server: acquire, SELECT 1, release.
func BenchmarkPrimaryAcquire(b *testing.B) {
	pgtest.BinDir(b)
	p := pgtest.Init(b, pgtest.Config(b, "p"))
	ctx := context.Background()
	plain, err := pgxpool.New(ctx, fmt.Sprintf("host=127.0.0.1 port=%d %s%s", port(p), baseConnString, benchPool))
	require.NoError(b, err)
	defer plain.Close()
	r, err := routing.New(ctx, routing.Config{Source: routing.FromHosts(hostAddr(p)), ConnString: baseConnString + benchPool})
	require.NoError(b, err)
	defer r.Close()
	b.Run("pgxpool", func(b *testing.B) { selectOne(b, plain.Acquire) })
	b.Run("router", func(b *testing.B) { selectOne(b, r.Primary) })
	b.Run("interleaved", func(b *testing.B) {
		interleaved(b, []string{"pgxpool", "router"}, true, plain.Acquire, r.Primary)
	})
	// Acquire and release only: the router's own cost, without the round
	// trip that dominates the figures above.
	b.Run("acquire-only", func(b *testing.B) {
		interleaved(b, []string{"pgxpool", "router"}, false, plain.Acquire, r.Primary)
	})
}

// interleaved alternates the acquisitions op by op on one goroutine (so
// that a busy machine slows them alike) and reports each one's mean time
// for acquire, SELECT 1, release, and each one's overhead against the
// first.
func interleaved(b *testing.B, names []string, query bool, acquire ...func(context.Context) (*pgxpool.Conn, error)) {
	ctx := context.Background()
	total := make([]time.Duration, len(acquire))
	b.ResetTimer()
	for i := range b.N {
		for j := range acquire {
			k := (i + j) % len(acquire) // rotate who goes first
			start := time.Now()
			c, err := acquire[k](ctx)
			if err != nil {
				b.Fatal(err)
			}
			if query {
				if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
					b.Fatal(err)
				}
			}
			c.Release()
			total[k] += time.Since(start)
		}
	}
	b.StopTimer()
	for k, name := range names {
		b.ReportMetric(float64(total[k].Nanoseconds())/float64(b.N), "ns/"+name)
		if k > 0 {
			b.ReportMetric(100*(float64(total[k])/float64(total[0])-1), "%overhead-"+name)
		}
	}
	b.ReportMetric(0, "ns/op")
}

// startHAProxy runs haproxy in TCP mode on a free port in front of target
// and returns its address; it is killed by pid when the benchmark ends.
func startHAProxy(b *testing.B, target string) string {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy"
		if _, err := os.Stat(bin); err != nil {
			b.Skip("haproxy is not installed")
		}
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freeport.MustGet(b))
	conf := filepath.Join(b.TempDir(), "haproxy.cfg")
	require.NoError(b, os.WriteFile(conf, []byte(fmt.Sprintf(`global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen pg
  bind %s
  server pg %s
`, listen, target)), 0o600))
	cmd := exec.Command(bin, "-db", "-f", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	pgtest.Eventually(b, 10*time.Second, func() error {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	return listen
}

// newReplica clones inst into a streaming replica.
func newReplica(b testing.TB, primary *pg.Instance, name string) *pg.Instance {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := pgtest.New(b, pgtest.Config(b, name))
	require.NoError(b, s.Clone(ctx, pgtest.Upstream(primary, ""), nil))
	require.NoError(b, s.Start(ctx))
	return s
}

// BenchmarkReads compares reads on a replica through the router with reads
// through HAProxy in TCP mode in front of the same replica (and a direct
// pool, the floor): acquire, SELECT 1, release.
func BenchmarkReads(b *testing.B) {
	pgtest.BinDir(b)
	p := pgtest.Init(b, pgtest.Config(b, "p"))
	s := newReplica(b, p, "s")
	ctx := context.Background()
	proxy := startHAProxy(b, hostAddr(s))
	viaProxy, err := pgxpool.New(ctx, fmt.Sprintf("host=127.0.0.1 port=%s %s%s", proxy[len("127.0.0.1:"):], baseConnString, benchPool))
	require.NoError(b, err)
	defer viaProxy.Close()
	direct, err := pgxpool.New(ctx, fmt.Sprintf("host=127.0.0.1 port=%d %s%s", port(s), baseConnString, benchPool))
	require.NoError(b, err)
	defer direct.Close()
	r, err := routing.New(ctx, routing.Config{Source: routing.FromHosts(hostAddr(p), hostAddr(s)), ConnString: baseConnString + benchPool})
	require.NoError(b, err)
	defer r.Close()
	waitTopology(b, r, "a replica", func(top *routing.Topology) bool { return len(top.Replicas(routing.DefaultMaxLag)) == 1 })
	c, err := r.Replica(ctx, routing.ReadOptions{})
	require.NoError(b, err)
	got, err := serverPort(ctx, c)
	c.Release()
	require.NoError(b, err)
	require.Equal(b, port(s), got)

	b.Run("haproxy", func(b *testing.B) { selectOne(b, viaProxy.Acquire) })
	b.Run("router", func(b *testing.B) {
		selectOne(b, func(ctx context.Context) (*pgxpool.Conn, error) { return r.Replica(ctx, routing.ReadOptions{}) })
	})
	b.Run("direct", func(b *testing.B) { selectOne(b, direct.Acquire) })
	b.Run("interleaved", func(b *testing.B) {
		interleaved(b, []string{"direct", "haproxy", "router"}, true, direct.Acquire, viaProxy.Acquire,
			func(ctx context.Context) (*pgxpool.Conn, error) { return r.Replica(ctx, routing.ReadOptions{}) })
	})
}

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLeaderChangeToWrite measures, on memdcs with two writable
// servers, the time from the leader key changing to the first routed write
// committing on the new primary: the router's own reaction (watch event,
// pool, connection, transaction), with a primary that accepts writes from
// the start. "unplanned" moves the key alone (the new primary's pool must
// connect); "planned" announces a switchover in /failover first, as pgha and
// Patroni do, so the router holds writes and opens the candidate's pool in
// advance. ms-seen is when the router saw the change; ms-connect is the
// cost of one new connection on this machine, for reference.
func BenchmarkLeaderChangeToWrite(b *testing.B) {
	pgtest.BinDir(b)
	a := pgtest.Init(b, pgtest.Config(b, "a"))
	bb := pgtest.Init(b, pgtest.Config(b, "b"))
	for _, inst := range []*pg.Instance{a, bb} {
		execOn(b, inst, "CREATE TABLE t (v int)")
	}
	ctx := context.Background()
	var connect []time.Duration
	for range 10 {
		start := time.Now()
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d %s", port(a), baseConnString))
		require.NoError(b, err)
		connect = append(connect, time.Since(start))
		_ = c.Close(ctx)
	}
	for _, planned := range []bool{false, true} {
		name := map[bool]string{false: "unplanned", true: "planned"}[planned]
		b.Run(name, func(b *testing.B) {
			f := newFakeCluster(b, "a", "b")
			f.member(b, "a", connURL(a), dcs.RolePrimary, 100, nil)
			f.member(b, "b", connURL(bb), dcs.RoleReplica, 100, nil)
			f.lead(b, "a")
			var seenMu sync.Mutex
			seen := map[string]time.Time{}
			r, err := routing.New(ctx, routing.Config{Source: routing.FromDCS(f.reader), ConnString: baseConnString, ProbeInterval: -1,
				Hooks: routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) {
					seenMu.Lock()
					seen[e.Leader] = time.Now()
					seenMu.Unlock()
				}}})
			require.NoError(b, err)
			defer r.Close()
			ambiguous := 0
			write := func() int {
				var p int
				_, err := r.Write(ctx, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "INSERT INTO t VALUES (1) RETURNING inet_server_port()").Scan(&p)
				})
				if errors.Is(err, routing.ErrAmbiguousCommit) {
					// The fence cut a COMMIT in flight on the old primary.
					ambiguous++
					return 0
				}
				require.NoError(b, err)
				return p
			}
			ports := map[string]int{"a": port(a), "b": port(bb)}
			urls := map[string]string{"a": connURL(a), "b": connURL(bb)}
			cur := "a"
			require.Equal(b, ports[cur], write())
			var lat, seenLat []time.Duration
			b.ResetTimer()
			for range b.N {
				next := map[string]string{"a": "b", "b": "a"}[cur]
				if planned {
					_, err := f.nodes[cur].SetFailover(ctx, dcs.Failover{Leader: cur, Candidate: next}, dcs.Unconditional)
					require.NoError(b, err)
					waitTopology(b, r, "holding", func(top *routing.Topology) bool { return top.Holding })
					// A real switchover holds writes for a checkpoint, a
					// stop and a promotion; the candidate's pool connects
					// meanwhile.
					time.Sleep(300 * time.Millisecond)
				}
				f.member(b, cur, urls[cur], dcs.RoleReplica, 100, nil)
				require.NoError(b, f.nodes[cur].ReleaseLeader(ctx, nil))
				start := time.Now()
				_, err := f.nodes[next].AcquireLeader(ctx)
				require.NoError(b, err)
				for write() != ports[next] {
				}
				lat = append(lat, time.Since(start))
				seenMu.Lock()
				seenLat = append(seenLat, seen[next].Sub(start))
				seenMu.Unlock()
				f.member(b, next, urls[next], dcs.RolePrimary, 100, nil)
				if planned {
					_, err := f.nodes[next].SetFailover(ctx, dcs.Failover{}, dcs.Unconditional)
					require.NoError(b, err)
				}
				cur = next
			}
			b.StopTimer()
			b.ReportMetric(ms(percentile(lat, 0.5)), "ms-median")
			b.ReportMetric(ms(percentile(lat, 0.99)), "ms-p99")
			b.ReportMetric(ms(percentile(seenLat, 0.5)), "ms-seen")
			b.ReportMetric(ms(percentile(connect, 0.5)), "ms-connect")
			b.ReportMetric(float64(ambiguous), "ambiguous")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkSwitchover runs planned switchovers on a real three-node pgha
// cluster while 4 goroutines call Router.Write in a loop, and reports the
// failed transactions the application saw (errors returned by Write; the
// retries inside Write are not failures), the ambiguous commits among them,
// the time from the leader key change (seen by an independent etcd watch)
// to the first write committed on the new primary, the time from the new
// primary accepting writes (polled directly every 2 ms) to that write, the
// times from the key change to the router seeing it and to the new primary
// accepting writes (its promotion), and the longest Write call (the
// application's write outage).
func BenchmarkSwitchover(b *testing.B) {
	c := startHACluster(b, 3, nil)
	p := c.waitStable(120*time.Second, nil)
	ctx := context.Background()
	var seenMu sync.Mutex
	seen := map[string]time.Time{}
	r, err := routing.New(ctx, routing.Config{Source: routing.FromDCS(c.reader()), ConnString: baseConnString,
		Hooks: routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) {
			seenMu.Lock()
			seen[e.Leader] = time.Now()
			seenMu.Unlock()
		}}})
	require.NoError(b, err)
	defer r.Close()
	waitTopology(b, r, "primary", func(top *routing.Topology) bool { pn, ok := top.Primary(); return ok && pn.Name == p.name })
	_, err = r.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE w (id serial PRIMARY KEY, v text, port int, at timestamptz)")
		return err
	})
	require.NoError(b, err)
	ports := map[int]string{}
	for _, n := range c.nodes {
		ports[port(n.inst)] = n.name
	}

	// The leader key as etcd reports it, independently of the router.
	var keyMu sync.Mutex
	keyChanged := map[string]time.Time{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch := sharedEtcd(b).Admin.Watch(wctx, c.path.Key(dcs.KeyLeader))
	var watchWG sync.WaitGroup
	watchWG.Go(func() {
		for resp := range watch {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut && ev.IsCreate() {
					keyMu.Lock()
					keyChanged[string(ev.Kv.Value)] = time.Now()
					keyMu.Unlock()
				}
			}
		}
	})
	defer watchWG.Wait()
	defer wcancel()

	var (
		mu       sync.Mutex
		failed   int
		ambig    int
		longest  time.Duration
		firstOn  = map[string]time.Time{}
		stop     = make(chan struct{})
		workers  sync.WaitGroup
		attempts atomic.Int64
	)
	for i := range 4 {
		workers.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				wc, cancel := context.WithTimeout(ctx, 60*time.Second)
				start := time.Now()
				var port int
				_, err := r.Write(wc, func(tx pgx.Tx) error {
					return tx.QueryRow(wc, "INSERT INTO w (v, port, at) VALUES ($1, inet_server_port(), clock_timestamp()) RETURNING port",
						fmt.Sprintf("%d-%d", i, j)).Scan(&port)
				})
				cancel()
				took := time.Since(start)
				attempts.Add(1)
				mu.Lock()
				longest = max(longest, took)
				if err != nil {
					failed++
					if isAmbiguous(err) {
						ambig++
					}
					b.Logf("write failed: %v", err)
				} else if _, ok := firstOn[ports[port]]; !ok {
					firstOn[ports[port]] = time.Now()
				}
				mu.Unlock()
			}
		})
	}

	var fromKey, fromWritable, keyToSeen, keyToWritable []time.Duration
	b.ResetTimer()
	for range b.N {
		var cand *haNode
		for _, n := range c.nodes {
			if n != p {
				cand = n
				break
			}
		}
		mu.Lock()
		delete(firstOn, cand.name)
		mu.Unlock()
		// Poll the candidate directly for the moment it accepts writes.
		writable := make(chan time.Time, 1)
		pollCtx, pollCancel := context.WithCancel(ctx)
		var pollWG sync.WaitGroup
		pollWG.Go(func() {
			conn := directConn(b, cand.inst)
			for pollCtx.Err() == nil {
				var rec bool
				if err := conn.QueryRow(pollCtx, "SELECT pg_is_in_recovery()").Scan(&rec); err == nil && !rec {
					writable <- time.Now()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
		require.NoError(b, cand.node.Switchover(ctx, cand.name, time.Time{}))
		var wAt time.Time
		select {
		case wAt = <-writable:
		case <-time.After(120 * time.Second):
			b.Fatal("the candidate never became writable")
		}
		pollCancel()
		pollWG.Wait()
		var first time.Time
		pgtest.Eventually(b, 60*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			var ok bool
			if first, ok = firstOn[cand.name]; !ok {
				return fmt.Errorf("no write on %s yet", cand.name)
			}
			return nil
		})
		keyMu.Lock()
		kAt := keyChanged[cand.name]
		keyMu.Unlock()
		fromKey = append(fromKey, first.Sub(kAt))
		fromWritable = append(fromWritable, first.Sub(wAt))
		keyToWritable = append(keyToWritable, wAt.Sub(kAt))
		seenMu.Lock()
		keyToSeen = append(keyToSeen, seen[cand.name].Sub(kAt))
		seenMu.Unlock()
		p = c.waitStable(120*time.Second, nil)
	}
	b.StopTimer()
	close(stop)
	workers.Wait()
	b.ReportMetric(float64(failed)/float64(b.N), "failed/switchover")
	b.ReportMetric(float64(ambig)/float64(b.N), "ambiguous/switchover")
	b.ReportMetric(ms(percentile(fromKey, 0.5)), "ms-key-to-write")
	b.ReportMetric(ms(percentile(fromWritable, 0.5)), "ms-writable-to-write")
	b.ReportMetric(ms(percentile(keyToWritable, 0.5)), "ms-key-to-writable")
	b.ReportMetric(ms(percentile(keyToSeen, 0.5)), "ms-key-to-router")
	b.ReportMetric(ms(longest), "ms-longest-write")
	b.ReportMetric(float64(attempts.Load()), "writes")
	b.ReportMetric(0, "ns/op")
}

func isAmbiguous(err error) bool { return err != nil && errors.Is(err, routing.ErrAmbiguousCommit) }

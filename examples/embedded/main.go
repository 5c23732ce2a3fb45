package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/pg"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// Environment variables that carry the passwords.
const (
	envSuperuserPassword   = "EMBEDDED_SUPERUSER_PASSWORD"
	envReplicationPassword = "EMBEDDED_REPLICATION_PASSWORD"
	envRewindPassword      = "EMBEDDED_REWIND_PASSWORD"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	name, scope, namespace string
	etcd                   string
	dataDir, binDir        string
	pgListen, pgConnect    string
	pgPort                 int
	socketDir              string
	listen, advertise      string
	bootstrap              bool
	ttl, loopWait, retry   int
	superuser, replUser    string
	rewindUser             string
	beat                   time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("embedded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.name, "name", "", "member name (required)")
	fs.StringVar(&o.scope, "scope", "", "cluster name (required)")
	fs.StringVar(&o.namespace, "namespace", dcs.DefaultNamespace, "DCS namespace")
	fs.StringVar(&o.etcd, "etcd", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
	fs.StringVar(&o.dataDir, "data-dir", "", "PostgreSQL data directory, absolute (required)")
	fs.StringVar(&o.binDir, "bin-dir", "", "PostgreSQL programs (default: auto-detect)")
	fs.StringVar(&o.pgListen, "pg-listen", "127.0.0.1", "PostgreSQL listen_addresses")
	fs.StringVar(&o.pgConnect, "pg-connect", "", "host:port peers and clients reach PostgreSQL at (default: the first -pg-listen address and -pg-port)")
	fs.IntVar(&o.pgPort, "pg-port", 5432, "PostgreSQL port")
	fs.StringVar(&o.socketDir, "socket-dir", "", "PostgreSQL unix socket directory (default: one under the temp directory)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8008", "the service's HTTP address (its own endpoints and the REST API)")
	fs.StringVar(&o.advertise, "advertise", "", "host:port peers reach the REST API at (default: -listen's)")
	fs.BoolVar(&o.bootstrap, "bootstrap", false, "this member may create the cluster (initdb)")
	fs.IntVar(&o.ttl, "ttl", 30, "bootstrap dynamic config: leader lease TTL, seconds")
	fs.IntVar(&o.loopWait, "loop-wait", 10, "bootstrap dynamic config: loop_wait, seconds")
	fs.IntVar(&o.retry, "retry-timeout", 10, "bootstrap dynamic config: retry_timeout, seconds")
	fs.StringVar(&o.superuser, "superuser", "postgres", "superuser role")
	fs.StringVar(&o.replUser, "replication-user", "replicator", "replication role")
	fs.StringVar(&o.rewindUser, "rewind-user", "", "pg_rewind role (default: the superuser)")
	fs.DurationVar(&o.beat, "heartbeat", time.Second, "interval of the leader-only heartbeat")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if o.name == "" || o.scope == "" || o.dataDir == "" {
		problems = append(problems, "-name, -scope and -data-dir are required")
	}
	if o.beat <= 0 {
		problems = append(problems, "-heartbeat must be positive")
	}
	if o.advertise == "" {
		o.advertise = o.listen
	}
	if len(problems) > 0 {
		return o, errors.New(strings.Join(problems, "; "))
	}
	return o, nil
}

// service is the application around the node: its readiness, its
// leader-only work and its own endpoint.
type service struct {
	log      *slog.Logger
	node     *ha.Node
	connStr  string
	beat     time.Duration
	stopping atomic.Bool
	role     atomic.Value // string: the last role OnRoleChange reported
	beats    atomic.Int64 // heartbeats written while leading
	leaderWG sync.WaitGroup
}

// onStartedLeading runs leader-only work until ctx is cancelled (ha cancels
// it the moment leadership ends). It must not block the hook: it starts a
// goroutine the service waits for on shutdown.
func (s *service) onStartedLeading(ctx context.Context) {
	s.log.Info("started leading: starting the leader-only heartbeat")
	s.leaderWG.Go(func() {
		defer s.log.Info("leader-only work stopped")
		t := time.NewTicker(s.beat)
		defer t.Stop()
		for {
			if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// heartbeat upserts this member's row in the heartbeat table of its own
// Postgres, the primary.
func (s *service) heartbeat(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, s.connStr)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(cctx, `CREATE TABLE IF NOT EXISTS heartbeat (member text PRIMARY KEY, beats bigint NOT NULL, at timestamptz NOT NULL);
		INSERT INTO heartbeat VALUES ('`+strings.ReplaceAll(s.node.Status().Name, "'", "''")+`', 1, now())
		ON CONFLICT (member) DO UPDATE SET beats = heartbeat.beats + 1, at = now()`)
	if err == nil {
		s.beats.Add(1)
	}
	return err
}

// readiness is GET /readyz: 200 when Postgres runs as the leader or a
// streaming replica (with ?role=primary: as the leader only), 503 otherwise.
func (s *service) readiness(w http.ResponseWriter, r *http.Request) {
	st := s.node.Status()
	primary := st.IsLeader && !st.InRecovery && st.State == "running"
	replica := !st.IsLeader && st.InRecovery && st.State == "running" && st.ReplicationState == "streaming"
	ready := primary || replica
	reason := "ready"
	switch {
	case s.stopping.Load():
		ready, reason = false, "shutting down"
	case r.URL.Query().Get("role") == "primary" && !primary:
		ready, reason = false, "not the primary"
	case !ready:
		reason = fmt.Sprintf("postgres is %s as %s", st.State, st.Role)
	}
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ready, "reason": reason, "role": st.Role, "state": st.State,
		"leader": st.LeaderName, "timeline": st.Timeline})
}

// status is GET /app/status: what the application knows.
func (s *service) status(w http.ResponseWriter, _ *http.Request) {
	role, _ := s.role.Load().(string)
	st := s.node.Status()
	writeJSON(w, http.StatusOK, map[string]any{"member": st.Name, "last_role_change": role, "leader": st.LeaderName,
		"heartbeats_written": s.beats.Load()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "embedded:", err)
		}
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("member", o.name)
	su := pg.Credentials{Username: o.superuser, Password: getenv(envSuperuserPassword)}
	repl := pg.Credentials{Username: o.replUser, Password: getenv(envReplicationPassword)}
	rewind := pg.Credentials{Username: o.rewindUser, Password: getenv(envRewindPassword)}
	if su.Password == "" || repl.Password == "" {
		fmt.Fprintf(stderr, "embedded: set %s and %s\n", envSuperuserPassword, envReplicationPassword)
		return exitUsage
	}

	// The service's Postgres.
	inst, err := pg.New(ctx, pg.Config{
		Name: o.name, ClusterName: o.scope, DataDir: o.dataDir, BinDir: o.binDir,
		ListenAddress: o.pgListen, Port: o.pgPort, ConnectAddress: o.pgConnect, SocketDir: o.socketDir,
		Superuser: su, Replication: repl, Rewind: rewind,
		HBA: []string{
			"local all all trust",
			"local replication all trust",
			"host all all 0.0.0.0/0 scram-sha-256", // narrow these to your network
			"host replication all 0.0.0.0/0 scram-sha-256",
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, "embedded:", err)
		return exitUsage
	}
	defer inst.Close()

	// Its member in the DCS.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	store, err := etcddcs.New(sctx, etcddcs.Config{Endpoints: strings.Split(o.etcd, ","),
		Path: dcs.Path{Namespace: o.namespace, Scope: o.scope}, Name: o.name})
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "embedded: connecting to etcd:", err)
		return exitFailed
	}
	defer store.Close() // last

	// The leader-only work talks to the local Postgres on the first address
	// it listens on.
	local := strings.TrimSpace(strings.Split(o.pgListen, ",")[0])
	if local == "*" || local == "0.0.0.0" || local == "::" || local == "" {
		local = "127.0.0.1"
	}
	svc := &service{log: log, beat: o.beat, connStr: (&url.URL{Scheme: "postgres", User: url.UserPassword(su.Username, su.Password),
		Host: net.JoinHostPort(local, strconv.Itoa(o.pgPort)), Path: "/postgres", RawQuery: "sslmode=disable"}).String()}
	svc.role.Store("")
	cfg := ha.Config{
		Name: o.name, Scope: o.scope, Store: store, Postgres: inst,
		APIURL: "http://" + o.advertise + "/patroni",
		Hooks: ha.Hooks{
			OnRoleChange: func(role string) {
				svc.role.Store(role)
				log.Info("role changed", "role", role)
			},
			OnStartedLeading: svc.onStartedLeading,
			OnStoppedLeading: func() { log.Info("stopped leading") },
		},
	}
	if o.bootstrap {
		cfg.Bootstrap = &ha.Bootstrap{DCS: map[string]any{"ttl": o.ttl, "loop_wait": o.loopWait, "retry_timeout": o.retry,
			"postgresql": map[string]any{"use_pg_rewind": true}}}
	}
	node, err := ha.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "embedded:", err)
		return exitUsage
	}
	svc.node = node

	// One mux: the service's endpoints, and the node's REST API at the root.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", svc.readiness)
	mux.HandleFunc("GET /app/status", svc.status)
	mux.Handle("/", node.Handler())
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintln(stderr, "embedded:", err)
		return exitFailed
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "embedded: %s serving on http://%s (readiness /readyz, REST API /patroni)\n", o.name, ln.Addr())

	// The node runs until ctx ends (or it refuses to act).
	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	ran := make(chan error, 1)
	go func() { ran <- node.Run(nodeCtx) }()

	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-ran:
		log.Error("the node stopped on its own", "error", err)
		ran <- err
		code = exitFailed
	case err := <-served:
		log.Error("http server failed", "error", err)
		served <- err
		code = exitFailed
	}

	// Shutdown, in order.
	log.Info("shutdown: not ready any more")
	svc.stopping.Store(true)
	log.Info("shutdown: stopping the node (postgres, leader key, lease)")
	stopNode()
	if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
		log.Error("node", "error", err)
		code = exitFailed
	}
	svc.leaderWG.Wait() // its context ended with leadership
	log.Info("shutdown: node stopped; stopping the http server")
	hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(hctx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("http server", "error", err)
		code = exitFailed
	}
	log.Info("shutdown: done")
	return code
}

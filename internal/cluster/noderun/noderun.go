// Package noderun wires and runs one pgha node from a [Spec]: its
// PostgreSQL instance, its etcd DCS client, its ha.Node and the node's REST
// API. The in-process nodes of package cluster and the nodeproc program (one
// node as an OS process) share this wiring, so both kinds behave alike.
//
// A Spec travels to nodeproc as command-line flags ([Spec.Args]) and
// environment variables for the passwords ([Spec.Env]); [Parse] reads them
// back.
//
// Test support; not covered by compatibility promises.
package noderun

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/pg"
)

// Environment variables that carry the passwords to nodeproc (kept off the
// command line, where ps shows them).
const (
	EnvSuperuserPassword   = "PGHA_NODE_SUPERUSER_PASSWORD"
	EnvReplicationPassword = "PGHA_NODE_REPLICATION_PASSWORD"
	EnvRewindPassword      = "PGHA_NODE_REWIND_PASSWORD"
)

// Spec describes one node.
type Spec struct {
	// Name is the member name; Scope and Namespace place the cluster in
	// the DCS.
	Name, Scope, Namespace string
	// Endpoints are the etcd client URLs (for a harness node: its fault
	// proxy), e.g. "http://127.0.0.1:2379".
	Endpoints []string
	// BinDir holds the PostgreSQL programs ("" auto-detects).
	BinDir string
	// DataDir and SocketDir are the instance's directories; Port its TCP
	// port on 127.0.0.1.
	DataDir, SocketDir string
	Port               int
	// ConnectAddress is the host:port other members and clients are told
	// to reach Postgres at (conn_url); "" is 127.0.0.1:Port.
	ConnectAddress string
	// Superuser, Replication and Rewind are the roles and passwords.
	Superuser, Replication, Rewind pg.Credentials
	// APIAddr is the host:port the REST API listens on.
	APIAddr string
	// Bootstrap lets the node race to create the cluster with initdb.
	Bootstrap bool
	// Dynamic is the bootstrap dynamic configuration written to /config by
	// the node that creates the cluster.
	Dynamic map[string]any
	// Tags are the member's tags (nofailover, failover_priority, ...).
	Tags dcs.Tags
	// Debug turns on debug logging.
	Debug bool
	// Trace logs the duration of every DCS, Postgres and peer-probe call
	// the node makes, the arrival of every DCS watch event, and every
	// decision (for explaining a benchmark's figures).
	Trace bool
	// FreezeArmFile, when set, is a file the node reads after each
	// synchronous-mode step: holding FreezeAfterSyncNames or
	// FreezeAfterSyncKey, it makes the node process stop itself (SIGSTOP)
	// right after that step, so a test can kill it between two steps. Only
	// for node processes.
	FreezeArmFile string
	// WatchdogDevice, when set, is the named pipe of the node's emulated
	// watchdog device (the harness reads it: cluster.Fencer); the node
	// drives it with WatchdogDriver in mode WatchdogMode ("off",
	// "automatic", "required", as watchdog.ParseMode reads them) with
	// watchdog.safety_margin WatchdogSafetyMargin (0: the default).
	WatchdogDevice, WatchdogMode string
	WatchdogSafetyMargin         time.Duration
}

// Args renders the spec as nodeproc's command-line flags (passwords
// excluded: see Env).
func (s Spec) Args() ([]string, error) {
	dyn, err := json.Marshal(s.Dynamic)
	if err != nil {
		return nil, fmt.Errorf("noderun: dynamic config: %w", err)
	}
	tags, err := json.Marshal(s.Tags)
	if err != nil {
		return nil, fmt.Errorf("noderun: tags: %w", err)
	}
	return []string{
		"-name", s.Name, "-scope", s.Scope, "-namespace", s.Namespace,
		"-etcd", strings.Join(s.Endpoints, ","),
		"-pg-bin", s.BinDir, "-pg-data", s.DataDir, "-pg-socket-dir", s.SocketDir,
		"-pg-port", strconv.Itoa(s.Port), "-pg-connect-address", s.ConnectAddress,
		"-superuser", s.Superuser.Username, "-replication-user", s.Replication.Username,
		"-rewind-user", s.Rewind.Username,
		"-api", s.APIAddr,
		"-bootstrap=" + strconv.FormatBool(s.Bootstrap),
		"-dynamic", string(dyn), "-tags", string(tags),
		"-debug=" + strconv.FormatBool(s.Debug),
		"-trace=" + strconv.FormatBool(s.Trace),
		"-freeze-arm-file", s.FreezeArmFile,
		"-watchdog-device", s.WatchdogDevice, "-watchdog-mode", s.WatchdogMode,
		"-watchdog-safety-margin", s.WatchdogSafetyMargin.String(),
	}, nil
}

// Env returns the environment entries that carry the passwords.
func (s Spec) Env() []string {
	return []string{
		EnvSuperuserPassword + "=" + s.Superuser.Password,
		EnvReplicationPassword + "=" + s.Replication.Password,
		EnvRewindPassword + "=" + s.Rewind.Password,
	}
}

// Parse reads a Spec from nodeproc's arguments (without the program name)
// and the password variables of getenv.
func Parse(args []string, getenv func(string) string) (Spec, error) {
	var s Spec
	fs := flag.NewFlagSet("nodeproc", flag.ContinueOnError)
	var etcd, dyn, tags string
	fs.StringVar(&s.Name, "name", "", "member name")
	fs.StringVar(&s.Scope, "scope", "", "cluster name")
	fs.StringVar(&s.Namespace, "namespace", "service", "DCS namespace")
	fs.StringVar(&etcd, "etcd", "", "etcd client URLs, comma-separated")
	fs.StringVar(&s.BinDir, "pg-bin", "", "PostgreSQL binary directory")
	fs.StringVar(&s.DataDir, "pg-data", "", "data directory")
	fs.StringVar(&s.SocketDir, "pg-socket-dir", "", "unix socket directory")
	fs.IntVar(&s.Port, "pg-port", 5432, "PostgreSQL port")
	fs.StringVar(&s.ConnectAddress, "pg-connect-address", "", "host:port published in conn_url (default 127.0.0.1:pg-port)")
	fs.StringVar(&s.Superuser.Username, "superuser", "postgres", "superuser role")
	fs.StringVar(&s.Replication.Username, "replication-user", "replicator", "replication role")
	fs.StringVar(&s.Rewind.Username, "rewind-user", "", "pg_rewind role (default: the superuser)")
	fs.StringVar(&s.APIAddr, "api", "127.0.0.1:8008", "REST API listen address")
	fs.BoolVar(&s.Bootstrap, "bootstrap", false, "may create the cluster with initdb")
	fs.StringVar(&dyn, "dynamic", "null", "bootstrap dynamic configuration (JSON object)")
	fs.StringVar(&tags, "tags", "null", "member tags (JSON object)")
	fs.BoolVar(&s.Debug, "debug", false, "debug logging")
	fs.BoolVar(&s.Trace, "trace", false, "log the duration of every DCS, Postgres and probe call")
	fs.StringVar(&s.FreezeArmFile, "freeze-arm-file", "", "fault injection: freeze after the synchronous-mode step this file names")
	fs.StringVar(&s.WatchdogDevice, "watchdog-device", "", "the named pipe of the harness's emulated watchdog (empty: no watchdog)")
	fs.StringVar(&s.WatchdogMode, "watchdog-mode", "", "watchdog.mode with -watchdog-device: off, automatic or required")
	fs.DurationVar(&s.WatchdogSafetyMargin, "watchdog-safety-margin", 0, "watchdog.safety_margin with -watchdog-device (0: the default)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("noderun: unexpected arguments %q", fs.Args())
	}
	if etcd != "" {
		s.Endpoints = strings.Split(etcd, ",")
	}
	if err := json.Unmarshal([]byte(dyn), &s.Dynamic); err != nil {
		return s, fmt.Errorf("noderun: -dynamic: %w", err)
	}
	if err := json.Unmarshal([]byte(tags), &s.Tags); err != nil {
		return s, fmt.Errorf("noderun: -tags: %w", err)
	}
	s.Superuser.Password = getenv(EnvSuperuserPassword)
	s.Replication.Password = getenv(EnvReplicationPassword)
	s.Rewind.Password = getenv(EnvRewindPassword)
	return s, nil
}

// PGConfig is the PostgreSQL configuration of the node: small buffers,
// fsync off, quick WAL receiver retries, passwords over TCP and trust on
// the local socket (as package pgtest configures its instances).
func (s Spec) PGConfig(logger hclog.Logger) pg.Config {
	return pg.Config{
		Name:           s.Name,
		ClusterName:    s.Scope,
		DataDir:        s.DataDir,
		BinDir:         s.BinDir,
		Port:           s.Port,
		ConnectAddress: s.ConnectAddress,
		SocketDir:      s.SocketDir,
		Superuser:      s.Superuser,
		Replication:    s.Replication,
		Rewind:         s.Rewind,
		Parameters: map[string]string{
			"shared_buffers": "16MB",
			"fsync":          "off", // test clusters never survive an OS crash anyway
			"max_wal_size":   "64MB",
			// A replica whose upstream changed reconnects after this
			// (default 5s), which would dominate failover times.
			"wal_retrieve_retry_interval": "100ms",
		},
		HBA: []string{
			"local all all trust",
			"local replication all trust",
			"host all all 127.0.0.1/32 scram-sha-256",
			"host replication all 127.0.0.1/32 scram-sha-256",
		},
		Timeout: 60 * time.Second,
		Logger:  logger,
	}
}

// Runner is one wired node, ready to run.
type Runner struct {
	spec  Spec
	inst  *pg.Instance
	store *etcddcs.Store
	ln    net.Listener
	node  *ha.Node
	log   hclog.Logger
}

// New builds the node: the pg.Instance, the etcd store, the REST listener
// and the ha.Node. It starts no goroutine except the store's watch; Run
// runs the rest. On error everything built so far is closed.
func New(ctx context.Context, s Spec, logger hclog.Logger) (r *Runner, err error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r = &Runner{spec: s, log: logger}
	built := r // r is nil after a failed return
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	r.inst, err = pg.New(ctx, s.PGConfig(logger))
	if err != nil {
		return nil, err
	}
	retry := dcs.ParseDynamicConfig(s.Dynamic).RetryTimeout
	r.store, err = etcddcs.New(ctx, etcddcs.Config{
		Endpoints: s.Endpoints, Path: dcs.Path{Namespace: s.Namespace, Scope: s.Scope}, Name: s.Name,
		RetryTimeout: retry, Logger: logger.Named("dcs"),
	})
	if err != nil {
		return nil, err
	}
	r.ln, err = net.Listen("tcp", s.APIAddr)
	if err != nil {
		return nil, err
	}
	cfg := ha.Config{
		Name: s.Name, Scope: s.Scope, Store: r.store, Postgres: r.inst,
		APIURL: "http://" + r.ln.Addr().String() + "/patroni",
		Tags:   s.Tags,
		Logger: logger,
	}
	if s.FreezeArmFile != "" {
		cfg.Postgres = freezePG{Instance: r.inst, arm: s.FreezeArmFile, log: logger}
		cfg.Store = freezeStore{Store: r.store, arm: s.FreezeArmFile, log: logger}
	}
	if s.Trace {
		tl := logger.Named("trace")
		cfg.Store = tracedStore{Store: cfg.Store, log: tl}
		cfg.Postgres = tracedPG{Postgres: cfg.Postgres, log: tl}
		cfg.HTTPClient = &http.Client{Timeout: time.Second, Transport: tracedTransport{rt: http.DefaultTransport.(*http.Transport).Clone(), log: tl}}
		cfg.Hooks.OnDecision = func(d string) { tl.Info("decision", "decision", d) }
	}
	if s.WatchdogDevice != "" {
		mode, err := watchdog.ParseMode(s.WatchdogMode)
		if err != nil {
			return nil, err
		}
		cfg.Watchdog = watchdog.Config{Mode: mode, Device: s.WatchdogDevice, SafetyMargin: s.WatchdogSafetyMargin,
			Driver: WatchdogDriver{}, Logger: logger}
	}
	if s.Bootstrap {
		cfg.Bootstrap = &ha.Bootstrap{Initdb: pg.InitdbOptions{DataChecksums: true, NoSync: true}, DCS: s.Dynamic}
	}
	r.node, err = ha.New(cfg)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Node returns the ha.Node.
func (r *Runner) Node() *ha.Node { return r.node }

// Instance returns the node's PostgreSQL instance.
func (r *Runner) Instance() *pg.Instance { return r.inst }

// APIURL returns the URL of the node's GET /patroni.
func (r *Runner) APIURL() string { return "http://" + r.ln.Addr().String() + "/patroni" }

// Run serves the REST API and runs the node until ctx ends (or the node
// refuses to act), then closes the listener, the store and the instance.
// The node's own shutdown (Postgres stopped fast, leader key released,
// lease revoked) happens inside, before Run returns.
func (r *Runner) Run(ctx context.Context) error {
	srv := &http.Server{Handler: r.node.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("REST API stopped", "error", err)
		}
	}()
	err := r.node.Run(ctx)
	_ = srv.Close()
	<-served
	r.close()
	return err
}

func (r *Runner) close() {
	if r.ln != nil {
		_ = r.ln.Close()
	}
	if r.store != nil {
		_ = r.store.Close()
	}
	if r.inst != nil {
		_ = r.inst.Close()
	}
}

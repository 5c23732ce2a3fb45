package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/examples/pgha/internal/config"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/pg"
)

// Options say how to run a node.
type Options struct {
	// ConfigPath is the patroni.yml-shaped file (or directory of files).
	ConfigPath string
	// Env is the environment the configuration's overrides are read from;
	// nil means os.Environ(). The PATRONI_* and PGHA_* variables it reads are
	// removed from this process's environment before Postgres starts.
	Env []string
	// LogOutput receives the logs; nil means standard error.
	LogOutput io.Writer
	// Reload delivers SIGHUP: re-read the file and apply what can change.
	Reload <-chan struct{}
	// ShutdownTimeout bounds the REST API's shutdown (open requests, such as
	// a POST /switchover waiting for its outcome). Default 5 s.
	ShutdownTimeout time.Duration
}

// ConfigError is returned when the configuration cannot be read or used;
// the command exits with status 2 for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// daemon is one running node.
type daemon struct {
	opts  Options
	env   []string
	log   hclog.Logger
	cfg   atomic.Pointer[config.Config]
	inst  *pg.Instance
	node  *ha.Node
	store *etcddcs.Store
	srv   *server
	known map[string]bool // parameter names this PostgreSQL accepts
	// warned remembers the removed parameters already reported.
	warnedMu sync.Mutex
	warned   map[string]bool
	dynMu    sync.Mutex
	dyn      map[string]any // the dynamic configuration last seen
	apply    sync.Mutex     // one applyPostgres at a time
	params   map[string]string
	hba      []string
}

// Run runs one node until ctx ends (SIGTERM, SIGINT) or the node refuses to
// act. It follows client-go's leader-election example: the caller cancels
// ctx on a signal; Run then shuts the REST API down first (as Patroni does,
// so load balancers stop sending traffic here), then cancels the HA loop,
// whose Run stops Postgres and releases the leader key and the lease under
// a fresh context bounded by the TTL. That order matters: the leader key
// must be released only after Postgres has stopped accepting writes, or
// another member could be promoted while this one still takes them; ha.Node
// guarantees it (a failed stop keeps the key until the lease runs out).
func Run(ctx context.Context, o Options) error {
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.LogOutput == nil {
		o.LogOutput = os.Stderr
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	cfg, err := config.LoadWith(config.Options{Path: o.ConfigPath, Env: o.Env})
	if err != nil {
		return &ConfigError{Err: err}
	}
	d := &daemon{opts: o, env: o.Env}
	d.cfg.Store(cfg)
	d.log = newLogger(cfg.Log, o.LogOutput)
	for _, p := range cfg.Warnings() {
		d.log.Warn("configuration: " + p.String())
	}
	// Patroni removes the variables it read, so Postgres does not inherit
	// passwords from them.
	for _, k := range config.EnvVariables(o.Env) {
		_ = os.Unsetenv(k)
	}
	return d.run(ctx)
}

func (d *daemon) run(ctx context.Context) error {
	cfg := d.cfg.Load()
	dyn := cfg.DynamicConfig()
	parsed := dcs.ParseDynamicConfig(dyn)

	ecfg := cfg.EtcdConfig(parsed.RetryTimeout)
	ecfg.Logger = d.log
	store, err := etcddcs.New(context.Background(), ecfg)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("etcd: %w", err)}
	}
	d.store = store
	defer store.Close()

	// The DCS /config, when there is one, is the dynamic configuration in
	// force (bootstrap.dcs only seeds it).
	cctx, cancel := context.WithTimeout(ctx, parsed.RetryTimeout)
	if c, err := store.Cluster(cctx); err == nil && c.Config != nil && len(c.Config.Data) > 0 {
		dyn = c.Config.Data
	} else if err != nil {
		d.log.Warn("could not read /config from etcd yet; starting with bootstrap.dcs", "error", err)
	}
	cancel()
	d.setDynamic(dyn)

	pcfg, notes := cfg.PGConfig(dyn)
	for _, n := range notes {
		d.log.Warn("configuration: " + n)
	}
	if pcfg.BinDir == "" {
		if b, err := pg.FindBinDir(ctx); err == nil {
			pcfg.BinDir = b
		}
	}
	if pcfg.BinDir != "" {
		if k, err := config.KnownParameters(ctx, pcfg.BinDir); err != nil {
			d.log.Warn("cannot list PostgreSQL's parameters; passing them all through", "error", err)
		} else {
			d.known = k
		}
	}
	pcfg.Parameters = d.filterParameters(pcfg.Parameters)
	d.params, d.hba = maps.Clone(pcfg.Parameters), slices.Clone(pcfg.HBA)
	pcfg.Logger = d.log
	inst, err := pg.New(ctx, pcfg)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("postgresql: %w", err)}
	}
	d.inst = inst
	defer inst.Close()

	hcfg := cfg.HAConfig()
	hcfg.Store, hcfg.Postgres, hcfg.Logger = store, inst, d.log
	if hcfg.Bootstrap != nil && hcfg.Bootstrap.Initdb.Locale != "" {
		if ok, known := config.LocaleAvailable(hcfg.Bootstrap.Initdb.Locale); known && !ok {
			fb := config.FallbackLocale
			if ok, _ := config.LocaleAvailable(fb); !ok {
				fb = "C"
			}
			d.log.Warn(fmt.Sprintf("configuration: bootstrap.initdb: locale %q is not installed on this machine (see locale -a); "+
				"a bootstrap would fail, so pgha uses %s instead. Install the locale before bootstrapping if you need its collation",
				hcfg.Bootstrap.Initdb.Locale, fb))
			hcfg.Bootstrap.Initdb.Locale = fb
		}
	}
	client, err := peerClient(cfg)
	if err != nil {
		return &ConfigError{Err: err}
	}
	hcfg.HTTPClient = client
	node, err := ha.New(hcfg)
	if err != nil {
		return &ConfigError{Err: err}
	}
	d.node = node

	srv, err := newServer(cfg, node.Handler(), d.log, func() { d.reload(context.Background(), "POST /reload") })
	if err != nil {
		return &ConfigError{Err: err}
	}
	d.srv = srv
	ln, err := net.Listen("tcp", cfg.RestAPI.Listen)
	if err != nil {
		return &ConfigError{Err: fmt.Errorf("restapi.listen: %w", err)}
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.serve(ln) }()
	d.log.Info("REST API listening", "address", ln.Addr().String(), "api_url", cfg.APIURL())

	nodeCtx, cancelNode := context.WithCancel(context.Background())
	defer cancelNode()
	var wg sync.WaitGroup
	wg.Go(func() { d.followDynamic(nodeCtx) })
	runDone := make(chan error, 1)
	go func() { runDone <- node.Run(nodeCtx) }()

	var runErr error
	stopped := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-d.opts.Reload:
			d.reload(ctx, "SIGHUP")
		case runErr = <-runDone:
			stopped = true
			d.log.Error("the node stopped", "error", runErr)
			break loop
		case err := <-serveDone:
			d.log.Error("the REST API stopped", "error", err)
			serveDone <- err
			break loop
		}
	}
	// Patroni's order: the REST API first, then the HA loop (which stops
	// Postgres, then releases the leader key and the lease).
	d.log.Info("shutting down: REST API, then Postgres, then the leader key and the lease")
	sctx, scancel := context.WithTimeout(context.Background(), d.opts.ShutdownTimeout)
	srv.shutdown(sctx)
	scancel()
	cancelNode()
	if !stopped {
		runErr = <-runDone
	}
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	d.log.Info("stopped")
	return nil
}

func (d *daemon) setDynamic(m map[string]any) {
	d.dynMu.Lock()
	d.dyn = m
	d.dynMu.Unlock()
}

func (d *daemon) dynamic() map[string]any {
	d.dynMu.Lock()
	defer d.dynMu.Unlock()
	return d.dyn
}

// followDynamic applies changes of the DCS /config to Postgres: its
// postgresql.parameters and pg_hba (ha.Node does not apply them itself).
func (d *daemon) followDynamic(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := d.store.Watch(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range ch {
			if ev.Key != dcs.KeyConfig && ev.Type != dcs.EventReset {
				continue
			}
			if ev.Cluster == nil || ev.Cluster.Config == nil || len(ev.Cluster.Config.Data) == 0 {
				continue
			}
			d.setDynamic(ev.Cluster.Config.Data)
			d.applyPostgres(ctx, "the dynamic configuration changed")
		}
	}
}

// applyPostgres recomputes Postgres's parameters and pg_hba from the local
// file and the dynamic configuration and, when they changed, hands them to
// pg and reloads a running server.
func (d *daemon) applyPostgres(ctx context.Context, why string) {
	d.apply.Lock()
	defer d.apply.Unlock()
	cfg := d.cfg.Load()
	pcfg, notes := cfg.PGConfig(d.dynamic())
	params := d.filterParameters(pcfg.Parameters)
	if maps.Equal(params, d.params) && slices.Equal(pcfg.HBA, d.hba) {
		return
	}
	for _, n := range notes {
		d.log.Warn("configuration: " + n)
	}
	adj, err := d.inst.SetParameters(params)
	if err != nil {
		d.log.Error("new PostgreSQL parameters refused", "error", err)
		return
	}
	for _, a := range adj {
		d.log.Warn("parameter adjusted: " + a.String())
	}
	if err := d.inst.SetHBA(pcfg.HBA); err != nil {
		d.log.Error("new pg_hba refused", "error", err)
	}
	d.params, d.hba = params, slices.Clone(pcfg.HBA)
	if _, running := d.inst.Running(); !running {
		d.log.Info("Postgres configuration updated; it applies at the next start", "reason", why)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Through the node, which fires on_reload.
	if err := d.node.Reload(rctx); err != nil {
		d.log.Warn("reloading Postgres", "error", err)
		return
	}
	d.log.Info("Postgres configuration reloaded", "reason", why)
	if st, err := d.inst.Status(rctx); err == nil && st.PendingRestart {
		d.log.Warn("some changed parameters need a restart of Postgres to take effect (pgha restart)")
	}
}

// reload re-reads the configuration file (SIGHUP, POST /reload) and applies
// what can change without a restart of pgha: the log level, the REST API's
// certificate and extra headers, Postgres's parameters and pg_hba. Other
// changes are reported as needing a restart.
func (d *daemon) reload(ctx context.Context, why string) {
	old := d.cfg.Load()
	cfg, err := config.LoadWith(config.Options{Path: d.opts.ConfigPath, Env: d.env})
	if err != nil {
		d.log.Error("reload ("+why+"): the configuration is not valid, keeping the one in use", "error", err)
		return
	}
	if !slices.Equal(problemStrings(cfg.Warnings()), problemStrings(old.Warnings())) {
		for _, p := range cfg.Warnings() {
			d.log.Warn("configuration: " + p.String())
		}
	}
	if cfg.Log.Level != old.Log.Level {
		d.log.SetLevel(hclogLevel(cfg.Log.Level))
	}
	if err := d.srv.update(cfg); err != nil {
		d.log.Error("reload: REST API certificate", "error", err)
	}
	for _, k := range restartOnly(old, cfg) {
		d.log.Warn("reload: " + k + " changed; restart pgha to apply it")
	}
	d.cfg.Store(cfg)
	d.log.Info("configuration reloaded", "trigger", why)
	d.applyPostgres(ctx, why)
}

func problemStrings(ps []config.Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// restartOnly lists the settings that differ and that only a restart of
// pgha applies.
func restartOnly(a, b *config.Config) []string {
	var out []string
	diff := func(name string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, name)
		}
	}
	diff("name", a.Name, b.Name)
	diff("scope", a.Scope, b.Scope)
	diff("namespace", a.Namespace, b.Namespace)
	diff("restapi.listen", a.RestAPI.Listen, b.RestAPI.Listen)
	diff("restapi.connect_address", a.RestAPI.ConnectAddress, b.RestAPI.ConnectAddress)
	diff("restapi.authentication", a.RestAPI.Username+":"+a.RestAPI.Password, b.RestAPI.Username+":"+b.RestAPI.Password)
	diff("restapi.allowlist", a.RestAPI.Allowlist, b.RestAPI.Allowlist)
	diff("restapi.verify_client", a.RestAPI.VerifyClient, b.RestAPI.VerifyClient)
	diff("etcd", a.Etcd, b.Etcd)
	diff("postgresql.listen", fmt.Sprint(a.Postgres.ListenHosts, a.Postgres.Port), fmt.Sprint(b.Postgres.ListenHosts, b.Postgres.Port))
	diff("postgresql.connect_address", a.Postgres.ConnectAddress, b.Postgres.ConnectAddress)
	diff("postgresql.data_dir", a.Postgres.DataDir, b.Postgres.DataDir)
	diff("postgresql.bin_dir", a.Postgres.BinDir, b.Postgres.BinDir)
	diff("postgresql.authentication", []any{a.Postgres.Superuser, a.Postgres.Replication, a.Postgres.Rewind},
		[]any{b.Postgres.Superuser, b.Postgres.Replication, b.Postgres.Rewind})
	diff("postgresql.callbacks", a.Postgres.Callbacks, b.Postgres.Callbacks)
	diff("watchdog", a.Watchdog, b.Watchdog)
	diff("tags", a.Tags, b.Tags)
	return out
}

// peerClient is the HTTP client the node probes its peers with: it trusts
// restapi.cafile and presents restapi's certificate when client
// certificates are verified.
func peerClient(cfg *config.Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	r := cfg.RestAPI
	if r.CAFile != "" || r.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if r.CAFile != "" {
			b, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("restapi.cafile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("restapi.cafile: %s holds no PEM certificate", r.CAFile)
			}
			tc.RootCAs = pool
		}
		if r.CertFile != "" && r.VerifyClient != "none" {
			key := r.KeyFile
			if key == "" {
				key = r.CertFile
			}
			cert, err := tls.LoadX509KeyPair(r.CertFile, key)
			if err != nil {
				return nil, fmt.Errorf("restapi.certfile: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, Timeout: time.Second}, nil
}

func newLogger(l config.Log, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "pgha",
		Level:      hclogLevel(l.Level),
		Output:     w,
		JSONFormat: l.JSON,
		TimeFormat: "2006-01-02 15:04:05.000",
	})
}

func hclogLevel(level string) hclog.Level {
	switch strings.ToUpper(level) {
	case "TRACE":
		return hclog.Trace
	case "DEBUG":
		return hclog.Debug
	case "WARNING", "WARN":
		return hclog.Warn
	case "ERROR", "CRITICAL", "FATAL":
		return hclog.Error
	}
	return hclog.Info
}

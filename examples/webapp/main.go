package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/examples/webapp/notes"
	"github.com/pgha/pgha/routing"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	listen          string
	dcsURL, scope   string
	hosts           string
	db              string
	maxLag          int64
	timeout         time.Duration
	shutdownTimeout time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("webapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&o.dcsURL, "dcs-url", "", "the cluster's etcd: etcd3://host:port[,host:port]/namespace (as pgha --dcs-url)")
	fs.StringVar(&o.scope, "scope", "demo", "the cluster's name (scope)")
	fs.StringVar(&o.hosts, "hosts", "", "instead of -dcs-url: the PostgreSQL hosts, host:port,host:port (the router probes them)")
	fs.StringVar(&o.db, "db", "user=postgres password=demo dbname=postgres", "base connection string (credentials, database; host and port come from the cluster)")
	fs.Int64Var(&o.maxLag, "max-lag", routing.DefaultMaxLag, "replica lag bound for reads, bytes of WAL")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each request's work, waiting for a primary included")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a shutdown waits for requests in flight")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (o.dcsURL == "") == (o.hosts == "") {
		return o, errors.New("give exactly one of -dcs-url (a pgha or Patroni cluster's etcd) and -hosts")
	}
	if o.timeout <= 0 || o.shutdownTimeout <= 0 {
		return o, errors.New("-timeout and -shutdown-timeout must be positive")
	}
	return o, nil
}

// run is the whole program; it returns the exit code when ctx ends (after a
// graceful shutdown) or on a startup error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "webapp:", err)
		}
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// Where the cluster's topology comes from.
	var source routing.Source
	if o.dcsURL != "" {
		endpoints, namespace, err := parseDCSURL(o.dcsURL)
		if err != nil {
			fmt.Fprintln(stderr, "webapp:", err)
			return exitUsage
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		store, err := etcddcs.New(sctx, etcddcs.Config{Endpoints: endpoints, Path: dcs.Path{Namespace: namespace, Scope: o.scope}})
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "webapp: connecting to etcd:", err)
			return exitFailed
		}
		defer store.Close() // last: after the router
		source = routing.FromDCS(store)
	} else {
		source = routing.FromHosts(strings.Split(o.hosts, ",")...)
	}

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	router, err := routing.New(rctx, routing.Config{
		Source: source, ConnString: o.db, MaxLag: o.maxLag,
		Hooks: routing.Hooks{OnLeaderChange: func(old, cur routing.Epoch) {
			log.Info("primary changed", "from", old.Leader, "to", cur.Leader, "timeline", cur.Timeline)
		}},
	})
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "webapp: starting the router:", err)
		return exitFailed
	}
	defer router.Close() // after the HTTP server has drained

	svc, err := notes.New(notes.Config{Router: router, Timeout: o.timeout, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "webapp:", err)
		return exitFailed
	}
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = svc.Migrate(mctx)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "webapp:", err)
		return exitFailed
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintln(stderr, "webapp:", err)
		return exitFailed
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout: o.timeout + 5*time.Second, IdleTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "webapp: listening on http://%s (primary: %s)\n", ln.Addr(), router.Stats().Epoch.Leader)

	select {
	case err := <-served:
		fmt.Fprintln(stderr, "webapp:", err)
		return exitFailed
	case <-ctx.Done():
	}
	// Graceful shutdown: not ready, drain, then close the router and the
	// DCS client (deferred above, in reverse order).
	log.Info("shutting down: draining requests in flight")
	svc.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the shutdown timeout", "error", err)
		_ = srv.Close()
		<-served
		return exitFailed
	}
	<-served
	log.Info("stopped")
	return exitOK
}

// parseDCSURL parses etcd3://host:port[,host:port...]/namespace, as the pgha
// CLI's --dcs-url (schemes etcd, etcd3, http; this example does not set up
// TLS to etcd).
func parseDCSURL(s string) (endpoints []string, namespace string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "etcd3", s
	}
	switch scheme {
	case "etcd", "etcd3", "http":
	default:
		return nil, "", fmt.Errorf("-dcs-url: scheme %q is not supported (etcd3://host:port/namespace)", scheme)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if !strings.Contains(h, ":") {
			h += ":2379"
		}
		endpoints = append(endpoints, "http://"+h)
	}
	if len(endpoints) == 0 {
		return nil, "", fmt.Errorf("-dcs-url %q names no host", s)
	}
	return endpoints, strings.Trim(path, "/"), nil
}

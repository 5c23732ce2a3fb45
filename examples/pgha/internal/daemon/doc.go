// Package daemon runs one pgha node from a patroni.yml-shaped configuration:
// the etcd client (dcs/etcddcs), the PostgreSQL instance (pg), the HA loop
// (ha.Node) and its REST API server, which is what `pgha run CONFIG.yml`
// does.
//
// # Usage
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	err := daemon.Run(ctx, daemon.Options{ConfigPath: "/etc/patroni/patroni.yml", Reload: sighup})
//
// # Lifecycle
//
// Run loads the configuration (a *ConfigError when it cannot be used),
// connects to etcd, reads the dynamic configuration (/config, else
// bootstrap.dcs), creates the instance and the node, serves the REST API
// (TLS when restapi.certfile is set, with the client-certificate policy of
// restapi.verify_client) and runs the node. It follows client-go's
// leader-election example: the caller cancels ctx on SIGTERM or SIGINT, and
// Run then stops in Patroni's order: the REST API first (load balancers stop
// routing here), then the HA loop, whose ha.Node.Run stops Postgres (fast)
// and only then releases the leader key and revokes the lease, under its own
// context bounded by the TTL. Guarded work must stop before the key is
// released: a primary still taking writes while another member is promoted
// is a split brain, which is why the release waits for the stop and is
// skipped when the stop fails (the lease then runs out instead).
//
// SIGHUP (Options.Reload) and POST /reload re-read the file and apply what
// can change without a restart: the log level, the REST API's certificate
// and extra headers, Postgres's parameters and pg_hba (then Postgres
// reloads). Other changes are logged as needing a restart. Changes of the
// DCS /config (edit-config) are applied to Postgres's parameters as they
// come.
//
// # Errors
//
// *ConfigError: the configuration, the TLS files or the listen address
// cannot be used (exit status 2). Anything else is the node's own error
// (ha.ErrRefused, ...; exit status 1).
//
// The reference daemon's internals; not covered by compatibility promises.
package daemon

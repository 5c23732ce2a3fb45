// Command nodeproc runs one pgha node (PostgreSQL, its etcd client, the HA
// loop and the REST API) as an OS process, for the cluster harness's tests
// that must SIGKILL or SIGSTOP a node. It logs to stderr and runs until
// SIGTERM or SIGINT, then shuts the node down (Postgres stopped fast, leader
// key released, lease revoked).
//
// Flags (see noderun.Parse): -name, -scope, -namespace, -etcd, -pg-bin,
// -pg-data, -pg-socket-dir, -pg-port, -superuser, -replication-user,
// -rewind-user, -api, -bootstrap, -dynamic (JSON), -tags (JSON), -debug,
// -trace, -freeze-arm-file, -watchdog-device, -watchdog-mode,
// -watchdog-safety-margin.
// Passwords come from PGHA_NODE_SUPERUSER_PASSWORD,
// PGHA_NODE_REPLICATION_PASSWORD and PGHA_NODE_REWIND_PASSWORD. Run as root,
// PostgreSQL runs as the postgres OS user (package pg does it).
//
// Test support; not covered by compatibility promises.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/internal/cluster/noderun"
)

func main() {
	spec, err := noderun.Parse(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodeproc:", err)
		os.Exit(2)
	}
	level := hclog.Info
	if spec.Debug {
		level = hclog.Debug
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: spec.Name, Level: level, Output: os.Stderr, TimeFormat: "15:04:05.000"})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r, err := noderun.New(ctx, spec, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		os.Exit(1)
	}
	if err := r.Run(ctx); err != nil {
		logger.Error("node stopped", "error", err)
		os.Exit(1)
	}
}

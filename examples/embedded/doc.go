// Command embedded is a Go service that runs the pgha agent (ha.Node)
// in-process for its own PostgreSQL: the sidecar-less mode, the example a
// service author copies. There is no separate pgha or Patroni process: the
// service owns its Postgres, holds the member's lease in etcd, takes part in
// elections, and serves the Patroni-compatible REST API on its own HTTP mux.
//
//	EMBEDDED_SUPERUSER_PASSWORD=... EMBEDDED_REPLICATION_PASSWORD=... \
//	embedded -name svc1 -scope shop -etcd http://10.0.0.1:2379 \
//	         -data-dir /var/lib/svc/pg -pg-port 5432 -listen 10.0.0.5:8008 -bootstrap
//
// What it shows:
//
//   - One mux. The service's own endpoints (/readyz, /app/status) and the
//     node's REST API (/patroni, /primary, /replica, /health, /switchover,
//     /metrics, ...) are served by the same http.Server; the REST API is
//     mounted at the root, so the api_url the member publishes
//     (http://<listen>/patroni) works for peers, HAProxy health checks and
//     `pgha`/patronictl.
//   - Readiness tied to the role. GET /readyz answers 200 when Postgres runs
//     as the leader or as a streaming replica, 503 otherwise (starting,
//     cloning, fenced, shutting down). GET /readyz?role=primary answers 200
//     only on the leader: point a writer's health check there.
//   - Hooks. OnRoleChange logs and records each role change;
//     OnStartedLeading starts leader-only work (here a heartbeat row written
//     every second to the local primary) whose context ha cancels the moment
//     leadership ends; OnStoppedLeading logs.
//   - Shutdown order, on SIGINT or SIGTERM: /readyz turns 503 at once (load
//     balancers drain the service); then the node stops: Postgres is shut
//     down (fast) and, on the leader, the leader key is released with the
//     final WAL position so a replica takes over without waiting for the TTL,
//     and the lease is revoked; the leader-only work has ended (its context
//     was cancelled); only then does the HTTP server stop, so that peers
//     probing /patroni and load balancers checking /primary get answers, not
//     refused connections, during the handover; the etcd client closes last.
//
// Passwords come from the environment (EMBEDDED_SUPERUSER_PASSWORD,
// EMBEDDED_REPLICATION_PASSWORD, EMBEDDED_REWIND_PASSWORD), never the
// command line. Running as root, Postgres runs as the postgres OS user
// (package pg).
package main

// Command benchreport measures pgha on a real 3-node cluster on this machine
// and, with --compare-patroni, Debian's Patroni (3.0.2) on the same machine
// with the same ttl, loop_wait and retry_timeout, and prints one table with
// the median and maximum of every figure over repeated runs and the ratio
// pgha/Patroni of the medians.
//
// Figures (each trial on a stable cluster, writes every 10 ms through every
// node on its own connection, through HAProxy and through the pgha router):
//
//   - node-loss failover: SIGKILL of the primary's agent and of its
//     postmaster with every process it forked, to the first acknowledged
//     write on another node, and the part of it after etcd deleted the dead
//     leader's key (lease expiry seen by a watch);
//   - Postgres-crash recovery: SIGKILL of the primary's postmaster (and its
//     children) alone, the agent alive, to the first acknowledged write on a
//     postmaster started after the kill (in place, or another node);
//   - planned switchover write outage (POST /switchover to the leader, as
//     patronictl does): from the last write acknowledged by the old primary
//     to the first by the new one, directly, through HAProxy (configured as
//     in the users' guide: /primary health checks) and through the router,
//     with the failed transactions of each path;
//   - per-operation cost (acquire, SELECT 1, release) through a plain
//     pgxpool on the primary, the router and HAProxy, interleaved op by op
//     (at least 5 runs of 5000 operations), their ratios to the plain pool
//     within each run, and each system's own write path compared: pgha's
//     router against Patroni's HAProxy;
//   - agent RSS and idle CPU per node, from /proc (the agent's process and
//     its descendants that are not PostgreSQL);
//   - etcd requests per second per node at idle: the embedded etcd's
//     grpc_server_msg_received_total (every unary call and every stream
//     message, the JSON gateway Patroni uses included) over the idle window,
//     divided by the number of nodes.
//
// Each system gets its own embedded etcd. Patroni runs as the postgres OS
// user with data directories under a temporary directory owned by it, on
// free ports; every process started is killed by pid at exit.
//
// Usage (as root, from inside the module; it builds nodeproc with go build):
//
//	go run ./internal/cmd/benchreport -n 3 --compare-patroni
//
// Test support; not covered by compatibility promises.
package main

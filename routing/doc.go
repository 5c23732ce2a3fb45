// Package routing is a role-aware pgx router: writes go to the current
// primary of a PostgreSQL cluster, reads to healthy replicas within a lag
// bound, with no proxy hop, and a failover or switchover costs the
// application as little as possible.
//
// # Usage
//
// A Router holds one pgxpool.Pool per node and role, built from one base
// configuration (credentials, database, TLS, pool settings) with each node's
// host and port. It follows the cluster through a Source:
//
//   - [FromDCS] follows the leader key and the member keys of a pgha or
//     Patroni cluster through the DCS watch (push: a leader change reaches
//     the router as an event);
//   - [FromHosts] takes a list of addresses and lets the router's probes
//     decide who is primary (pg_is_in_recovery()), as hasql does.
//
// For example, on an etcd-backed cluster:
//
//	store, _ := etcddcs.New(ctx, etcddcs.Config{Endpoints: eps, Path: dcs.Path{Scope: "shop"}})
//	router, err := routing.New(ctx, routing.Config{
//		Source:     routing.FromDCS(store),
//		ConnString: "user=app password=secret dbname=shop",
//	})
//	if err != nil { ... }
//	defer router.Close()
//	lsn, err := router.Write(ctx, func(tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, "INSERT INTO orders (id) VALUES ($1)", id)
//		return err
//	})
//	err = router.Read(ctx, routing.ReadOptions{After: lsn}, func(tx pgx.Tx) error { ... })
//
// Acquisition: [Router.Primary] waits (bounded by ctx) while the cluster has
// no leader; [Router.Replica] picks among running, streaming replicas within
// Config.MaxLag of the primary's current position and not tagged
// noloadbalance, by a [Picker] (RoundRobin, LeastLag, LowestLatency), falling
// back to the primary if allowed; [Router.Any] takes any of them;
// [Router.Acquire] speaks hasql's criteria ([Primary], [Standby],
// [PreferStandby], [PreferPrimary], [Alive]). [Router.Write] and
// [Router.Read] run a transaction with retries. The node choice is a pure
// function of an immutable [Topology] ([Topology.Candidates]), which
// [Router.Topology] returns.
//
// The router probes every node over its own connection each
// Config.ProbeInterval (role, position, WAL receiver, timeline, round trip),
// so lag is measured against the primary's current position, not the
// optime the leader last published. With FromDCS, probing can be disabled;
// positions then come from the member keys.
//
// # Testing your application
//
// Run the router on a dcs/memdcs server: publish member keys whose conn_url
// points at test databases, take the leader key with one client, and move it
// (ReleaseLeader, then AcquireLeader on another client) to see your code
// follow. When the members point at standalone servers rather than real
// replicas, set ProbeInterval to -1 so the member keys alone decide roles and
// lag (publish xlog_location on the leader and replay_lsn on replicas). See
// ExampleRouter_WaitForNode.
//
// # Lifecycle
//
// [New] validates the Config, starts the source, the router's goroutine and
// the prober, and returns once the first topology is known (bounded by its
// ctx). Pools connect lazily. [Router.Close] is idempotent: it stops the
// goroutines, waits for them, and closes every pool (waiting for acquired
// connections to be released). Hooks report leader changes, conflicts,
// retries and every new topology; [Router.Stats] gives counters.
//
// # Safety
//
// Epoch fencing. The primary's pool is tagged with the leader's tenure
// ([Epoch]: name, leader key create revision, timeline). When the source
// reports a new tenure, or no leader, the router, before it publishes the
// new topology: marks the old pool fenced so it hands out no connection,
// closes the socket of every connection it has, idle or in use (an in-flight
// statement fails at once; nothing more is sent to the old primary over it),
// and closes the pool. New writes go to the new primary's fresh pool as soon
// as the event arrives. Each new connection of a primary pool must find its
// server out of recovery (target_session_attrs=primary semantics,
// [ErrNotPrimary]), the last safety net when the topology is stale. Replica
// pools set default_transaction_read_only. A node acting as a primary
// besides the one followed is reported ([Conflict], Hooks.OnConflict,
// Stats.Conflicts) and gets no traffic: the DCS leader decides.
//
// What this guarantees: once the router has seen the leader change, no
// statement of its own reaches the old primary. Its limit: the router learns
// of the change when the DCS does, through the watch. A primary that lost its
// lease but still runs (its agent frozen, a partition the DCS has not timed
// out yet) keeps accepting the router's writes until the leader key expires
// or moves; that window is the DCS TTL, and pgha's leader fence (stop
// Postgres before the lease deadline), synchronous_mode_strict and a
// watchdog close it, not the router. While the DCS cannot be reached the
// router keeps the last topology it saw (the source reconnects with
// backoff); the primary's own fence is what stops writes then. With
// Config.MaxStaleness the router fails closed instead (RELIABILITY.md D11):
// it confirms the followed tenure with the DCS every MaxStaleness/4 (a
// linearizable read, [dcs.Confirmer]), and once MaxStaleness has passed
// without a confirmation no new write connection is handed out
// ([ErrStaleView]) until one succeeds; a leader it has not confirmed is
// never chosen. Other clients
// of the old primary are not the router's to fence. With FromHosts there is
// no leader key: the probes decide; a failed probe keeps a host's role for a
// probe TTL (3 ProbeInterval + ProbeTimeout), so one timeout does not cut the
// primary's connections; two writable hosts on the same timeline get no
// writes at all; and a host that a partition hides from the router but not
// from its clients is fenced by nothing the router does.
//
// Planned switchovers. When /failover names a switchover, the router holds
// new write acquisitions (up to Config.SwitchoverHold), lets in-flight
// transactions finish, opens the named candidate's primary pool meanwhile
// (as many connections as the current primary pool has; each is checked out
// of recovery on its first use), and releases the waiters to the new primary
// once its leader key appears. A new leader still promoting refuses writes
// ([ErrNotPrimary]); acquisitions retry it every quarter of
// Config.RetryInterval. A switchover that is refused (the request cleared)
// or takes longer than the hold releases the waiters to whoever leads.
//
// Read-your-writes. Write returns the commit's WAL position (read with
// pg_current_wal_insert_lsn() after COMMIT: one more round trip per Write).
// A read given it (ReadOptions.After) goes to a replica whose probed replay
// position has passed it, or asks a replica (pg_last_wal_replay_lsn()) and
// waits up to Config.ReadYourWritesWait, or uses the primary. Logic that
// reads and then writes what it read must stay on the primary (inside
// Write's fn): a replica may be behind, and a token says nothing about other
// clients' writes. After a failover that lost the write, no node has it,
// whatever the token says.
//
// # Errors
//
// Errors wrap sentinels to test with errors.Is: [ErrNoPrimary] and
// [ErrNoNode] when ctx ended while waiting (they also wrap ctx's error and
// the last connection error), [ErrAmbiguousCommit] when COMMIT was in flight
// when the connection failed (never retried: the caller must find out),
// [ErrFenced] for a connection cut because its primary's tenure ended,
// [ErrNotPrimary] for a primary connection that found a server in recovery,
// [ErrStaleView] (with ErrNoPrimary) when MaxStaleness refused a write, and
// [ErrClosed]. [NodeError] tells which node and step failed.
// [SafeToRetry] says whether a failure before COMMIT may run again (it is
// what Write and Read use).
package routing

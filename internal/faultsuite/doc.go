// Package faultsuite is pgha's fault suite: the scenarios of RELIABILITY.md
// section 2 run against real PostgreSQL nodes (package internal/cluster),
// a real etcd, and the workload and history checker of package
// internal/history. The package has no API; it is its tests.
//
// Each scenario is a test whose closing t.Log line says what it injected
// and what it verified. Every scenario checks that there were never two
// writers (the history checker on server-stamped writes, or the cluster's
// split-brain Checker) and that the cluster converges after healing.
//
// # DCS-side scenarios (etcd_*_test.go)
//
// They run on a 3-member etcd cluster whose members are separate OS
// processes (internal/etcdtest.StartCluster), so a member can be killed,
// restarted, or paused with SIGSTOP; each harness node reaches every member
// through its own fault proxy (cluster.Options.EtcdEndpoints), so one node
// can also be cut from etcd alone.
//
//   - C5: the etcd leader paused; the agents must go on through the other
//     members with no demotion (etcd elects another leader well within
//     retry_timeout); a primary killed meanwhile fails over within the
//     budget. It found a false demotion, fixed in dcs/etcddcs (renewals
//     hedged onto another connection, a stalled watch stream replaced).
//   - D11: two routers (routing.FromDCS) cut from every etcd member while
//     the cluster switches over: the one with MaxStaleness fails closed
//     after the bound, neither writes to the leader it never saw, and both
//     follow the new primary after healing.
//   - D2: the primary cut from etcd only, in failsafe mode: it stays, and
//     nobody else is promoted. (The default-mode D2 is internal/cluster's
//     TestSwitchover, which cuts the primary from etcd and waits for the
//     one new primary under the split-brain checker; D7 is the same fault
//     under the history checker.)
//   - D3: every etcd member paused: default mode demotes, nothing is
//     promoted; failsafe mode keeps the primary while every member acks
//     and demotes once one member is killed.
//   - D4: two of three members killed (quorum lost): as D3; after the
//     restart the state converges.
//   - D7: asymmetric partition, the primary reaches its replicas but not
//     etcd, with the history workload running: no overlap of acknowledged
//     writes across timelines.
//   - E2: the primary's agent frozen past its lease, then resumed: it does
//     not take the leader key back from the new holder (no put of its name
//     on the key, same create revision); it demotes. In async mode the
//     frozen node's Postgres keeps acknowledging writes from the clients
//     connected to it: the documented frozen-agent limit (no watchdog),
//     reported with its window, not failed on. In sync mode it must not.
//   - E5: a deposed leader's store tries /sync, /status, /history,
//     /failsafe and the leader key: every write is refused with
//     dcs.ErrNotLeader (store level, two etcddcs clients on the real etcd
//     cluster, also across an etcd leader change). /failover is an
//     operator's key, not fenced by design.
//   - H5: an old primary cold-started while etcd is unreachable does not
//     start as a writable primary; it rejoins once etcd is back.
//   - D9 and E1 (TestEtcdLink, slow): the primary's etcd link delayed
//     (75±50 ms each way: no demotion, same tenure) and then lossy
//     (connections reset at random: a conservative demotion is allowed, no
//     two writers); and a one-way cut, requests reaching etcd but replies
//     held: the primary fences by its deadline, a replica takes over, and
//     the fenced node does not keep the leader key alive by renewing its
//     lease (it found that bug: fixed in ha, the fenced tenure's lease is
//     revoked).
//
// TestEtcdSync and TestEtcdStrict (slow) run C5, D4, D7 and E2 (and D11 in
// strict mode) with synchronous_mode and synchronous_mode_strict.
//
// # Workload-side scenarios (workload_*_test.go)
//
// They run on one 3-node process cluster per replication mode, under the
// history workload and checker (the list and their flags are in
// workload_helpers_test.go). Among them:
//
//   - A1 and A2 (TestBootstrap, fresh clusters): three agents started
//     together on an empty etcd; one /initialize winner (etcd's history of
//     the key), exactly one initdb, the others clone, every system
//     identifier equals /initialize, member keys correct. A2's failure
//     path: the winner's initdb fails (a wrapper fails the first run), the
//     winner releases /initialize and stops, another node bootstraps, and
//     the failed node, restarted, clones.
//   - B1: the primary's postmaster SIGKILLed, agent alive: restarted in
//     place, same leader tenure and timeline, no acknowledged write lost
//     in any mode.
//   - B2: the same crash with primary_start_timeout 0: a failover, the old
//     primary rejoins as a replica (the setting is restored afterwards).
//   - C1: the primary's agent SIGSTOPped for 0.7 s (< retry_timeout):
//     no failover, no failed or indeterminate write, latency reported.
//
// # Replication and disk faults (workload_repl_test.go, workload_disk_test.go)
//
//   - D6 (TestWorkloadReplicationStall, slow; cluster.Options.PostgresIngress
//     puts a proxy in front of each Postgres, published as its conn_url):
//     the primary's replication connections reset and refused for 4 ttls
//     while every node reaches etcd: no promotion while the lock is held;
//     sync mode: /sync names the leader alone and it goes on alone; strict:
//     no commit acknowledged during the cut; nothing lost.
//   - I1 and I2 (TestWorkloadDisk, default set, root; each node's data
//     directory on a size-limited tmpfs): pg_wal full on the primary (it
//     releases its key after a failed restart, the /sync standby takes
//     over, nothing lost, no sync-state loop) and a full sync standby (the
//     sync role moves, it rejoins once space is freed). I2StaleRestartpoint
//     found the stale replica timeline bug (fixed in package pg).
//
// # Watchdog scenarios (workload_watchdog_test.go)
//
// TestWorkloadWatchdog gives every node a watchdog device in required
// mode, emulated by the harness (cluster.Options.Watchdog: a named pipe
// read by a cluster.Fencer in the test process, which kills the node's
// Postgres and agent when the keepalives stop, as the kernel resets the
// host), on a cluster of its own (async, ttl=6, safety_margin=1s: the
// device is armed with 5s), under the history workload:
//
//   - C2: the primary's agent frozen (SIGSTOP) past the ttl while its
//     Postgres runs: the watchdog kills that Postgres before etcd deletes
//     the leader key, before another node takes it and before the new
//     primary's first acknowledged write; no two writers; the fenced node
//     is restarted and rejoins.
//   - B5: the primary's agent killed alone, its Postgres orphaned: the
//     same, and no two writers, where the no-watchdog B5 of
//     TestWorkloadAsync is an expected failure.
//
// They are in the default set: about 80 s on two cores, their cluster
// included.
//
// # Flags
//
// Pass them to this package only, for example
// go test ./internal/faultsuite -run TestEtcd -faultsuite.slow.
// The flag -faultsuite.slow also runs the slow DCS-side variants (the sync
// mode variants, D3, E2). Without it the fast set (E5; C5, D11, D4, D2
// failsafe, D7 and H5 in async mode, on one shared cluster) runs in about
// four minutes on two cores.
//
// -short skips every scenario that starts a cluster.
//
// Test support; not covered by compatibility promises.
package faultsuite

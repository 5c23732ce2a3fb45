// Package cluster is the multi-node test harness of pgha: an etcd (embedded,
// or one given by address) and N nodes, each with its own PostgreSQL in its
// own directory, free ports, a REST API, and its own etcd fault proxy, so one
// node can be cut from etcd while the others are not.
//
// Test support; not covered by compatibility promises.
//
// # Usage
//
//	c, err := cluster.New(ctx, cluster.Options{Nodes: 3, Mode: cluster.Processes, NodeProc: bin,
//		Dynamic: map[string]any{"ttl": 3, "loop_wait": 1, "retry_timeout": 1}})
//	if err != nil { ... }
//	defer c.Close()
//	check := c.StartChecker()
//	p, err := c.WaitStable(ctx) // one writable primary named by the leader key, the others streaming
//	err = p.Kill()              // SIGKILL the node process and its postmaster, by pid
//	q, err := c.WaitPrimary(ctx, p)
//	err = p.Start(ctx)          // rejoins as a replica (pg_rewind if it diverged)
//	report := check.Stop()      // report.Violations must be empty
//
// # Node modes
//
// [InProcess] nodes run ha.Node in a goroutine of the test process ([Node.HA]
// gives the API: Switchover, Failover, Status). [Processes] nodes run the
// nodeproc program (built once per test binary with [BuildNodeProc]), one OS
// process each in its own process group, so a test can SIGKILL ([Node.Kill])
// or SIGSTOP ([Node.Freeze]) a node; run as root, PostgreSQL runs as the
// postgres OS user (package pg does it). Both kinds share their wiring
// (package noderun), and both can crash their PostgreSQL alone
// ([Node.KillPostgres]), be cut from etcd ([Node.CutFromDCS],
// [Node.HealDCS]), be stopped cleanly and started again ([Node.Stop],
// [Node.Start], [Node.Restart]).
//
// With [Options].Watchdog every process node drives a watchdog device in
// the mode given, emulated by the harness: a [Fencer] in the test process
// reads the node's keepalives from a named pipe and, when none came within
// the timeout the node armed, kills the node's Postgres and agent, as the
// kernel would reset the host ([Node.Fencer] tells when it fired).
//
// Operator actions on process nodes go through the DCS as patronictl does:
// [Cluster.RequestFailover] writes /failover, [Cluster.SetConfig] edits
// /config.
//
// # Observations
//
// [Cluster.Primary] is the one node whose Postgres accepts writes and that
// the leader key names; [Cluster.WaitStable] also waits for every other
// running node to stream from it. The split-brain [Checker] polls every
// node's pg_is_in_recovery() in rounds and writes through each node that
// answers false; from the acknowledged writes alone it reports any witnessed
// instant with two writable primaries (see [Checker] and [CheckHistory]).
// With [Options].Trace every node logs the duration of each DCS, Postgres and
// peer-probe call, each DCS watch event and each decision, which is how the
// figures of the benchfailover program are explained.
//
// # Lifecycle
//
// [New] starts everything and returns without waiting for the bootstrap.
// [Cluster.Close] tears down by pid: process nodes and their postmasters'
// process groups are SIGKILLed, in-process nodes are stopped (then anything
// left of their Postgres is SIGKILLed), the proxies, clients and embedded
// etcd are closed, and the directories New created are removed.
//
// # Helpers for tests
//
// [NewForTest] starts a cluster for a test and closes it at the test's
// cleanup; [NodeProcForTest] builds nodeproc once per test binary (TestMain
// calls [RemoveNodeProcForTest]); [StartMember] starts one in-process
// member without a Cluster, for package tests that drive ha.Node
// themselves; [Every] paces a load generator's write loop.
package cluster

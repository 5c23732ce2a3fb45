// Package ha runs the high-availability agent of one PostgreSQL member: a
// Node that keeps exactly one writable primary in the cluster by holding a
// leader lease in the DCS, fencing itself when it cannot renew it, and
// promoting, demoting, cloning, rewinding and restarting its Postgres as
// [failover.Decide] says.
//
// # Usage
//
// A Node needs a DCS client acting for its member name ([dcs.Store], from
// dcs/etcddcs, or dcs/memdcs in tests), the Postgres instance it manages
// ([Postgres]; *[pg.Instance] implements it), and the URL under which its
// REST API answers, which it publishes so that peers can probe it before a
// failover:
//
//	store, _ := etcddcs.New(ctx, etcddcs.Config{Endpoints: eps, Path: dcs.Path{Scope: "shop"}, Name: "node1"})
//	inst, _ := pg.New(ctx, pg.Config{Name: "node1", DataDir: "/var/lib/pgha/node1", ...})
//	node, err := ha.New(ha.Config{
//		Name: "node1", Scope: "shop", Store: store, Postgres: inst,
//		APIURL:    "http://10.0.0.1:8008/patroni",
//		Bootstrap: &ha.Bootstrap{}, // this member may create the cluster
//	})
//	if err != nil { ... } // Config.Validate's joined problems
//	srv := &http.Server{Addr: ":8008", Handler: node.Handler()}
//	go srv.ListenAndServe()
//	err = node.Run(ctx) // blocks until ctx ends
//
// Serve [Node.Handler] for as long as the process lives: peers probe GET
// /patroni before they race for the leader key, and load balancers use
// /primary, /replica, /read-only and /health (Patroni's paths, codes and
// bodies; HEAD and OPTIONS answer with the code alone). Every member that
// may create a new cluster gets a [Bootstrap]; exactly one of them runs
// initdb (the race for /initialize decides which) and the others clone from
// it. [Node.Status] returns an immutable snapshot for your own checks and
// metrics; [Hooks] report role changes and leadership, and
// [Node.Switchover], [Node.Failover], [Node.Restart], [Node.Reinitialize]
// and [Node.Reload] are the operator's requests.
//
// # Lifecycle
//
// [New] validates the Config, copies it and starts nothing: no goroutine, no
// DCS write, no call to Postgres. [Node.Run] owns every goroutine of the
// node: the DCS watcher, the lease keeper with its fence, the watcher of
// the postmaster, the loop and the long actions it starts (clone, rewind,
// start, promote, ...). Run returns when ctx ends or when the node refuses
// to act, and only after every one of those goroutines has exited. On the
// way out, under a fresh context bounded by the TTL (at least 10s), it stops
// Postgres with a fast shutdown (an immediate one if that fails), releases
// the leader key if it holds it,
// with the shutdown checkpoint's position in /status so another member can
// take over at once without losing anything, and revokes its lease, which
// removes its member key. If Postgres cannot be stopped at all, a leader
// keeps the key rather than invite a promotion while its Postgres may still
// accept writes; but once the lease runs out another member can be
// promoted, and nothing fences that Postgres after Run has returned (Run
// only logs this failure for now). Hooks.OnStoppedLeading is called once
// when Run returns, whether or not the node led. A Node may be run again
// after Run returned; two concurrent Runs are refused with [ErrRunning].
//
// Hooks are called asynchronously, each call in its own goroutine, so they
// may run concurrently with each other and with the loop (two role changes
// in quick succession may be reported out of order); they must not block
// for long. The context given to Hooks.OnStartedLeading is cancelled the
// moment leadership ends (fence, demote, lost key, switchover, shutdown):
// leader-only work must stop then. Run does not yet wait for hook calls
// still in progress when it returns, except its own final
// OnStoppedLeading call. Two hooks are synchronous instead:
// Hooks.BeforePromote runs before every promotion and vetoes it with an
// error, and Hooks.BeforeStop runs before every stop but the fence's.
//
// Config.Callbacks runs Patroni's callback scripts (on_start, on_stop,
// on_restart, on_reload, on_role_change, pre_promote, before_stop) with
// Patroni's arguments, once per event; see [Callbacks]. Config.Watchdog
// drives a watchdog device (package ha/watchdog): armed before a promotion,
// kept alive after each renewal of the leader key, disabled once Postgres
// stopped or the cluster is paused; in required mode a node whose watchdog
// cannot be armed neither races for nor keeps the leader key and reports
// watchdog_failed.
//
// # Safety
//
// The node holds one lease in the DCS; its member key and, while it leads,
// the leader key are attached to it. Becoming leader is an atomic create of
// the leader key, and every write only the leader may make is guarded by the
// key holding this node's name on this node's lease (see package dcs), so a
// node that lost the key can change nothing in the DCS.
//
// A renewal that succeeds, sent at local monotonic time t, guarantees that
// the DCS cannot let the key expire before t + ttl: no other node can become
// leader before that deadline, judged by this node's clock. The lease
// keeper renews every ttl/4 (Config.RenewInterval), independently of the
// loop, and each success moves the deadline. A timer armed at deadline -
// margin (Config.FenceMargin, default max(ttl/5, 500ms)) stops Postgres
// with an immediate shutdown if no renewal got through in the meantime;
// a renewal answered with dcs.ErrNotLeader (the key is gone or another
// node's) stops it at once. Neither depends on the loop: a loop stuck in a
// slow query or a long action does not delay the fence. So while the agent
// runs, its Postgres stops accepting writes before any other member can be
// promoted, provided its clock and the DCS's do not drift apart by more than
// the margin minus the time an immediate stop takes. [Node.Handler] answers
// /primary and /leader from the lease deadline as it is now, not from the
// last loop cycle, so load balancers stop routing writes to a node the
// moment its fence time passes.
//
// The limit: an agent that is frozen (SIGSTOP, a long pause of the process
// or the host, a hung kernel) cannot fence itself. Its lease expires,
// another member is promoted, and its Postgres, if it still runs, may accept
// writes from clients that reach it directly. What protects the cluster
// then lies outside the frozen process: its lease is gone from the DCS and
// its REST API does not answer, so the pgha router (which follows the DCS)
// and HAProxy-style health checks on /primary stop sending it traffic;
// synchronous_mode_strict, once implemented (a later issue), makes its
// commits wait for a standby that now follows the new primary instead of
// acknowledging them; and a watchdog device (Config.Watchdog) resets the
// host when the agent stops feeding it: it is kept alive only after a
// renewal of the leader key, and fires SafetyMargin (default 5s) before the
// key could expire. Without a watchdog, route clients through the DCS or
// the REST API, never to a fixed address.
//
// The node also trusts its inputs: the DCS's TTL, Postgres's answers, and
// peers' GET /patroni. Wall clocks are never compared across nodes.
//
// # Errors
//
//   - [ErrRunning]: Run was called while the Node is already running.
//   - [ErrRefused]: the node refused to act and Run returned after stopping
//     Postgres if it ran (a data directory of another system than /initialize names,
//     a replica's data directory with no /initialize, a failed bootstrap,
//     another live agent under the same member name). The error wraps the
//     reason; the operator must fix the cause before running it again.
//   - [ErrInvalidRequest]: [Node.Switchover] or [Node.Failover] refused a
//     request before writing it to /failover (unknown, nofailover,
//     unhealthy or lagging candidate, the leader named as its own
//     candidate, a time in the past, ...). It wraps the failover package's
//     sentinel, so errors.Is(err, failover.ErrCandidateNoFailover) tells
//     which.
//
// Failures of Postgres or of the DCS during the loop are not returned: the
// node logs them, publishes them in its Status and member key, and acts on
// them in the next decision.
package ha

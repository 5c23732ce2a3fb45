// Package failover decides, as a pure function of what a node can observe,
// what it should do next to keep exactly one writable primary: bootstrap,
// clone, follow, race, promote, demote, restart, rewind.
//
// # Usage
//
// The ha loop observes, decides and executes. Once per round (on every DCS
// watch event that matters and at least every loop_wait) it builds an
// [Input] — the DCS snapshot, the local instance's state, the dynamic
// configuration, the Memory returned by the previous decision, and now —
// and calls [Decide]:
//
//	in := failover.Input{Cluster: snap, DCSReachable: ok, Config: cfg, Local: local, Now: now}
//	d := failover.Decide(in)
//	for d.Action == failover.ActionProbePeers || d.Action == failover.ActionCheckDivergence {
//		// probe d.Probe in parallel (GET /patroni, short timeout) into in.Peers,
//		// or check the timeline against d.Target into in.Local.Divergence
//		d = failover.Decide(in)
//	}
//	mem = d.Memory // pass it back next round
//	execute(d)     // long actions run asynchronously; report them in Local.Async and Local.Result
//
// Decide does no I/O, reads no clock and keeps no state: equal Inputs give
// equal Decisions, so every decision can be replayed from a log of its
// inputs. Live information it needs from other nodes comes in two phases:
// when a decision depends on the other members' live WAL positions (racing
// for the leader key, checking whether a failover is possible) and
// Input.Peers is nil, Decide returns [ActionProbePeers] listing whom to
// probe; the caller probes them in parallel with a short timeout and calls
// again with the same Input plus Peers. [ActionCheckDivergence] works the
// same way for the rewind check.
//
// Two helpers serve the leader and the REST API: [FailoverPossible]
// (Patroni's is_failover_possible: before and during a graceful demote, is
// there a healthy candidate, and has it received the shutdown checkpoint?)
// and [ValidateSwitchover] (refuse a switchover to a lagging, nofailover,
// unreachable or unknown member with a clear error before writing
// /failover).
//
// # Decisions
//
// The decision follows Patroni's HA cycle (patroni/SPEC.md section 3), in
// this order; the first branch that applies decides:
//
//	DCS unreachable or no snapshot (3.10)
//	  primary, lease valid        -> none (keep running; the fence demotes at the deadline)
//	  primary, lease not valid    -> demote offline
//	  promote running, no lease   -> cancel_async
//	pause / standby_cluster        -> none, or refresh_leader for the leader (not implemented yet)
//	long action running (3.9)
//	  I am the leader             -> refresh_leader ("updated leader lock during X"),
//	                                 or demote immediate when a primary restart outlives primary_start_timeout
//	  lost the key                -> demote immediate-nolock (a primary), cancel_async (a promote), else none
//	data directory empty (3.14)
//	  I hold the key              -> release_leader
//	  no leader, no /initialize   -> bootstrap (race /initialize)
//	  a clonefrom member/leader   -> clone
//	  otherwise                   -> wait_for_leader_bootstrap
//	system ID (3.2)
//	  invalid                     -> none ("consider doing reinitialize")
//	  differs from /initialize    -> refuse
//	  no /initialize, a replica   -> refuse; a primary adopts it (SetInitialize)
//	start failed and I hold the key -> release_leader
//	starting and I hold the key   -> refresh_leader, demote immediate on start timeout,
//	                                 demote immediate-nolock without a valid lease
//	not running (3.8)
//	  I lead, crashed primary     -> restart_primary (primary_start_timeout > 0),
//	                                 demote immediate (timeout 0 and a candidate exists)
//	  unclean shutdown            -> crash_recovery (single-user)
//	  I hold the key              -> start_as_replica, no upstream ("starting as readonly")
//	  another leader              -> check_divergence / rewind / reinitialize, then start_as_replica
//	no leader key (3.3, 3.4)
//	  healthiest                  -> acquire_leader
//	  a primary, not healthiest   -> demote immediate-nolock
//	  otherwise                   -> none (Blocked when the whole cluster is stuck)
//	I hold the key (3.5, 3.7)
//	  lease not valid             -> demote immediate-nolock (primary) / none (replica)
//	  primary                     -> refresh_leader, clear_failover, or demote graceful (switchover)
//	  replica                     -> promote (release_leader on watchdog/pre_promote failure or lag)
//	another leader (3.6)
//	  primary                     -> demote immediate-nolock
//	  diverged                    -> check_divergence, rewind, reinitialize, crash_recovery
//	  wrong upstream              -> follow
//	  otherwise                   -> none ("a secondary, and following a leader")
//
// A node's life as a state machine (state, decision, next state):
//
//	no data         bootstrap (won /initialize)     primary, leader
//	no data         clone                           replica
//	replica         follow                          replica of the new upstream
//	replica         acquire_leader, then promote    primary, leader (new timeline)
//	primary         demote offline                  replica without upstream, key kept (DCS down)
//	primary         demote graceful                 replica of the candidate, key released
//	primary         demote immediate                stopped, key released, then replica
//	primary         demote immediate-nolock         stopped, then replica of the new leader
//	primary         (Postgres crashes)              primary down
//	primary down    restart_primary                 primary, same timeline, key kept
//	primary down    demote immediate                stopped (fail over)
//	stopped         crash_recovery                  stopped, shut down cleanly
//	stopped         check_divergence, rewind        replica of the leader
//	any with data   reinitialize                    replica (fresh copy)
//	stopped         start_as_replica                replica
//
// # The lag rule
//
// maximum_lag_on_failover bounds how much committed WAL a failover may lose.
// Patroni measures each candidate against /status.optime, the position the
// leader last published. When that value is stale — published by an earlier
// leader whose history the last leader never had, or left over from a
// previous incarnation of the cluster — no live member is ever within the
// bound and the cluster stays leaderless until an operator steps in (a
// recurring complaint of Patroni's users). This package measures lag
// against a reference position:
//
//   - the largest live WAL position known: this node's, and every reachable
//     peer's (received or replayed on a replica, flushed on a primary), all
//     read at decision time, never the member keys' published values;
//   - raised to /status.optime only when /status is current: written
//     during the last tenure of another member that this node saw as
//     leader (its ModRevision is not older than that leader key's
//     CreateRevision; see Memory.LastLeader), or later. A node that saw no
//     tenure (its agent restarted during the outage) trusts /status, as
//     Patroni does.
//
// A /status written by the last leader and ahead of every live member is
// real WAL that a failover would lose, so it still counts. Candidates are
// ranked by their live positions (ahead wins; equal positions go to the
// higher failover_priority), a node that is behind the reference by more
// than the bound does not race, and when no live eligible member is within
// the bound the decision carries [BlockLag] with a reason naming the best
// live position, the reference, where it came from and the bound. An
// operator's manual failover (/failover with a candidate and no leader,
// written by POST /failover) overrides the bound for that candidate only; a
// switchover's candidate (a request naming the leader) keeps it. When the old
// primary comes back, it starts as a replica with all its WAL and wins the
// race, which also ends the block.
//
// # Safety
//
// What Decide guarantees, given truthful inputs:
//
//   - For one leader token (the key's CreateRevision and lease) at most one
//     member ever decides [ActionPromote]: only the member whose name the key
//     holds, on its own current lease, while its lease keeper reports the
//     lease valid.
//   - No [ActionAcquireLeader] or [ActionPromote] by a member further than
//     maximum_lag_on_failover behind the reference position, unless an
//     operator's failover (a /failover naming no leader) names that member.
//   - A running primary that does not hold the key on a valid lease is
//     demoted (immediate-nolock, or offline when the DCS is unreachable), a
//     stale former primary (its timeline behind /history's) never retakes
//     the key, and a reachable member that reports itself a primary stops
//     every race by a replica.
//   - A crashed primary is restarted as primary only while it holds the key
//     on a valid lease, and fails over once primary_start_timeout has passed
//     (at once when it is 0) if a candidate can take over.
//   - A node never joins a cluster whose /initialize names another system,
//     and a replica's data directory never seeds a cluster.
//
// The limits. Decide is one half of the fence; the other is the ha package:
// the lease keeper renews the lease and arms a timer at deadline minus
// margin that stops Postgres even if the loop is stuck. Neither can help an
// agent that is frozen (SIGSTOP, a long pause, a hung host): it cannot fence
// itself, its lease expires, another member is promoted, and the frozen
// primary may still accept writes from clients that reach it. What protects
// the cluster then lies outside this process: the router and HAProxy-style
// health checks follow the DCS and the REST API, so they stop routing to a
// primary whose lease is gone or whose API does not answer;
// synchronous_mode_strict makes its commits wait for a standby that now
// follows the new primary instead of acknowledging them; a hardware
// watchdog resets the host. Decide also trusts its inputs: a snapshot older
// than the lease, a Local that says "replica" for a primary, or peers
// misreporting their positions can all lead it astray. Wall clocks are
// never compared across nodes: Now is compared only with times this node
// stored, and with an operator's scheduled_at.
//
// # Not implemented yet
//
// Pause mode and standby clusters make Decide take no automatic action (a
// leader keeps its key). failsafe_mode and primary_race_backoff are ignored.
// synchronous_mode quorum is decided as synchronous_mode on (package
// replication runs it as priority mode).
//
// # Synchronous mode
//
// With synchronous_mode on (or quorum) and /sync naming a leader, only that
// leader and the standbys /sync lists take part in an automatic race
// (others report [BlockSyncMode]); peers outside /sync are not compared.
// The winner's [ActionPromote] carries the /sync it must write before
// promoting (itself as leader; in strict mode the other synchronous
// standbys too) and the synchronous_standby_names to set first; a failed
// write postpones the promotion. An immediate switchover's candidate must be
// a /sync standby while /sync lists any; an operator's failover without a
// leader may name any member.
//
// # Differences from Patroni
//
//   - A primary that cannot reach the DCS keeps running until its lease is
//     no longer valid, then demotes offline (Patroni demotes at the first
//     failed cycle); no other node can lead before the lease runs out.
//   - The lag rule above. Only an operator's failover exempts its
//     candidate from the lag bound; Patroni also exempts a switchover's
//     candidate, and drops the bound for every racer while a /failover
//     request is pending.
//   - A reachable peer reporting itself a primary stops the race even when
//     it is tagged nofailover, and even for a manual failover's candidate.
//   - /initialize left empty by a bootstrap in progress is never
//     overwritten by a node with data (Patroni does on its first cycle),
//     except by a running primary.
//   - /failover is cleared by the new leader together with its promotion
//     (Patroni clears it right after acquiring the key), so the request stays
//     visible until then; requests older than the leader's tenure are
//     cleared rather than acted on.
//   - A scheduled switchover is acted on at scheduled_at: when it is due
//     (scheduled_at - now <= loop_wait) Decision.WakeAt asks the caller to
//     decide again at that instant, as Patroni sleeps the remainder.
//   - Clone sources among several clonefrom members are chosen by a hash of
//     the node's name, not at random.
//   - ValidateSwitchover refuses a switchover to a lagging or nofailover
//     candidate up front (Patroni's API accepts it and the leader clears the
//     request later), but never refuses a failover without a leader for lag.
package failover

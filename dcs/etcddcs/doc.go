// Package etcddcs is the [dcs.Store] on etcd v3, laid out exactly as Patroni's
// etcd3 DCS lays out its keys, so Patroni's tools (patronictl, a Patroni
// node) can read a pgha cluster and pgha can follow a Patroni one.
//
// # Usage
//
// One Store per node and cluster:
//
//	s, err := etcddcs.New(ctx, etcddcs.Config{
//		Endpoints:    []string{"https://etcd1:2379", "https://etcd2:2379", "https://etcd3:2379"},
//		CAFile:       "/etc/pgha/etcd-ca.pem",
//		Path:         dcs.Path{Namespace: "/service", Scope: "pg-cluster"},
//		Name:         "node1",
//		RetryTimeout: 10 * time.Second,
//	})
//	if err != nil { ... }
//	defer s.Close()
//
// Keys live under /<namespace>/<scope>/ (see [dcs.Path]): leader, members/<name>,
// config, initialize, failover, sync, history, status, failsafe. The node owns
// one lease, granted with the TTL given to KeepAlive (Patroni's ttl); its
// member key and, while it leads, the leader key are attached to it, so both
// vanish together when the node stops renewing. No other key carries a lease.
//
// Writes are transactions with compares, as in Patroni's etcd3 module:
// AcquireLeader creates the leader key only if its create revision is 0;
// RefreshLeader and every leader-only write (ReleaseLeader, SetSync,
// DeleteSync, SetHistory, SetStatus, SetFailsafe) are guarded by
// value(leader) == Name and lease(leader) == this node's lease; CAS writes
// compare the key's mod revision (the "version" Patroni compares) or require
// create revision 0 for [dcs.IfAbsent]. Returned revisions are the etcd
// revision of the write, which is the key's new mod revision.
//
// Reads come from a local cache of the whole prefix: a background goroutine
// ranges the prefix (a serializable read, as Patroni's cache thread does),
// then watches it from the next revision. A broken watch (reconnect, leader
// change, a cut connection) resumes from the last revision applied, so no
// change is lost or repeated; only when that revision has been compacted away
// is the cache re-read, and every Watch channel then gets one
// [dcs.EventReset] with the fresh snapshot. Cluster serves the cache and waits
// up to RetryTimeout for its first read. Each successful write of this store
// returns only after the cache has applied it (bounded by the request
// timeout and the caller's context), so a node reads its own writes and its watchers see them in store
// order. PutMember skips the write when the cache already holds an equal value
// on the current lease.
//
// Timeouts: each request to etcd gets RetryTimeout divided by the number of
// endpoints, but at least 1 s (Patroni's rule). The client fails over between
// endpoints itself.
//
// # Lifecycle
//
// New validates the Config, dials (failing on bad TLS files or rejected
// credentials) and starts the watch goroutine; it does not wait for etcd
// otherwise. Close cancels the watch, closes every Watch channel, waits for
// every goroutine the store started and closes the client it dialled (a client
// passed in Config.Client is left open). Close does not revoke the lease: call
// Resign first on a clean shutdown.
//
// # Errors
//
// Errors wrap the [dcs] sentinels (test with errors.Is) and keep etcd's error
// in the chain:
//   - etcd unreachable, a request timeout, no etcd leader, too many requests:
//     [dcs.ErrUnavailable] (transient; the outcome of a write is unknown);
//   - a failed fence: [dcs.ErrNotLeader]; a failed precondition or a lost
//     create race: [dcs.ErrConflict]. A leader write whose precondition fails
//     while the fence holds is ErrConflict, not ErrNotLeader;
//   - the lease vanished under RefreshLeader: ErrNotLeader and
//     [dcs.ErrSessionExpired]; KeepAlive, PutMember and AcquireLeader grant a
//     new lease instead of failing;
//   - a read-only store (Name "") asked for a session or leader operation:
//     [dcs.ErrNoSession];
//   - after Close: [dcs.ErrClosed];
//   - authentication and permission failures are reported as such, and are
//     not transient;
//   - a caller's cancelled context is returned as context.Canceled.
//
// # Safety
//
// KeepAlive sends exactly one LeaseKeepAlive request (clientv3's
// KeepAliveOnce) and records time.Now, a monotonic reading, just before
// sending it. etcd renews the lease when the request arrives, which is after
// that instant, so the lease cannot expire before Sent + TTL as measured by
// the local monotonic clock, assuming the clock rates of this host and of the
// etcd leader do not differ by more than the caller's margin. [dcs.Lease]
// reports that Sent and the TTL etcd granted (etcd raises TTLs below its
// minimum, and that is what is reported); Deadline() = Sent + TTL is the
// instant before which no other node can hold the leader key. When the
// request is retried inside the call, the first attempt's time is kept, which
// only moves the deadline earlier. An etcd leader election extends leases; it
// never shortens them.
//
// clientv3's own streaming keepalive (Lease.KeepAlive) is deliberately not
// used: it renews in the background on its own schedule and does not tell
// when each renewal was sent, so a deadline could not be derived from it, and
// it would keep a frozen node's lease alive as long as the process lives.
// With KeepAliveOnce the lease lives only as long as the HA loop keeps
// renewing it, and each renewal yields a deadline the fence can rely on.
//
// A TTL change (KeepAlive with a new ttl) grants a new lease, moves the member
// key and, if this node holds it on the old lease, the leader key onto the new
// lease in one transaction, then revokes the old lease, so leadership survives
// the change. Patroni instead lets the old lease expire and moves the leader
// key at the next update_leader by comparing the value only.
//
// # A member that hangs
//
// clientv3 balances requests round-robin over its connections to the
// members and keeps the connection to a member that stopped answering (a
// paused process, a hung host: TCP still up) until gRPC's keepalive drops
// it, 10 s and more later. So that one hung member does not cost the node
// its lease (RELIABILITY.md C5), the renewals (KeepAlive and the
// confirmation txn of RefreshLeader, both idempotent) are hedged: while no
// attempt has answered, the request is sent again, up to once per endpoint,
// every request timeout / (endpoints + 1), or at once after a transient
// error; the balancer gives each attempt the next connection. Writes guarded
// by a compare (CAS) are sent once: a second run could not tell its own
// first run from a conflict. The watch is guarded too: when etcd has
// answered this store with a revision the cache has not reached, the
// store asks the watch stream for progress, and ends the stream if the cache
// still lags a request timeout later (or if opening it does not finish in a
// request timeout); the watch resumes from the cache's revision on a new
// stream of its own.
//
// Cluster may serve a stale snapshot while etcd is unreachable (the watch
// reconnects by itself and the cache keeps its last state); liveness must be
// judged from KeepAlive and RefreshLeader, which fail with
// [dcs.ErrUnavailable], never from the cache.
package etcddcs

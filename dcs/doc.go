// Package dcs is pgha's view of the distributed configuration store (DCS): the
// cluster state every node shares, encoded exactly as Patroni encodes it, and
// the Store interface the HA loop, the REST API and the router use.
//
// # Usage
//
// A Store acts for one node of one cluster. Build one with dcs/etcddcs (etcd
// v3) or, in tests, dcs/memdcs. Read the whole cluster with Store.Cluster,
// follow it with Store.Watch, and act through the role interfaces the Store
// embeds: Session (lease, member key), Election (leader key), LeaderWriter
// (writes only the leader may make) and ClusterWriter (writes anyone may
// make: /initialize, /config, /failover).
//
// Keys live under "/<namespace>/<scope>/" (namespace "service" by default),
// the same keys and values Patroni writes: a plain-string leader key, JSON
// member keys, /failover cleared by writing {}, and so on. Patroni's tools can
// read a pgha cluster and pgha can follow a Patroni cluster. Values written by
// someone else that do not decode never fail a read: the documented default
// is used (as Patroni does) and the problem is listed in
// Cluster.DecodeErrors.
//
// # Errors
//
// Every Store maps its native failures onto the sentinels of this package:
// ErrNotLeader (a leader-fenced write failed its guard: demote), ErrConflict
// (a conditional write lost), ErrUnavailable (no answer in time; outcome of a
// write unknown), ErrSessionExpired, ErrNoSession, ErrClosed and
// ErrInvalidValue. Test them with errors.Is; IsTransient tells whether
// retrying the same request makes sense.
//
// # Safety
//
// The guarantees the HA loop builds on, and their limits:
//
//   - One lease per node. The node's member key and, while it leads, the
//     leader key are attached to it, so they vanish together when the node
//     stops renewing.
//   - Becoming leader is an atomic create-if-absent of the leader key: of any
//     number of simultaneous AcquireLeader calls at most one succeeds.
//   - Every leader-only write (RefreshLeader, ReleaseLeader, SetSync,
//     DeleteSync, SetStatus, SetHistory, SetFailsafe) is a transaction guarded
//     by the leader key holding this node's name on this node's lease. A node
//     whose lease expired, or whose key was taken, can change nothing and gets
//     ErrNotLeader.
//   - After a successful RefreshLeader (or AcquireLeader) that returned Lease
//     l, the store cannot expire the leader key before l.Deadline() =
//     l.Sent + l.TTL, where Sent is the local monotonic time at which the
//     renewal was sent: the store starts the TTL no earlier than it received
//     the request. So no other node can become leader before l.Deadline()
//     judged by this node's clock, provided the clock rates of the node and of
//     the store do not differ by more than the margin the caller keeps before
//     the deadline. The caller must stop acting as leader (fence itself)
//     before l.Deadline(); the ha package arms a timer at Deadline - margin.
//   - What this cannot give: a node that is frozen (SIGSTOP, a long pause)
//     cannot fence itself; its lease expires and another node may lead while
//     the frozen one still believes it leads. Fencing writes to the DCS stops
//     its DCS writes, not writes to its Postgres. The defences for that case
//     are outside this package (routing and health checks follow the DCS,
//     synchronous_mode_strict, a watchdog).
//   - Wall clocks are never compared across nodes; only the store's TTL and
//     the local monotonic clock are used.
package dcs

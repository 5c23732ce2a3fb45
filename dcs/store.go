package dcs

import (
	"context"
	"time"
)

// Reader reads the cluster and follows its changes.
type Reader interface {
	// Cluster returns the latest snapshot the store has. Stores with a watch
	// cache serve it from the cache; before the cache is ready it waits (bounded
	// by ctx and the store's own timeout) and then fails with ErrUnavailable.
	Cluster(ctx context.Context) (*Cluster, error)

	// Watch delivers every change under the cluster prefix, in store order,
	// each with the snapshot at its revision (after every change a single
	// transaction made), starting with the changes after
	// the snapshot Cluster would return now. The channel is closed when ctx is
	// done or the store is closed. A reader that falls far behind, or a watch
	// that resumes past a compaction, gets one EventReset carrying a fresh
	// snapshot instead of the changes it missed. Reconnects to the store are
	// invisible: no change is skipped or repeated.
	Watch(ctx context.Context) (<-chan Event, error)
}

// Confirmer is a Reader that can confirm its snapshot is current. Confirm
// returns once the snapshot Cluster serves reflects every change the store
// committed before the call (a linearizable read of the store's revision),
// with that snapshot's revision; it fails, wrapping ErrUnavailable, when the
// store cannot be reached in time. A reader serving a cache can otherwise
// not tell a quiet cluster from a link that no longer delivers anything.
// etcddcs.Store and memdcs.Store implement it.
type Confirmer interface {
	Confirm(ctx context.Context) (int64, error)
}

// Session is the node's lease and its member key. The lease is shared by the
// member key and, while the node leads, the leader key, so both vanish together
// when the node stops renewing.
type Session interface {
	// KeepAlive renews the node's lease once, granting a new one with the given
	// TTL when there is none or the old one expired. When ttl differs from the
	// current lease's TTL a new lease is granted, the node's member key and its
	// leader key (if it holds it on the old lease) move to the new lease in one
	// transaction, and the old lease is revoked: leadership survives a TTL
	// change. The returned Lease.Sent is the monotonic time the renewal was sent.
	// A lease that had expired yields a new lease and no error; the caller sees
	// the new ID (keys that were attached to the old lease are gone).
	KeepAlive(ctx context.Context, ttl time.Duration) (Lease, error)

	// PutMember publishes the node's member key, attached to its lease
	// (granted with the last TTL passed to KeepAlive, or 30 s, if there is none
	// yet). It writes nothing when the stored value is already equal.
	PutMember(ctx context.Context, data MemberData) error

	// Resign revokes the node's lease, deleting its member key and, if it holds
	// it, the leader key at once. Used on clean shutdown.
	Resign(ctx context.Context) error
}

// Election is the leader key: acquire it when absent, keep it, give it up.
type Election interface {
	// AcquireLeader creates the leader key with this node's name, attached to
	// its lease, only if the key does not exist. It renews the lease first, so
	// on success the lease's Deadline holds for the new tenure. Another holder
	// yields ErrConflict.
	AcquireLeader(ctx context.Context) (Lease, error)

	// RefreshLeader renews the lease and confirms that the leader key still
	// holds this node's name on this node's lease (re-creating it if it is
	// absent, as Patroni does). On success no other node can hold the leader
	// key before the returned Lease.Deadline(). A key held by anyone else, or on
	// another lease, yields ErrNotLeader.
	RefreshLeader(ctx context.Context) (Lease, error)

	// ReleaseLeader deletes the leader key if this node holds it. When status
	// is not nil it is written in the same transaction (the last LSN for the
	// racers). Not holding the key yields ErrNotLeader.
	ReleaseLeader(ctx context.Context, status *Status) error
}

// LeaderWriter holds the writes only the leader may make. Each is a
// transaction guarded by the leader key (value == this node's name and lease
// == this node's lease); a failed guard yields ErrNotLeader.
type LeaderWriter interface {
	// SetSync writes /sync if cond holds, returning the new ModRevision.
	// A failed cond yields ErrConflict.
	SetSync(ctx context.Context, s SyncState, cond Precondition) (int64, error)
	// DeleteSync deletes /sync if cond holds.
	DeleteSync(ctx context.Context, cond Precondition) error
	// SetHistory writes /history.
	SetHistory(ctx context.Context, lines []HistoryLine) error
	// SetStatus writes /status.
	SetStatus(ctx context.Context, s Status) error
	// SetFailsafe writes /failsafe.
	SetFailsafe(ctx context.Context, members map[string]string) error
}

// ClusterWriter holds the writes any node or operator tool may make.
type ClusterWriter interface {
	// InitializeRace creates /initialize with sysid ("" while bootstrapping)
	// only if it does not exist. Losing the race yields ErrConflict.
	InitializeRace(ctx context.Context, sysid string) error
	// SetInitialize overwrites /initialize (the winner records the sysid).
	SetInitialize(ctx context.Context, sysid string) error
	// CancelInitialize deletes /initialize after a failed bootstrap.
	CancelInitialize(ctx context.Context) error
	// SetConfig writes /config if cond holds, returning the new ModRevision.
	SetConfig(ctx context.Context, data map[string]any, cond Precondition) (int64, error)
	// SetFailover writes /failover if cond holds (Failover{} clears it, written
	// as {}), returning the new ModRevision.
	SetFailover(ctx context.Context, f Failover, cond Precondition) (int64, error)
	// DeleteCluster deletes every key under the cluster prefix.
	DeleteCluster(ctx context.Context) error
}

// Store is everything the HA loop needs from a distributed configuration
// store, for one node (Name) of one cluster (Path). Implementations are safe
// for concurrent use, map their native errors onto this package's sentinels,
// and pass the dcstest conformance suite.
type Store interface {
	Reader
	Session
	Election
	LeaderWriter
	ClusterWriter
	// Name is the node name this store acts for ("" for a read-only client).
	Name() string
	// Close stops background work and waits for it to exit. It does not revoke
	// the lease (call Resign for that). It is idempotent.
	Close() error
}

package unittest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
)

// FakeCluster is a pgha cluster as an application's tests see it: member
// keys and a leader key in an in-memory DCS, the members pointing at
// whatever databases the test runs. Time in the DCS is a fake clock that
// moves only when the test calls Advance. Its methods are safe for
// concurrent use.
type FakeCluster struct {
	// Server is the in-memory DCS, for the fault hooks FakeCluster does not
	// wrap (FailNext, DelayNext, Put, Get).
	Server *memdcs.Server
	// Clock is the DCS's clock.
	Clock *memdcs.FakeClock
	// Path is the cluster's place in the DCS.
	Path dcs.Path
	// TTL is the members' lease TTL (default memdcs.DefaultTTL).
	TTL time.Duration

	mu      sync.Mutex
	members map[string]*memdcs.Store
	addrs   map[string]string
	reader  *memdcs.Store
	pos     int64
}

// NewFakeCluster returns an empty cluster named scope.
func NewFakeCluster(scope string) (*FakeCluster, error) {
	if scope == "" {
		return nil, errors.New("unittest: empty scope")
	}
	clock := memdcs.NewFakeClock(time.Unix(1_700_000_000, 0))
	f := &FakeCluster{
		Server: memdcs.NewServer(memdcs.Options{Clock: clock}), Clock: clock,
		Path: dcs.Path{Scope: scope}, TTL: memdcs.DefaultTTL,
		members: map[string]*memdcs.Store{}, addrs: map[string]string{},
		pos: 1,
	}
	r, err := f.Server.Client(memdcs.ClientConfig{Path: f.Path})
	if err != nil {
		return nil, err
	}
	f.reader = r
	return f, nil
}

// Reader is the read-only DCS client to give the router
// (routing.FromDCS(f.Reader())).
func (f *FakeCluster) Reader() dcs.Reader { return f.reader }

// AddMember publishes a running, streaming replica named name whose Postgres
// is at addr (host:port), holding a lease of f.TTL.
func (f *FakeCluster) AddMember(ctx context.Context, name, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.members[name]; ok {
		return fmt.Errorf("unittest: member %q exists", name)
	}
	c, err := f.Server.Client(memdcs.ClientConfig{Path: f.Path, Name: name})
	if err != nil {
		return err
	}
	if _, err := c.KeepAlive(ctx, f.TTL); err != nil {
		_ = c.Close()
		return err
	}
	f.members[name], f.addrs[name] = c, addr
	return f.publishLocked(ctx, name, dcs.RoleReplica)
}

// publishLocked writes name's member key with role. Every member publishes
// the same WAL position, so no replica lags; it is 0/1, below any real
// commit, so a fake replica (a standalone test database) is never believed
// to have replayed a read-your-writes token: the router asks it, it is not
// in recovery and says no, and the read goes to the primary.
func (f *FakeCluster) publishLocked(ctx context.Context, name, role string) error {
	pos := f.pos
	d := dcs.MemberData{ConnURL: "postgres://" + f.addrs[name] + "/postgres", State: "running", Role: role,
		XLogLocation: &pos, Timeline: 1}
	if role == dcs.RoleReplica {
		d.ReplayLSN, d.ReceiveLSN, d.ReplicationState = &pos, &pos, "streaming"
	}
	return f.members[name].PutMember(ctx, d)
}

// Lead makes name the leader: the current leader (if any) publishes itself
// as a replica and releases the key, then name publishes itself as the
// primary and takes the key, as a switchover looks from the DCS.
func (f *FakeCluster) Lead(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next, ok := f.members[name]
	if !ok {
		return fmt.Errorf("unittest: no member %q", name)
	}
	c, err := f.reader.Cluster(ctx)
	if err != nil {
		return err
	}
	if cur := c.LeaderName(); cur != "" && cur != name {
		if old, ok := f.members[cur]; ok {
			if err := f.publishLocked(ctx, cur, dcs.RoleReplica); err != nil {
				return err
			}
			if err := old.ReleaseLeader(ctx, nil); err != nil {
				return err
			}
		}
	}
	if err := f.publishLocked(ctx, name, dcs.RolePrimary); err != nil {
		return err
	}
	if _, err := next.AcquireLeader(ctx); err != nil && !(errors.Is(err, dcs.ErrConflict) && c.LeaderName() == name) {
		return err
	}
	// A planned switchover is over once the new leader holds the key.
	_, err = next.SetFailover(ctx, dcs.Failover{}, dcs.Unconditional)
	return err
}

// AnnounceSwitchover writes /failover naming leader and candidate, as
// `pgha switchover` does before the leader steps down. The router holds new
// writes until the key moves (Lead) or the hold times out.
func (f *FakeCluster) AnnounceSwitchover(ctx context.Context, leader, candidate string) error {
	f.mu.Lock()
	c := f.members[leader]
	f.mu.Unlock()
	if c == nil {
		return fmt.Errorf("unittest: no member %q", leader)
	}
	_, err := c.SetFailover(ctx, dcs.Failover{Leader: leader, Candidate: candidate}, dcs.Unconditional)
	return err
}

// Rejoin renews name's lease and publishes it as a streaming replica again,
// as its agent does after a partition heals (its old lease expired with its
// keys).
func (f *FakeCluster) Rejoin(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.members[name]
	if !ok {
		return fmt.Errorf("unittest: no member %q", name)
	}
	if _, err := c.KeepAlive(ctx, f.TTL); err != nil {
		return err
	}
	return f.publishLocked(ctx, name, dcs.RoleReplica)
}

// Partition cuts name off the DCS: its calls fail with dcs.ErrUnavailable
// and its lease, no longer renewed, runs down on the fake clock.
func (f *FakeCluster) Partition(name string) { f.Server.Partition(name) }

// Heal reconnects name.
func (f *FakeCluster) Heal(name string) { f.Server.Heal(name) }

// Advance moves the DCS clock by d, in steps of a third of the TTL,
// renewing between steps the lease of every member that is not partitioned,
// as their agents would. A partitioned member's lease runs out inside the
// call: its member key, and the leader key if it held it, are deleted and
// the watchers (the router) see the deletion.
func (f *FakeCluster) Advance(ctx context.Context, d time.Duration) {
	step := max(f.TTL/3, time.Millisecond)
	for d > 0 {
		s := min(step, d)
		f.renew(ctx)
		f.Clock.Advance(s)
		d -= s
	}
	f.renew(ctx)
}

// renew renews the lease of every member that can reach the DCS.
func (f *FakeCluster) renew(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.members {
		_, _ = c.KeepAlive(ctx, f.TTL) // a partitioned member fails with dcs.ErrUnavailable
	}
}

// Members returns the member names in the DCS now, sorted.
func (f *FakeCluster) Members(ctx context.Context) ([]string, error) {
	c, err := f.reader.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range c.Members {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out, nil
}

// Close closes every client. Leases are left to expire with the server.
func (f *FakeCluster) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.members {
		_ = c.Close()
	}
	_ = f.reader.Close()
}

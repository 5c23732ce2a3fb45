package memdcs_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
)

// A unit test of failover handling: the leader's lease runs out on a fake
// clock, a watcher sees the leader key go, and another node takes over.
func Example() {
	ctx := context.Background()
	clock := memdcs.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := memdcs.NewServer(memdcs.Options{Clock: clock})
	path := dcs.Path{Scope: "shop"}
	node1, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node1"})
	node2, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node2"})
	defer node1.Close()
	defer node2.Close()

	_, _ = node1.KeepAlive(ctx, 10*time.Second)
	_, _ = node1.AcquireLeader(ctx)
	events, _ := node2.Watch(ctx)

	srv.Partition("node1")          // node1 can no longer renew
	clock.Advance(10 * time.Second) // its lease runs out
	ev := <-events
	fmt.Println(ev.Type, ev.Key, "locked:", ev.Cluster.IsLocked())

	_, err := node2.AcquireLeader(ctx)
	fmt.Println("node2 acquired:", err == nil)

	srv.Heal("node1")
	_, err = node1.RefreshLeader(ctx)
	fmt.Println("node1 refresh:", err)
	// Output:
	// delete leader locked: false
	// node2 acquired: true
	// node1 refresh: dcs: not the leader: dcs: session expired: the lease expired
}

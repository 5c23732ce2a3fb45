package routing_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/routing"
)

// A unit test of an application's routing on a fake DCS: members are
// published, the leader key moves, and the router follows. No database is
// needed to see where connections would go; with members pointing at test
// databases, Primary, Replica, Write and Read connect there.
func ExampleRouter_WaitForNode() {
	ctx := context.Background()
	srv := memdcs.NewServer(memdcs.Options{})
	path := dcs.Path{Scope: "shop"}
	node1, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node1"})
	node2, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node2"})
	reader, _ := srv.Client(memdcs.ClientConfig{Path: path}) // read-only
	defer node1.Close()
	defer node2.Close()
	defer reader.Close()

	pos := int64(0x3000000)
	member := func(role string) dcs.MemberData {
		d := dcs.MemberData{State: "running", Role: role, XLogLocation: &pos}
		if role == dcs.RoleReplica {
			d.ReplayLSN, d.ReplicationState = &pos, "streaming"
		}
		return d
	}
	m1, m2 := member(dcs.RolePrimary), member(dcs.RoleReplica)
	m1.ConnURL, m2.ConnURL = "postgres://10.0.0.1:5432/postgres", "postgres://10.0.0.2:5432/postgres"
	_ = node1.PutMember(ctx, m1)
	_ = node2.PutMember(ctx, m2)

	leaders := make(chan string, 8)
	router, err := routing.New(ctx, routing.Config{
		Source:        routing.FromDCS(reader),
		ConnString:    "user=app password=secret dbname=shop",
		ProbeInterval: -1, // the member keys decide: no server to probe
		Hooks:         routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) { leaders <- e.Leader }},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()

	// No leader yet: acquisitions wait, bounded by ctx.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = router.WaitForNode(short, routing.Primary)
	cancel()
	fmt.Println("no leader:", errors.Is(err, routing.ErrNoPrimary))

	_, _ = node1.AcquireLeader(ctx)
	fmt.Println("leader:", <-leaders)
	p, _ := router.WaitForNode(ctx, routing.Primary)
	r, _ := router.WaitForNode(ctx, routing.Standby)
	fmt.Println("writes to", p.Name, p.Addr, "- reads from", r.Name)

	// A switchover: node1 steps down, node2 takes the key.
	m1.Role, m1.ReplayLSN, m1.ReplicationState = dcs.RoleReplica, &pos, "streaming"
	_ = node1.PutMember(ctx, m1)
	_ = node1.ReleaseLeader(ctx, nil)
	_, _ = node2.AcquireLeader(ctx)
	for l := range leaders {
		if l == "node2" {
			break
		}
	}
	p, _ = router.WaitForNode(ctx, routing.Primary)
	r, _ = router.WaitForNode(ctx, routing.Standby)
	fmt.Println("writes to", p.Name, p.Addr, "- reads from", r.Name)
	// Output:
	// no leader: true
	// leader: node1
	// writes to node1 10.0.0.1:5432 - reads from node2
	// writes to node2 10.0.0.2:5432 - reads from node1
}

package dcs_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
)

// Two nodes race for the leader key of an in-memory store; the loser is told
// why, and the winner's leader-only writes are fenced by its lease.
func Example() {
	ctx := context.Background()
	srv := memdcs.NewServer(memdcs.Options{})
	path := dcs.Path{Scope: "demo"}
	a, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node1"})
	b, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node2"})
	defer a.Close()
	defer b.Close()

	if _, err := a.KeepAlive(ctx, 30*time.Second); err != nil {
		fmt.Println(err)
	}
	_ = a.PutMember(ctx, dcs.MemberData{
		ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni",
		State: "running", Role: dcs.RolePrimary, Version: "pgha",
	})
	lease, err := a.AcquireLeader(ctx)
	fmt.Println("node1 acquired:", err == nil, "deadline set:", !lease.Deadline().IsZero())

	_, err = b.AcquireLeader(ctx)
	fmt.Println("node2 conflict:", errors.Is(err, dcs.ErrConflict))

	err = b.SetStatus(ctx, dcs.Status{Optime: 42})
	fmt.Println("node2 fenced:", errors.Is(err, dcs.ErrNotLeader))

	c, _ := b.Cluster(ctx)
	fmt.Println("leader:", c.LeaderName(), "role:", c.Leader.Member.Data.Role, "key:", path.Key(dcs.KeyLeader))
	// Output:
	// node1 acquired: true deadline set: true
	// node2 conflict: true
	// node2 fenced: true
	// leader: node1 role: primary key: /service/demo/leader
}

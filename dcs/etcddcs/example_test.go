package etcddcs_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
)

// Example shows one node's use of the store: renew the lease, publish the
// member key, take or keep the leader key, and stop acting as leader at the
// lease deadline. It needs a running etcd, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	s, err := etcddcs.New(ctx, etcddcs.Config{
		Endpoints:    []string{"http://127.0.0.1:2379"},
		Path:         dcs.Path{Namespace: "/service", Scope: "pg-cluster"},
		Name:         "node1",
		RetryTimeout: 10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if _, err := s.KeepAlive(ctx, 30*time.Second); err != nil {
		log.Fatal(err)
	}
	if err := s.PutMember(ctx, dcs.MemberData{
		ConnURL: "postgres://10.0.0.1:5432/postgres", APIURL: "http://10.0.0.1:8008/patroni",
		State: "running", Role: dcs.RoleReplica, Version: "pgha",
	}); err != nil {
		log.Fatal(err)
	}

	c, err := s.Cluster(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var lease dcs.Lease
	if !c.IsLocked() {
		lease, err = s.AcquireLeader(ctx)
	} else {
		lease, err = s.RefreshLeader(ctx)
	}
	switch {
	case errors.Is(err, dcs.ErrConflict), errors.Is(err, dcs.ErrNotLeader):
		fmt.Println("someone else leads:", c.LeaderName())
	case dcs.IsTransient(err):
		// Outcome unknown: retry, and stop acting as leader at the deadline
		// of the last successful renewal.
		fmt.Println("etcd unavailable:", err)
	case err != nil:
		log.Fatal(err)
	default:
		// Act as leader only until the deadline unless renewed before it.
		fmt.Println("leading until", lease.Deadline())
	}

	// Clean shutdown: give up the leader key and the member key at once.
	if err := s.Resign(ctx); err != nil {
		log.Print(err)
	}
}

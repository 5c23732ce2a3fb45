package unittest_test

import (
	"context"
	"fmt"

	"github.com/pgha/pgha/examples/unittest"
	"github.com/pgha/pgha/routing"
)

// A fake cluster whose members point at two addresses: the router follows
// the leader key as the test moves it. No database is contacted (nothing
// connects until a query runs); see orders_test.go for tests that write.
func ExampleFakeCluster() {
	ctx := context.Background()
	f, err := unittest.NewFakeCluster("shop")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	_ = f.AddMember(ctx, "db1", "10.0.0.1:5432")
	_ = f.AddMember(ctx, "db2", "10.0.0.2:5432")
	_ = f.Lead(ctx, "db1")

	leaders := make(chan string, 4)
	router, err := routing.New(ctx, routing.Config{
		Source:        routing.FromDCS(f.Reader()),
		ConnString:    "user=app password=secret dbname=shop",
		ProbeInterval: -1, // the DCS alone decides
		Hooks:         routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) { leaders <- e.Leader }},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()
	show := func() {
		p, _ := router.WaitForNode(ctx, routing.Primary)
		r, _ := router.WaitForNode(ctx, routing.Standby)
		fmt.Println("writes to", p.Name, p.Addr, "- reads from", r.Name)
	}
	show()

	_ = f.Lead(ctx, "db2")
	for l := range leaders {
		if l == "db2" {
			break
		}
	}
	show()
	// Output:
	// writes to db1 10.0.0.1:5432 - reads from db2
	// writes to db2 10.0.0.2:5432 - reads from db1
}

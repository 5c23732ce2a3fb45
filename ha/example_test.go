package ha_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/fakepg"
)

// apis routes the members' REST calls to their handlers in process, by
// host. In production each node serves Node.Handler at its APIURL.
type apis map[string]http.Handler

func (a apis) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := a[req.URL.Host]
	if !ok {
		return nil, fmt.Errorf("dial tcp %s: connection refused", req.URL.Host)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// Three members on an in-memory DCS with fake Postgres instances: node1
// creates the cluster, the others join as replicas, node1's Postgres
// crashes, and a replica takes over.
func Example_failover() {
	srv := memdcs.NewServer(memdcs.Options{})
	pgs := fakepg.NewWorld()
	net := apis{}
	events := make(chan string, 100)

	var nodes []*ha.Node
	for _, name := range []string{"node1", "node2", "node3"} {
		store, _ := srv.Client(memdcs.ClientConfig{Path: dcs.Path{Scope: "shop"}, Name: name})
		defer store.Close()
		inst, _ := pgs.NewInstance(fakepg.Config{Name: name}) // reachable as name:5432
		priority := 1
		if name == "node2" {
			priority = 2 // preferred when the replicas are equally far ahead
		}
		cfg := ha.Config{
			Name: name, Scope: "shop", Store: store, Postgres: inst,
			APIURL:     "http://" + name + ":8008/patroni",
			HTTPClient: &http.Client{Transport: net},
			Tags:       dcs.Tags{"failover_priority": priority},
			Hooks: ha.Hooks{
				OnStartedLeading: func(context.Context) { events <- name + " leads" },
				OnRoleChange:     func(role string) { events <- name + " is " + role },
			},
		}
		if name == "node1" {
			// Only node1 may create the cluster. A short TTL and loop_wait
			// suit an example; with primary_start_timeout 0 a primary whose
			// Postgres dies fails over at once instead of restarting.
			cfg.Bootstrap = &ha.Bootstrap{DCS: map[string]any{"ttl": 10, "loop_wait": 1, "retry_timeout": 2,
				"primary_start_timeout": 0, "postgresql": map[string]any{"use_pg_rewind": true}}}
		}
		node, err := ha.New(cfg)
		if err != nil {
			fmt.Println(err)
			return
		}
		net[name+":8008"] = node.Handler()
		nodes = append(nodes, node)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(n *ha.Node) { wg.Go(func() { _ = n.Run(ctx) }) }
	// await prints want once the hooks reported it (they run concurrently,
	// so events are collected and printed in a fixed order).
	seen := map[string]bool{}
	await := func(want string) {
		for !seen[want] {
			seen[<-events] = true
		}
		fmt.Println(want)
	}

	run(nodes[0])
	await("node1 leads")
	run(nodes[1])
	run(nodes[2])
	await("node2 is replica")
	await("node3 is replica")

	pgs.Instance("node1").Crash()
	fmt.Println("node1's Postgres crashed")
	await("node2 leads")
	await("node1 is replica")
	fmt.Println("most writable primaries at one instant:", pgs.MaxWritable())

	cancel()
	wg.Wait() // each Run stops its Postgres and leaves the DCS before returning
	// Output:
	// node1 leads
	// node2 is replica
	// node3 is replica
	// node1's Postgres crashed
	// node2 leads
	// node1 is replica
	// most writable primaries at one instant: 1
}

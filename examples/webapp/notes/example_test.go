package notes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/examples/webapp/notes"
	"github.com/pgha/pgha/routing"
)

// The service over a router that follows a cluster (here a fake DCS with
// one member, so that the example needs no database: /readyz and /topology
// answer from the router's view alone). In the webapp the router follows
// the cluster's etcd, and POST /notes and GET /notes/{id} reach Postgres.
func ExampleService() {
	ctx := context.Background()
	srv := memdcs.NewServer(memdcs.Options{})
	path := dcs.Path{Scope: "demo"}
	node1, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node1"})
	reader, _ := srv.Client(memdcs.ClientConfig{Path: path})
	defer node1.Close()
	defer reader.Close()
	pos := int64(1 << 24)
	_ = node1.PutMember(ctx, dcs.MemberData{ConnURL: "postgres://127.0.0.1:5432/postgres", State: "running",
		Role: dcs.RolePrimary, XLogLocation: &pos})
	_, _ = node1.AcquireLeader(ctx)

	router, err := routing.New(ctx, routing.Config{Source: routing.FromDCS(reader),
		ConnString: "user=postgres password=demo dbname=postgres", ProbeInterval: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()
	svc, err := notes.New(notes.Config{Router: router})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := svc.Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/topology", nil))
	var topo struct {
		Leader string `json:"leader"`
		Nodes  []struct {
			Name, Addr, Role string
		} `json:"nodes"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &topo)
	fmt.Println("leader:", topo.Leader, topo.Nodes[0].Addr, topo.Nodes[0].Role)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	fmt.Println("/readyz:", rec.Code)
	svc.Shutdown()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	fmt.Println("/readyz while shutting down:", rec.Code)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/notes", nil))
	fmt.Println("POST /notes without a body:", rec.Code)
	// Output:
	// leader: node1 127.0.0.1:5432 primary
	// /readyz: 200
	// /readyz while shutting down: 503
	// POST /notes without a body: 400
}

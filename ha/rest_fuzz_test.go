package ha_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/memdcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/internal/fakepg"
	"github.com/pgha/pgha/pg"
)

// FuzzRESTRequests sends arbitrary methods, paths, queries and bodies to the
// REST API of a node on memdcs and fakepg: every request gets an HTTP answer
// (a 4xx/5xx with a reason for bad input), never a panic, and the DCS keeps
// decodable values. The seed corpus lives in testdata/fuzz/FuzzRESTRequests.
func FuzzRESTRequests(f *testing.F) {
	for _, s := range []struct{ method, target, body string }{
		{"POST", "/switchover", `{"leader":"node1","candidate":"node2"}`},
		{"POST", "/switchover", `{"leader":"node1","scheduled_at":"2030-01-01T00:00:00+00:00"}`},
		{"POST", "/switchover", `{"leader":"node1","scheduled_at":"soon"}`},
		{"POST", "/failover", `{"candidate":"nope"}`},
		{"POST", "/failover", `[1,2]`},
		{"PATCH", "/config", `{"ttl":20,"postgresql":{"parameters":{"max_connections":null}}}`},
		{"PATCH", "/config", `{"ttl":`},
		{"PUT", "/config", `{"loop_wait":"x"}`},
		{"POST", "/restart", `{"role":"primary","postgres_version":"15.x"}`},
		{"POST", "/restart", `{"restart_pending":"yes","bogus":1}`},
		{"POST", "/reinitialize", `{"force":true}`},
		{"DELETE", "/switchover", ``},
		{"GET", "/replica?lag=10MB&tag_nofailover=true", ``},
		{"GET", "/replica?lag=-1ZB", ``},
		{"HEAD", "/primary", ``},
		{"GET", "/cluster", ``},
		{"GET", "/metrics", ``},
	} {
		f.Add(s.method, s.target, s.body)
	}
	srv := memdcs.NewServer(memdcs.Options{})
	path := dcs.Path{Scope: "fuzz"}
	store, err := srv.Client(memdcs.ClientConfig{Path: path, Name: "node1"})
	if err != nil {
		f.Fatal(err)
	}
	other, _ := srv.Client(memdcs.ClientConfig{Path: path, Name: "node2"})
	ctx := context.Background()
	_, _ = store.SetConfig(ctx, map[string]any{"ttl": 30, "loop_wait": 10}, dcs.Unconditional)
	_ = store.PutMember(ctx, dcs.MemberData{ConnURL: "postgres://node1:5432/postgres", APIURL: "http://node1:8008/patroni", State: "running", Role: "primary"})
	_ = other.PutMember(ctx, dcs.MemberData{ConnURL: "postgres://node2:5432/postgres", APIURL: "http://node2:8008/patroni", State: "running", Role: "replica"})
	_, _ = store.AcquireLeader(ctx)
	inst, err := fakepg.NewWorld().NewInstance(fakepg.Config{Name: "node1"})
	if err != nil {
		f.Fatal(err)
	}
	_ = inst.Initdb(ctx, pg.InitdbOptions{})
	_ = inst.Start(ctx)
	node, err := ha.New(ha.Config{Name: "node1", Scope: "fuzz", Store: store, Postgres: inst,
		APIURL: "http://node1:8008/patroni", HTTPClient: &http.Client{Transport: failingTransport{}}})
	if err != nil {
		f.Fatal(err)
	}
	h := node.Handler()
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n#") || len(target) > 200 {
			return // not a request line an HTTP server would accept
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return // the server rejects it before any handler runs
		}
		switch method {
		case "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE":
		default:
			return
		}
		req := httptest.NewRequest(method, "http://node1:8008"+target, strings.NewReader(body))
		rctx, cancel := context.WithTimeout(req.Context(), 0)
		defer cancel()
		if method == "POST" && strings.HasPrefix(target, "/switchover") || strings.HasPrefix(target, "/failover") {
			// An accepted immediate switchover polls for the outcome; the
			// answer to bad input comes before that.
			req = req.WithContext(rctx)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
		c, err := store.Cluster(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.Config == nil {
			t.Fatalf("%s %s %q removed /config", method, target, body)
		}
	})
}

// failingTransport answers every peer probe with an error, quickly.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, context.DeadlineExceeded
}

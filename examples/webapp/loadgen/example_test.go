package loadgen_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	"github.com/pgha/pgha/examples/webapp/loadgen"
)

// The load loop against a stand-in for the webapp that keeps notes in
// memory and fails one write in ten with 503: the report counts them. Run
// against the real webapp it is `go run ./examples/webapp/load`.
func ExampleRun() {
	var mu sync.Mutex
	notes := map[int]string{}
	writes := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		mu.Lock()
		defer mu.Unlock()
		writes++
		if writes%10 == 0 {
			http.Error(w, `{"error":"no primary"}`, http.StatusServiceUnavailable)
			return
		}
		id := len(notes) + 1
		notes[id] = in.Text
		w.Header().Set("Pgha-Node", "node1")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "text": in.Text})
	})
	mux.HandleFunc("GET /notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "text": notes[id]})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: srv.URL, Workers: 2, Pairs: 100})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("ok:", rep.OK(), "failed:", rep.Failed())
	fmt.Println("writes by primary:", rep.WritesBy)
	for reason, n := range rep.Failures {
		fmt.Println(n, "x", reason)
	}
	fmt.Println("the report has a latency table:", strings.Contains(rep.String(), "p99.9"))
	// Output:
	// ok: 180 failed: 10
	// writes by primary: [{node1 90}]
	// 10 x write: 503 no primary
	// the report has a latency table: true
}

// Command load is the webapp example's load loop: workers that write a note
// and read it back through the webapp, with the read-your-writes cookie,
// until the duration passes or Ctrl-C; then the report (requests, failures,
// which primary took the writes, latency percentiles). Run a switchover
// while it runs to see the webapp stay up:
//
//	go run ./examples/webapp/load -url http://127.0.0.1:8080 -duration 30s
//
// It exits 0 when every request succeeded, 1 otherwise. See package
// loadgen.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgha/pgha/examples/webapp/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(loadgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

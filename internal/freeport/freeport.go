// Package freeport hands out TCP ports on the loopback interface that were free
// a moment ago, for tests and the local demo. It never returns the same port
// twice within one process, so parallel tests in one binary do not collide.
//
// Test support; not covered by compatibility promises.
package freeport

import (
	"fmt"
	"net"
	"sync"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Get returns a port on 127.0.0.1 that nobody was listening on when it was
// checked and that this process has not handed out before.
func Get() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		if !used[port] {
			used[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no unused port after 100 attempts")
}

// MustGet is Get for tests: it fails the test instead of returning an error.
func MustGet(t interface {
	Helper()
	Fatalf(string, ...any)
}) int {
	t.Helper()
	p, err := Get()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}

// Package faultproxy is a TCP proxy for fault injection in tests: put it
// between a client and a server, then cut every connection at once, or pause
// all traffic (a blackhole) and resume it.
//
// It is modelled on etcd's test bridge: each accepted connection is paired
// with a fresh connection to the target and bytes are copied both ways. Pause
// holds bytes instead of dropping them: dropping part of a TCP stream would
// corrupt the protocol above it, which a real network never does (TCP
// retransmits), so a paused proxy behaves like a partition that later heals.
//
// Test support; not covered by compatibility promises.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the connection to the target for each accepted client.
const dialTimeout = 5 * time.Second

// Proxy forwards TCP connections from a loopback address to a target.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*link]struct{}
	paused  bool
	resumed chan struct{} // closed when the proxy is not paused
	closed  bool
	done    chan struct{} // closed by Close

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// link is one client connection and, once dialled, its upstream connection.
type link struct {
	client net.Conn
	done   chan struct{} // closed by close

	mu       sync.Mutex
	upstream net.Conn // nil until dialled
	closed   bool
}

// close closes both connections; it is idempotent.
func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	up := l.upstream
	l.mu.Unlock()
	_ = l.client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// setUpstream records the upstream connection; it reports false (and the
// caller must close up) when the link was closed meanwhile.
func (l *link) setUpstream(up net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.upstream = up
	return true
}

// New starts a proxy listening on 127.0.0.1 on a free port and forwarding
// to target (host:port). Close it when done.
func New(target string) (*Proxy, error) {
	if target == "" {
		return nil, errors.New("faultproxy: target is required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	resumed := make(chan struct{})
	close(resumed)
	p := &Proxy{
		target:  target,
		ln:      ln,
		conns:   map[*link]struct{}{},
		resumed: resumed,
		done:    make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address clients connect to (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// CutAll closes every open connection now, in both directions. The proxy
// keeps accepting, so clients can reconnect at once.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Pause stops all traffic: new connections are accepted but not forwarded,
// and bytes on open connections are held, until Resume. Connections stay
// open, so clients see a blackhole (timeouts), not a reset.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused || p.closed {
		return
	}
	p.paused = true
	p.resumed = make(chan struct{})
}

// Resume ends a Pause: held bytes and connections flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return
	}
	p.paused = false
	close(p.resumed)
}

// Conns returns the number of client connections currently open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines to exit. It is idempotent.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		close(p.done)
		if p.paused {
			p.paused = false
			close(p.resumed)
		}
		p.mu.Unlock()
		err = p.ln.Close()
		p.CutAll()
		p.wg.Wait()
	})
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (e.g. EMFILE): back off briefly.
			select {
			case <-p.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for one client connection and copies both ways
// until either side closes or the link is cut.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	if !p.waitResumed(l) {
		return
	}
	// The dial ends early when the link is cut or the proxy closed.
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-p.done:
			cancel()
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	d := net.Dialer{}
	up, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		return
	}
	if !l.setUpstream(up) { // cut while dialling
		_ = up.Close()
		return
	}

	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); p.copy(l, up, l.client) }()
	go func() { defer copies.Done(); p.copy(l, l.client, up) }()
	copies.Wait()
}

// copy moves bytes from src to dst, holding them while the proxy is paused.
// When either direction ends, the whole link is closed.
func (p *Proxy) copy(l *link, dst io.Writer, src io.Reader) {
	defer l.close()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitResumed(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitResumed blocks while the proxy is paused. It returns false when the
// link was closed meanwhile.
func (p *Proxy) waitResumed(l *link) bool {
	for {
		p.mu.Lock()
		paused, ch := p.paused, p.resumed
		p.mu.Unlock()
		if !paused {
			select {
			case <-l.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-ch:
		case <-l.done:
			return false
		}
	}
}

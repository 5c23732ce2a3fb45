// Package faultproxy is a TCP proxy for fault injection in tests: put it
// between a client and a server, then cut or reset every connection, pause
// all traffic or one direction of it (a blackhole, or a one-way cut), delay
// it, or reset connections at random (a lossy link).
//
// It is modelled on etcd's test bridge: each accepted connection is paired
// with a fresh connection to the target and bytes are copied both ways.
// "Tx" is the client→target direction, "Rx" the target→client one. Pause
// holds bytes instead of dropping them: dropping part of a TCP stream would
// corrupt the protocol above it, which a real network never does (TCP
// retransmits), so a paused proxy behaves like a partition that later heals.
// For the same reason a lossy link (Drop) never removes bytes: it resets the
// connection a chunk would have travelled on, which is what a TCP stream
// over a lossy network ends up doing when too many segments are lost.
//
// Every fault is set at run time and undone the same way (Resume, Delay
// with zero durations, Drop(0), ResetNew(false)); Heal undoes them all.
//
// Test support; not covered by compatibility promises.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the connection to the target for each accepted client.
const dialTimeout = 5 * time.Second

// queueLen is how many chunks one direction of a link holds while they are
// delayed or paused before the proxy stops reading (and TCP flow control
// pushes back on the sender).
const queueLen = 256

// Direction names one direction of the proxied traffic.
type Direction int

const (
	// Tx is the client→target direction.
	Tx Direction = iota
	// Rx is the target→client direction.
	Rx
)

// String returns "tx" or "rx".
func (d Direction) String() string {
	switch d {
	case Tx:
		return "tx"
	case Rx:
		return "rx"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// dirState is the fault setting of one direction.
type dirState struct {
	paused       bool
	resumed      chan struct{} // closed when the direction is not paused
	base, jitter time.Duration
}

// Proxy forwards TCP connections from a loopback address to a target.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu       sync.Mutex
	conns    map[*link]struct{}
	dirs     [2]dirState
	resetNew bool
	drop     float64
	rng      *rand.Rand
	drops    int // links reset by Drop
	closed   bool
	done     chan struct{} // closed by Close

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

// close closes both connections, with a TCP RST instead of a FIN when rst
// is set; it is idempotent.
func (l *link) close(rst bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	up := l.upstream
	l.mu.Unlock()
	if rst {
		setRST(l.client)
		if up != nil {
			setRST(up)
		}
	}
	_ = l.client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// setRST makes the next Close of c send a TCP RST (SO_LINGER 0).
func setRST(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
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
	p := &Proxy{
		target: target,
		ln:     ln,
		conns:  map[*link]struct{}{},
		rng:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		done:   make(chan struct{}),
	}
	for i := range p.dirs {
		p.dirs[i].resumed = make(chan struct{})
		close(p.dirs[i].resumed)
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address clients connect to (127.0.0.1:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// links returns the open links.
func (p *Proxy) links() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		out = append(out, l)
	}
	return out
}

// CutAll closes every open connection now, in both directions, with a FIN.
// The proxy keeps accepting, so clients can reconnect at once.
func (p *Proxy) CutAll() {
	for _, l := range p.links() {
		l.close(false)
	}
}

// Reset closes every open connection now with a TCP RST (SO_LINGER 0) on
// both sides, as a middlebox or a crashed peer would: the client and the
// target see "connection reset by peer", not an orderly end. Bytes held by
// a pause or a delay are lost with the connection. The proxy keeps
// accepting.
func (p *Proxy) Reset() {
	for _, l := range p.links() {
		l.close(true)
	}
}

// ResetNew turns on (or off) resetting new connections: while on, every
// connection is accepted and at once reset (RST), without dialling the
// target. Open connections are not affected.
func (p *Proxy) ResetNew(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resetNew = on
}

// Pause stops all traffic: new connections are accepted but not forwarded,
// and bytes on open connections are held, until Resume. Connections stay
// open, so clients see a blackhole (timeouts), not a reset.
func (p *Proxy) Pause() {
	p.PauseTx()
	p.PauseRx()
}

// PauseTx holds the client→target bytes only (a one-way cut: the target's
// bytes still reach the client), until ResumeTx or Resume. New connections
// are accepted but the target is not dialled meanwhile (a SYN would not get
// through either).
func (p *Proxy) PauseTx() { p.pause(Tx) }

// PauseRx holds the target→client bytes only (a one-way cut: the client's
// requests still reach the target, its replies never come back), until
// ResumeRx or Resume.
func (p *Proxy) PauseRx() { p.pause(Rx) }

func (p *Proxy) pause(d Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.dirs[d]
	if s.paused || p.closed {
		return
	}
	s.paused = true
	s.resumed = make(chan struct{})
}

// Resume ends a Pause, PauseTx or PauseRx: held bytes and connections flow
// again, in order.
func (p *Proxy) Resume() {
	p.ResumeTx()
	p.ResumeRx()
}

// ResumeTx ends PauseTx (or the Tx half of Pause).
func (p *Proxy) ResumeTx() { p.resume(Tx) }

// ResumeRx ends PauseRx (or the Rx half of Pause).
func (p *Proxy) ResumeRx() { p.resume(Rx) }

func (p *Proxy) resume(d Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.dirs[d]
	if !s.paused {
		return
	}
	s.paused = false
	close(s.resumed)
}

// Delay holds every chunk read from now on, in both directions, for base ±
// jitter (uniformly drawn per chunk) before it is forwarded. Byte order
// within a connection is kept: a chunk never overtakes an earlier one, so
// a short draw behind a long one waits for it. Delay(0, 0) ends it for new
// chunks. The jitter must not exceed base, and neither may be negative.
func (p *Proxy) Delay(base, jitter time.Duration) error {
	if err := checkDelay(base, jitter); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for d := range p.dirs {
		p.dirs[d].base, p.dirs[d].jitter = base, jitter
	}
	return nil
}

// DelayTx is Delay for the client→target direction only.
func (p *Proxy) DelayTx(base, jitter time.Duration) error { return p.delay(Tx, base, jitter) }

// DelayRx is Delay for the target→client direction only.
func (p *Proxy) DelayRx(base, jitter time.Duration) error { return p.delay(Rx, base, jitter) }

func (p *Proxy) delay(d Direction, base, jitter time.Duration) error {
	if err := checkDelay(base, jitter); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dirs[d].base, p.dirs[d].jitter = base, jitter
	return nil
}

func checkDelay(base, jitter time.Duration) error {
	if base < 0 || jitter < 0 {
		return fmt.Errorf("faultproxy: delay %s ± %s: durations must not be negative", base, jitter)
	}
	if jitter > base {
		return fmt.Errorf("faultproxy: delay %s ± %s: the jitter must not exceed the base delay", base, jitter)
	}
	return nil
}

// Drop makes the link lossy: each chunk read from now on, in either
// direction, resets (RST) its connection with probability prob instead of
// being forwarded. Bytes are never silently removed from a stream. Drop(0)
// ends it. prob must be in [0, 1].
func (p *Proxy) Drop(prob float64) error {
	if math.IsNaN(prob) || prob < 0 || prob > 1 {
		return fmt.Errorf("faultproxy: drop probability %v is not in [0, 1]", prob)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = prob
	return nil
}

// Seed restarts the proxy's random source (Drop's draws and Delay's
// jitter) from seed, so that a run can be replayed. The draws are taken in
// the order chunks are read, so a replay repeats the same outcomes when the
// same chunks are read in the same order (one connection at a time, as in
// a request/reply exchange).
func (p *Proxy) Seed(seed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Drops returns how many connections Drop has reset so far.
func (p *Proxy) Drops() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// Heal undoes every fault setting: it resumes both directions, ends delays
// and drops and stops resetting new connections. Connections already cut or
// reset stay closed; held bytes are delivered.
func (p *Proxy) Heal() {
	p.mu.Lock()
	for d := range p.dirs {
		s := &p.dirs[d]
		s.base, s.jitter = 0, 0
		if s.paused {
			s.paused = false
			close(s.resumed)
		}
	}
	p.drop = 0
	p.resetNew = false
	p.mu.Unlock()
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
		for d := range p.dirs {
			if s := &p.dirs[d]; s.paused {
				s.paused = false
				close(s.resumed)
			}
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
		if p.resetNew {
			p.mu.Unlock()
			setRST(c)
			_ = c.Close()
			continue
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
		l.close(false)
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	if !p.waitResumed(l, Tx) {
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
	for _, dir := range []struct {
		d        Direction
		dst, src net.Conn
	}{{Tx, up, l.client}, {Rx, l.client, up}} {
		q := make(chan chunk, queueLen)
		copies.Add(2)
		go func() { defer copies.Done(); p.read(l, dir.d, dir.src, q) }()
		go func() { defer copies.Done(); p.write(l, dir.d, dir.dst, q) }()
	}
	copies.Wait()
}

// chunk is what one read returned, and when it may be forwarded.
type chunk struct {
	b  []byte
	at time.Time
}

// read reads chunks from src into q, stamping each with its release time,
// or resets the link when Drop decides so. It closes q when src ends.
func (p *Proxy) read(l *link, d Direction, src net.Conn, q chan<- chunk) {
	defer close(q)
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			delay, drop := p.draw(d)
			if drop {
				l.close(true)
				return
			}
			c := chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(delay)}
			select {
			case q <- c:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// draw decides the fate of a chunk read in direction d: its delay and
// whether Drop resets its link (counted).
func (p *Proxy) draw(d Direction) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drop > 0 && p.rng.Float64() < p.drop {
		p.drops++
		return 0, true
	}
	s := p.dirs[d]
	delay := s.base
	if s.jitter > 0 {
		delay += time.Duration(p.rng.Int64N(int64(2*s.jitter)+1)) - s.jitter
	}
	return delay, false
}

// write forwards the chunks of q to dst in order, each once its release
// time has come and its direction is not paused. When q ends (its source
// closed) or a write fails, the whole link is closed.
func (p *Proxy) write(l *link, d Direction, dst net.Conn, q <-chan chunk) {
	defer l.close(false)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-q:
			if !ok {
				return
			}
		case <-l.done:
			return
		}
		if wait := time.Until(c.at); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-l.done:
				return
			}
		}
		if !p.waitResumed(l, d) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// waitResumed blocks while direction d is paused. It returns false when
// the link was closed meanwhile.
func (p *Proxy) waitResumed(l *link, d Direction) bool {
	for {
		p.mu.Lock()
		paused, ch := p.dirs[d].paused, p.dirs[d].resumed
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

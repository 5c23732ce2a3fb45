package faultproxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every line back; it stops at test cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(echoServer(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write([]byte(msg + "\n"))
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, msg+"\n", line)
}

func TestForwards(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "hello")
	roundTrip(t, c, r, "again")
	require.Equal(t, 1, p.Conns())
}

func TestCutAllClosesAndKeepsAccepting(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c1, r1 := dial(t, p)
	roundTrip(t, c1, r1, "one")
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "two")

	p.CutAll()
	for _, r := range []*bufio.Reader{r1, r2} {
		_, err := r.ReadString('\n')
		require.ErrorIs(t, err, io.EOF)
	}
	require.Eventually(t, func() bool { return p.Conns() == 0 }, 5*time.Second, 5*time.Millisecond)

	c3, r3 := dial(t, p)
	roundTrip(t, c3, r3, "three")
}

func TestPauseHoldsAndResumeDelivers(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "before")

	p.Pause()
	_, err := c.Write([]byte("held\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = r.ReadString('\n')
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "read while paused: %v", err)

	// A connection opened while paused is accepted but not served.
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.Write([]byte("new\n"))
	require.NoError(t, err)

	p.Resume()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)
	require.NoError(t, c2.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err = bufio.NewReader(c2).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "new\n", line)
}

func TestCutAllWhilePaused(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "x")
	p.Pause()
	p.CutAll()
	_, err := r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)
	p.Resume()
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "y")
}

func TestCloseIsIdempotentAndStopsAccepting(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echoServer(t))
	require.NoError(t, err)
	c, r := dial(t, p)
	roundTrip(t, c, r, "x")
	p.Pause() // Close must not hang on a paused proxy
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err)
}

func TestUnreachableTarget(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	p, err := faultproxy.New(addr)
	require.NoError(t, err)
	defer p.Close()
	c, r := dial(t, p)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = r.ReadString('\n')
	require.ErrorIs(t, err, io.EOF)
}

func TestNewRequiresTarget(t *testing.T) {
	t.Parallel()
	_, err := faultproxy.New("")
	require.Error(t, err)
}

// tapServer accepts connections and hands the server side of each to the
// test, which reads and writes on it directly.
func tapServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for {
			select {
			case c := <-ch:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String(), ch
}

// accepted returns the server side of the next connection the tap server
// accepted.
func accepted(t *testing.T, ch <-chan net.Conn) (net.Conn, *bufio.Reader) {
	t.Helper()
	select {
	case c := <-ch:
		t.Cleanup(func() { _ = c.Close() })
		return c, bufio.NewReader(c)
	case <-time.After(5 * time.Second):
		t.Fatal("the target accepted no connection")
		return nil, nil
	}
}

// readLine reads one line within 5 s.
func readLine(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	return line
}

// requireHeld asserts that nothing arrives on c for 200 ms.
func requireHeld(t *testing.T, c net.Conn, r *bufio.Reader, what string) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)))
	line, err := r.ReadString('\n')
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "%s: got %q, %v; want it held", what, line, err)
}

func TestPauseTxIsOneWay(t *testing.T) {
	t.Parallel()
	p, c, r, s, sr, _ := tappedLink(t)
	var err error

	p.PauseTx()
	_, err = c.Write([]byte("up\n"))
	require.NoError(t, err)
	requireHeld(t, s, sr, "client→target while Tx is paused")
	_, err = s.Write([]byte("down\n"))
	require.NoError(t, err)
	require.Equal(t, "down\n", readLine(t, c, r), "target→client flows while Tx is paused")

	p.ResumeTx()
	require.Equal(t, "up\n", readLine(t, s, sr), "held bytes delivered after ResumeTx")
}

func TestPauseRxIsOneWay(t *testing.T) {
	t.Parallel()
	p, c, r, s, sr, srv := tappedLink(t)
	var err error

	p.PauseRx()
	_, err = s.Write([]byte("reply-1\n"))
	require.NoError(t, err)
	requireHeld(t, c, r, "target→client while Rx is paused")
	_, err = c.Write([]byte("request\n"))
	require.NoError(t, err)
	require.Equal(t, "request\n", readLine(t, s, sr), "the request reaches the target while Rx is paused")
	_, err = s.Write([]byte("reply-2\n"))
	require.NoError(t, err)

	// A connection opened while Rx is paused reaches the target too.
	c2, _ := dial(t, p)
	_, err = c2.Write([]byte("new\n"))
	require.NoError(t, err)
	s2, sr2 := accepted(t, srv)
	require.Equal(t, "new\n", readLine(t, s2, sr2))

	p.Resume()
	require.Equal(t, "reply-1\n", readLine(t, c, r), "held replies delivered in order")
	require.Equal(t, "reply-2\n", readLine(t, c, r))
}

func TestDelayHoldsEachDirection(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "warm")

	require.NoError(t, p.DelayTx(200*time.Millisecond, 0))
	start := time.Now()
	roundTrip(t, c, r, "tx")
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)

	require.NoError(t, p.DelayTx(0, 0))
	require.NoError(t, p.DelayRx(200*time.Millisecond, 0))
	start = time.Now()
	roundTrip(t, c, r, "rx")
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)

	require.NoError(t, p.Delay(200*time.Millisecond, 0))
	start = time.Now()
	roundTrip(t, c, r, "both")
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "each direction is delayed")

	// Undone: a delay far beyond roundTrip's 5 s deadline, then removed.
	require.NoError(t, p.Delay(time.Minute, 0))
	require.NoError(t, p.Delay(0, 0))
	roundTrip(t, c, r, "undone")
}

func TestDelayWithJitterKeepsOrder(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	p.Seed(7)
	require.NoError(t, p.Delay(20*time.Millisecond, 20*time.Millisecond))
	c, r := dial(t, p)
	const n = 200
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
				errc <- err
				return
			}
			if i%10 == 0 {
				time.Sleep(time.Millisecond) // separate chunks
			}
		}
		errc <- nil
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	for i := range n {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%d\n", i), line, "byte order within a connection")
	}
	require.NoError(t, <-errc)
}

func TestDelayRejectsBadInput(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	require.ErrorContains(t, p.Delay(-time.Second, 0), "negative")
	require.ErrorContains(t, p.DelayTx(time.Second, -time.Second), "negative")
	require.ErrorContains(t, p.DelayRx(time.Second, 2*time.Second), "jitter")
	for _, bad := range []float64{-0.1, 1.5, math.NaN()} {
		require.Error(t, p.Drop(bad), "Drop(%v)", bad)
	}
}

// requireReset asserts that reading c ends with "connection reset by peer".
func requireReset(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := r.ReadString('\n')
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

func TestResetSendsRST(t *testing.T) {
	t.Parallel()
	p, c, r, s, sr, srv := tappedLink(t)
	var err error

	p.Reset()
	requireReset(t, c, r)
	requireReset(t, s, sr)
	require.Eventually(t, func() bool { return p.Conns() == 0 }, 5*time.Second, 5*time.Millisecond)

	c2, r2 := dial(t, p)
	_, err = c2.Write([]byte("again\n"))
	require.NoError(t, err)
	s2, sr2 := accepted(t, srv)
	require.Equal(t, "again\n", readLine(t, s2, sr2))
	_, err = s2.Write([]byte("back\n"))
	require.NoError(t, err)
	require.Equal(t, "back\n", readLine(t, c2, r2))
}

func TestResetNew(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "before")

	p.ResetNew(true)
	c2, r2 := dial(t, p)
	requireReset(t, c2, r2)
	roundTrip(t, c, r, "open connections are not affected")

	p.ResetNew(false)
	c3, r3 := dial(t, p)
	roundTrip(t, c3, r3, "after")
}

func TestDropResetsNeverCorrupts(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	require.NoError(t, p.Drop(1))
	c, r := dial(t, p)
	_, err := c.Write([]byte("lost\n"))
	require.NoError(t, err)
	requireReset(t, c, r)
	require.Equal(t, 1, p.Drops())

	require.NoError(t, p.Drop(0))
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "whole")
	require.Equal(t, 1, p.Drops())
}

// dropPattern makes n one-line round trips, each on a new connection, and
// returns which ones survived ('+') or were reset ('x').
func dropPattern(t *testing.T, seed uint64, n int) string {
	p := newProxy(t)
	p.Seed(seed)
	require.NoError(t, p.Drop(0.4))
	out := make([]byte, n)
	for i := range n {
		c, r := dial(t, p)
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		msg := fmt.Sprintf("m%d\n", i)
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		line, err := r.ReadString('\n')
		switch {
		case err == nil:
			require.Equal(t, msg, line, "a surviving connection carries the bytes unchanged")
			out[i] = '+'
		case errors.Is(err, syscall.ECONNRESET):
			out[i] = 'x'
		default:
			t.Fatalf("round trip %d: %v", i, err)
		}
		_ = c.Close()
	}
	return string(out)
}

func TestDropSeedReplays(t *testing.T) {
	t.Parallel()
	a := dropPattern(t, 42, 40)
	b := dropPattern(t, 42, 40)
	require.Equal(t, a, b, "the same seed replays the same drops")
	require.Contains(t, a, "+")
	require.Contains(t, a, "x")
	t.Logf("seed 42, p=0.4: %s", a)
}

func TestHealUndoesEverything(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	c, r := dial(t, p)
	roundTrip(t, c, r, "before")
	p.PauseTx()
	p.PauseRx()
	require.NoError(t, p.Delay(time.Minute, 0))
	p.ResetNew(true)
	p.Heal()
	require.NoError(t, p.Drop(1))
	p.Heal()
	roundTrip(t, c, r, "after")
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "new")
	require.Zero(t, p.Drops())
}

// A proxy in front of a server: delay every chunk by 50 ms ± 20 ms, then
// make the link lossy, then heal it.
func ExampleProxy_Delay() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(c, c)
			_ = c.Close()
		}
	}()
	p, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	if err := p.Delay(50*time.Millisecond, 20*time.Millisecond); err != nil {
		fmt.Println(err)
		return
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte("ping\n"))
	line, err := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("%q %v\n", line, err)
	fmt.Println(p.Drop(2))
	p.Heal()
	// Output:
	// "ping\n" <nil>
	// faultproxy: drop probability 2 is not in [0, 1]
}

// tappedLink opens a proxy to a tap server and one connection through it,
// checked with a first line each way: the proxy, the client's side, the
// target's side and the tap server (for later connections).
func tappedLink(t *testing.T) (*faultproxy.Proxy, net.Conn, *bufio.Reader, net.Conn, *bufio.Reader, <-chan net.Conn) {
	t.Helper()
	addr, srv := tapServer(t)
	p, err := faultproxy.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	c, r := dial(t, p)
	_, err = c.Write([]byte("hello\n"))
	require.NoError(t, err)
	s, sr := accepted(t, srv)
	require.Equal(t, "hello\n", readLine(t, s, sr))
	return p, c, r, s, sr, srv
}

package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
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

package pg

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// connCache keeps one superuser connection to the current postmaster for
// the frequent calls (Status, Promote), so they do not pay a new connection
// each time: the HA loop and every REST health check call Status. Only one
// caller uses it at a time; others wait, bounded by their context.
type connCache struct {
	sem  chan struct{} // one slot
	conn *pgx.Conn
	pid  int
}

func newConnCache() *connCache { return &connCache{sem: make(chan struct{}, 1)} }

// borrow returns the cached connection to the postmaster with pid (opening
// one if needed) and a release func; release(false) drops a connection that
// failed.
func (i *Instance) borrow(ctx context.Context, pid int) (*pgx.Conn, func(ok bool), error) {
	c := i.cc
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if c.conn != nil && (c.pid != pid || c.conn.IsClosed()) {
		_ = c.conn.Close(context.WithoutCancel(ctx))
		c.conn = nil
	}
	if c.conn == nil {
		conn, err := i.Connect(ctx)
		if err != nil {
			<-c.sem
			return nil, nil, err
		}
		c.conn, c.pid = conn, pid
	}
	conn := c.conn
	return conn, func(ok bool) {
		// Never keep a session open to a server being stopped: a smart
		// shutdown waits for every session to end.
		if p := i.current(); p == nil || p.pid != pid || p.stopping.Load() {
			ok = false
		}
		if !ok {
			_ = conn.Close(context.WithoutCancel(ctx))
			c.conn = nil
		}
		<-c.sem
	}, nil
}

// dropConn closes the cached connection (the server is going away).
func (i *Instance) dropConn() {
	c := i.cc
	select {
	case c.sem <- struct{}{}:
	default:
		return // in use: its owner notices the dead connection
	}
	if c.conn != nil {
		_ = c.conn.Close(context.Background())
		c.conn = nil
	}
	<-c.sem
}

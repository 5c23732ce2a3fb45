package routing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errRetired: the pool was closed because its node left its role; the
// acquisition can run again on the current topology.
var errRetired = errors.New("routing: pool retired after a topology change")

// pool is one node's pgxpool in one role. A primary pool is tagged with the
// epoch it was created for and tracks its acquired connections so that
// fencing can cut them.
type pool struct {
	node  string
	addr  string
	role  Role
	epoch Epoch
	p     *pgxpool.Pool

	retired atomic.Bool
	fenced  atomic.Bool
	// warm: a primary pool opened on a switchover candidate while it was
	// still a replica. Its connections are checked (not in recovery) on
	// their first acquisition instead of at connect.
	warm bool

	mu       sync.Mutex
	conns    map[*pgx.Conn]struct{} // every open connection (primary pools)
	verified map[*pgx.Conn]bool     // warm pools: connections found writable
}

func (p *pool) isFenced() bool { return p.fenced.Load() }

// acquire takes a connection, marking errors of a retired pool as such.
func (p *pool) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := p.p.Acquire(ctx)
	if err == nil {
		return c, nil
	}
	if p.retired.Load() && !errors.Is(err, ErrFenced) {
		err = fmt.Errorf("%w: %w", errRetired, err)
	}
	return nil, &NodeError{Node: p.node, Op: "acquire", Err: err}
}

// fence stops the pool from handing out connections and cuts every
// connection it has, idle or in use (closing its socket, so an in-flight
// statement fails at once and nothing more reaches the server over it). It
// returns the number of connections cut. Closing the pool itself is left to
// the caller.
func (p *pool) fence() int {
	p.retired.Store(true)
	p.mu.Lock()
	p.fenced.Store(true)
	conns := make([]*pgx.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	clear(p.conns)
	p.mu.Unlock()
	for _, c := range conns {
		if nc := c.PgConn().Conn(); nc != nil {
			_ = nc.Close()
		}
	}
	return len(conns)
}

// verify checks, once per connection of a warm pool, that its server is out
// of recovery. A connection to a server still in recovery stays in the pool
// (it will do once the promotion ends) and the acquisition fails with
// ErrNotPrimary; a broken one is destroyed.
func (p *pool) verify(ctx context.Context, c *pgx.Conn) (bool, error) {
	p.mu.Lock()
	ok := p.verified[c]
	p.mu.Unlock()
	if ok {
		return true, nil
	}
	var rec bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return false, err
	}
	if rec {
		return true, fmt.Errorf("%w (%s)", ErrNotPrimary, p.node)
	}
	p.mu.Lock()
	p.verified[c] = true
	p.mu.Unlock()
	return true, nil
}

// nodeConnConfig returns base's connection settings pointed at addr: host
// and port replaced in the main config and in the fallbacks that named the
// same host (sslmode=prefer's plain-text retry), others dropped; a TLS
// ServerName that named the base host names the node instead.
func nodeConnConfig(base *pgx.ConnConfig, addr string) (*pgx.ConnConfig, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("routing: node address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("routing: node address %q: invalid port", addr)
	}
	c := base.Copy()
	oldHost, oldPort := c.Host, c.Port
	c.Host, c.Port = host, uint16(port)
	if c.TLSConfig != nil && c.TLSConfig.ServerName == oldHost {
		c.TLSConfig.ServerName = host
	}
	var fbs []*pgconn.FallbackConfig
	for _, fb := range c.Fallbacks {
		if fb.Host != oldHost || fb.Port != oldPort {
			continue
		}
		fb.Host, fb.Port = host, uint16(port)
		if fb.TLSConfig != nil && fb.TLSConfig.ServerName == oldHost {
			fb.TLSConfig.ServerName = host
		}
		fbs = append(fbs, fb)
	}
	c.Fallbacks = fbs
	return c, nil
}

// validatePrimary is the primary pool's connection check, the
// target_session_attrs=primary rule with a typed error: a server in
// recovery is refused.
func validatePrimary(node string) pgconn.ValidateConnectFunc {
	return func(ctx context.Context, pc *pgconn.PgConn) error {
		res := pc.ExecParams(ctx, "SELECT pg_is_in_recovery()", nil, nil, nil, nil).Read()
		if res.Err != nil {
			return res.Err
		}
		if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
			return fmt.Errorf("routing: unexpected answer to pg_is_in_recovery() from %s", node)
		}
		if string(res.Rows[0][0]) == "t" {
			return fmt.Errorf("%w (%s)", ErrNotPrimary, node)
		}
		return nil
	}
}

// newPool builds node n's pool for role. A primary pool validates every new
// connection (not in recovery) and registers acquired connections for
// fencing; a replica pool makes transactions read-only by default.
func (r *Router) newPool(n Node, role Role, epoch Epoch) (p *pool, err error) {
	return r.newPoolWarm(n, role, epoch, false)
}

// newPoolWarm is newPool; with warm, a primary pool accepts connections to
// a server in recovery and checks each one on its first acquisition.
func (r *Router) newPoolWarm(n Node, role Role, epoch Epoch, warm bool) (p *pool, err error) {
	cfg := r.base.Copy()
	cc, err := nodeConnConfig(cfg.ConnConfig, n.Addr)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig = cc
	if r.cfg.ConfigurePool != nil {
		if err := r.cfg.ConfigurePool(n, role, cfg); err != nil {
			return nil, fmt.Errorf("routing: ConfigurePool(%s): %w", n.Name, err)
		}
	}
	p = &pool{node: n.Name, addr: n.Addr, role: role, epoch: epoch, warm: warm,
		conns: map[*pgx.Conn]struct{}{}, verified: map[*pgx.Conn]bool{}}
	if role == RolePrimary {
		cfg.ConnConfig.ValidateConnect = validatePrimary(n.Name)
		if warm {
			cfg.ConnConfig.ValidateConnect = nil
		}
		// Every connection of the pool is tracked from connect to close,
		// so that fencing can cut the ones in use. (AfterRelease is not
		// used: pgxpool runs it on a goroutine per release, which costs
		// throughput.)
		userConnect := cfg.AfterConnect
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			if userConnect != nil {
				if err := userConnect(ctx, c); err != nil {
					return err
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.fenced.Load() {
				return fmt.Errorf("%w (%s)", ErrFenced, p.node)
			}
			p.conns[c] = struct{}{}
			return nil
		}
		userClose := cfg.BeforeClose
		cfg.BeforeClose = func(c *pgx.Conn) {
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.verified, c)
			p.mu.Unlock()
			if userClose != nil {
				userClose(c)
			}
		}
		userPrepare, userBefore := cfg.PrepareConn, cfg.BeforeAcquire
		cfg.BeforeAcquire = nil
		cfg.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
			if p.fenced.Load() {
				return false, fmt.Errorf("%w (%s)", ErrFenced, p.node)
			}
			if p.warm {
				if ok, err := p.verify(ctx, c); !ok || err != nil {
					return ok, err
				}
			}
			switch {
			case userPrepare != nil:
				return userPrepare(ctx, c)
			case userBefore != nil:
				return userBefore(ctx, c), nil
			}
			return true, nil
		}
	} else {
		cfg.ConnConfig.ValidateConnect = nil
		if cfg.ConnConfig.RuntimeParams == nil {
			cfg.ConnConfig.RuntimeParams = map[string]string{}
		}
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	defer func() {
		// pgxpool panics on a Config it did not parse; an SDK returns an
		// error instead.
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("routing: pool for %s: %v", n.Name, v)
		}
	}()
	pp, err := pgxpool.NewWithConfig(r.ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("routing: pool for %s: %w", n.Name, err)
	}
	p.p = pp
	return p, nil
}

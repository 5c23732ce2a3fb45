package cluster

import (
	"fmt"
	"net"
	"strconv"

	"github.com/pgha/pgha/internal/faultproxy"
)

// newIngress starts the node's Postgres ingress proxy and publishes it as
// the node's connect address.
func (n *Node) newIngress() error {
	p, err := faultproxy.New(fmt.Sprintf("127.0.0.1:%d", n.spec.Port))
	if err != nil {
		return fmt.Errorf("cluster: %s: postgres ingress proxy: %w", n.Name, err)
	}
	n.ingress = p
	n.spec.ConnectAddress = p.Addr()
	return nil
}

// PostgresIngress returns the proxy in front of the node's Postgres that
// its conn_url names (Options.PostgresIngress), or nil. What reaches the
// node by its member key goes through it: its replicas' streaming when it
// is the primary, pg_rewind and clones from it, routers. Cutting it (Pause
// for a blackhole, Reset and ResetNew for refused connections, Delay) cuts
// or slows the replication edges into this node while the harness, the
// history workload (direct ports) and the DCS are unaffected. HealDCS does
// not heal it; Heal does.
func (n *Node) PostgresIngress() *faultproxy.Proxy { return n.ingress }

// ConnectAddress is the host:port the node publishes as its conn_url.
func (n *Node) ConnectAddress() string {
	if n.spec.ConnectAddress != "" {
		return n.spec.ConnectAddress
	}
	return fmt.Sprintf("127.0.0.1:%d", n.spec.Port)
}

// servesPort reports whether a connection to 127.0.0.1:port reaches the
// node's Postgres: its own port, or its ingress proxy's.
func (n *Node) servesPort(port int) bool {
	if port == n.spec.Port {
		return true
	}
	if n.ingress == nil {
		return false
	}
	_, p, err := net.SplitHostPort(n.ingress.Addr())
	return err == nil && p == strconv.Itoa(port)
}

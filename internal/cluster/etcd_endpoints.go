package cluster

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/internal/faultproxy"
)

// etcdAddrs returns the host:port of every etcd member the cluster uses:
// Options.EtcdEndpoints, else the one address.
func (c *Cluster) etcdAddrs() []string {
	if len(c.opts.EtcdEndpoints) > 0 {
		return append([]string(nil), c.opts.EtcdEndpoints...)
	}
	return []string{c.addr}
}

// EtcdEndpoints returns the host:port of every etcd member the cluster
// uses (one unless Options.EtcdEndpoints was set).
func (c *Cluster) EtcdEndpoints() []string { return c.etcdAddrs() }

// adminConfig is the configuration of the harness's own etcd client: every
// member, with short gRPC keepalives when there are several, so that a
// paused member is soon skipped.
func (c *Cluster) adminConfig() clientv3.Config {
	addrs := c.etcdAddrs()
	cfg := clientv3.Config{Endpoints: make([]string, len(addrs)), DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	for i, a := range addrs {
		cfg.Endpoints[i] = "http://" + a
	}
	if len(addrs) > 1 {
		cfg.DialKeepAliveTime, cfg.DialKeepAliveTimeout, cfg.PermitWithoutStream = time.Second, time.Second, true
	}
	return cfg
}

// newProxies starts one fault proxy per etcd member for a node, in member
// order. On error the ones started are closed.
func (c *Cluster) newProxies() ([]*faultproxy.Proxy, error) {
	var out []*faultproxy.Proxy
	for _, a := range c.etcdAddrs() {
		p, err := faultproxy.New(a)
		if err != nil {
			for _, q := range out {
				_ = q.Close()
			}
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// proxyURLs returns the client URLs a node dials: its proxies.
func proxyURLs(ps []*faultproxy.Proxy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "http://" + p.Addr()
	}
	return out
}

// proxies returns every etcd proxy of the node, the first member's first.
func (n *Node) proxies() []*faultproxy.Proxy {
	return append([]*faultproxy.Proxy{n.proxy}, n.more...)
}

func (n *Node) pauseProxies() {
	for _, p := range n.proxies() {
		p.Pause()
	}
}

func (n *Node) resumeProxies() {
	for _, p := range n.proxies() {
		p.Resume()
	}
	if n.ingress != nil {
		n.ingress.Heal()
	}
}

func (n *Node) closeProxies() {
	for _, p := range n.proxies() {
		_ = p.Close()
	}
	if n.ingress != nil {
		_ = n.ingress.Close()
	}
}

// EtcdProxies returns the node's etcd fault proxies, one per etcd member
// in Cluster.EtcdEndpoints order (Proxy is the first).
func (n *Node) EtcdProxies() []*faultproxy.Proxy { return n.proxies() }

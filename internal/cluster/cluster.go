package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/cluster/noderun"
	"github.com/pgha/pgha/internal/etcdtest"
	"github.com/pgha/pgha/internal/freeport"
	"github.com/pgha/pgha/pg"
)

// Passwords of the roles every harness node uses.
const (
	SuperuserPassword   = "su-secret"
	ReplicationPassword = "repl:secret"
	RewindPassword      = "rewind'secret"
	RewindUser          = "rewinder"
)

// Mode says how the nodes run.
type Mode int

const (
	// InProcess runs each node's ha.Node in a goroutine of this process.
	// Node.HA gives access to it (Switchover, Failover, Status). A node
	// cannot be killed or frozen, only stopped and started.
	InProcess Mode = iota
	// Processes runs each node as a nodeproc OS process, which can be
	// killed (SIGKILL) and frozen (SIGSTOP).
	Processes
)

// String returns "in-process" or "processes".
func (m Mode) String() string {
	if m == Processes {
		return "processes"
	}
	return "in-process"
}

// Options configure a Cluster. Zero values mean the documented default.
type Options struct {
	// Nodes is the number of nodes, named node1, node2, ... Default 3.
	Nodes int
	// Mode is how the nodes run. Default InProcess.
	Mode Mode
	// NodeProc is the nodeproc binary (see BuildNodeProc). Required with
	// Processes.
	NodeProc string
	// Dynamic is the bootstrap dynamic configuration (Patroni's
	// bootstrap.dcs) written to /config by the node that creates the
	// cluster. Default {"ttl":6,"loop_wait":2,"retry_timeout":2,
	// "postgresql":{"use_pg_rewind":true,"use_slots":false}}.
	Dynamic map[string]any
	// Tags are per-node member tags, by node name.
	Tags map[string]dcs.Tags
	// Bootstrap lists the nodes that may create the cluster with initdb.
	// nil means every node; the others only clone.
	Bootstrap []string
	// Etcd is the host:port of an etcd client endpoint to use. Empty starts
	// an embedded etcd that Close stops.
	Etcd string
	// EtcdEndpoints, when set, are the host:port of every member of an etcd
	// cluster to use instead of Etcd: each node reaches each member
	// through a proxy of its own (see etcd_endpoints.go).
	EtcdEndpoints []string
	// Namespace is the DCS namespace. Default "pgha-cluster".
	Namespace string
	// Scope is the cluster name. Default a name unique in this process.
	Scope string
	// Dir is where node directories go. Default a new temporary directory
	// that Close removes.
	Dir string
	// BinDir holds the PostgreSQL programs. Default pg.FindBinDir.
	BinDir string
	// Logger receives the harness's and the nodes' logs (a process node's
	// output line by line). nil discards them; process nodes always log to
	// Node.LogFile too.
	Logger hclog.Logger
	// Debug turns on the nodes' debug logs.
	Debug bool
	// Trace makes the nodes log the duration of every DCS, Postgres and
	// peer-probe call, every DCS watch event and every decision.
	Trace bool
	// Watchdog, when set, gives every node a watchdog device emulated by
	// the harness (a named pipe watched by a Fencer in this process, which
	// kills the node's Postgres and agent when the keepalives stop: see
	// fencer.go). Processes only.
	Watchdog *WatchdogOptions
	// NodeTmpfsSize, when > 0, puts each node's data directory on a
	// size-limited tmpfs of its own, of that many bytes (see diskfull.go:
	// Node.FillDisk, Node.FreeDisk). Needs root. 0: off.
	NodeTmpfsSize int64
	// PostgresIngress puts a fault proxy in front of each node's Postgres
	// and publishes it as the node's conn_url (Node.PostgresIngress):
	// replication, pg_rewind, clones and routers reach the node through
	// it, while the harness and the history workload use the direct port.
	PostgresIngress bool
}

// DefaultDynamic is the dynamic configuration a cluster gets when
// Options.Dynamic is nil: ttl=6, loop_wait=2, retry_timeout=2, pg_rewind on,
// no replication slots.
func DefaultDynamic() map[string]any {
	return map[string]any{"ttl": 6, "loop_wait": 2, "retry_timeout": 2,
		"postgresql": map[string]any{"use_pg_rewind": true, "use_slots": false}}
}

// Cluster is a running test cluster: one etcd (embedded or given) and N
// nodes, each with its own PostgreSQL, ports, directories and etcd fault
// proxy. Its methods are safe for concurrent use.
type Cluster struct {
	opts   Options
	path   dcs.Path
	dir    string
	ownDir bool
	etcd   *etcdtest.Etcd // nil when Options.Etcd was given
	addr   string         // etcd client host:port
	admin  *clientv3.Client
	store  *etcddcs.Store
	log    hclog.Logger
	nodes  []*Node
	start  time.Time

	closeOnce sync.Once
	closeErr  error
}

var scopeSeq atomic.Int64

// New starts etcd (unless Options.Etcd is set) and every node, and returns
// without waiting for the cluster to bootstrap (see WaitStable). On error
// everything started is torn down.
func New(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Dynamic == nil {
		opts.Dynamic = DefaultDynamic()
	}
	if opts.Namespace == "" {
		opts.Namespace = "pgha-cluster"
	}
	if opts.Scope == "" {
		opts.Scope = fmt.Sprintf("c%d-%d", os.Getpid(), scopeSeq.Add(1))
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Mode == Processes && opts.NodeProc == "" {
		return nil, errors.New("cluster: Options.NodeProc is required with Processes (see BuildNodeProc)")
	}
	if opts.Watchdog != nil && opts.Mode != Processes {
		return nil, errors.New("cluster: Options.Watchdog needs Processes (the emulated reset kills the node process)")
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = pg.FindBinDir(ctx); err != nil {
			return nil, err
		}
	}
	c = &Cluster{opts: opts, path: dcs.Path{Namespace: opts.Namespace, Scope: opts.Scope},
		log: opts.Logger.Named("cluster"), start: time.Now()}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if opts.Dir == "" {
		if c.dir, err = os.MkdirTemp("", "pghac"); err != nil {
			return nil, err
		}
		c.ownDir = true
	} else {
		c.dir = opts.Dir
	}
	if os.Geteuid() == 0 {
		// The postgres OS user must reach the data directories inside.
		if err := os.Chmod(c.dir, 0o711); err != nil {
			return nil, err
		}
	}
	if opts.Etcd == "" {
		if c.etcd, err = etcdtest.Start("pgha-cluster"); err != nil {
			return nil, fmt.Errorf("cluster: embedded etcd: %w", err)
		}
		c.addr = c.etcd.Addr
	} else {
		c.addr = opts.Etcd
		if len(opts.EtcdEndpoints) > 0 {
			c.addr = opts.EtcdEndpoints[0]
		}
	}
	c.admin, err = clientv3.New(c.adminConfig())
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd client: %w", err)
	}
	c.store, err = etcddcs.New(ctx, etcddcs.Config{Client: c.admin, Path: c.path, RetryTimeout: 5 * time.Second,
		Logger: c.log.Named("dcs")})
	if err != nil {
		return nil, err
	}
	bootstrap := map[string]bool{}
	for _, b := range opts.Bootstrap {
		bootstrap[b] = true
	}
	for i := range opts.Nodes {
		name := fmt.Sprintf("node%d", i+1)
		n, err := c.newNode(name, opts.Bootstrap == nil || bootstrap[name])
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.Start(ctx); err != nil {
			return nil, err
		}
	}
	c.log.Info("cluster started", "scope", opts.Scope, "mode", opts.Mode.String(), "nodes", opts.Nodes, "dir", c.dir)
	return c, nil
}

func (c *Cluster) newNode(name string, bootstrap bool) (*Node, error) {
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	pgPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	apiPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if c.opts.NodeTmpfsSize > 0 {
		if dataDir, err = c.mountNodeDisk(dir); err != nil {
			return nil, err
		}
	}
	proxies, err := c.newProxies()
	if err != nil {
		return nil, err
	}
	proxy := proxies[0]
	spec := noderun.Spec{
		Name: name, Scope: c.path.Scope, Namespace: c.path.Namespace,
		Endpoints: proxyURLs(proxies),
		BinDir:    c.opts.BinDir, DataDir: dataDir, SocketDir: filepath.Join(dir, "run"),
		Port:        pgPort,
		Superuser:   pg.Credentials{Username: "postgres", Password: SuperuserPassword},
		Replication: pg.Credentials{Username: "replicator", Password: ReplicationPassword},
		Rewind:      pg.Credentials{Username: RewindUser, Password: RewindPassword},
		APIAddr:     fmt.Sprintf("127.0.0.1:%d", apiPort),
		Bootstrap:   bootstrap,
		Dynamic:     c.opts.Dynamic,
		Tags:        c.opts.Tags[name],
		Debug:       c.opts.Debug,
		Trace:       c.opts.Trace,
	}
	if c.opts.Mode == Processes {
		spec.FreezeArmFile = filepath.Join(dir, "freeze-arm")
	}
	n := &Node{c: c, Name: name, spec: spec, dir: dir, proxy: proxy, more: proxies[1:], log: c.opts.Logger.Named(name)}
	if c.opts.PostgresIngress {
		if err := n.newIngress(); err != nil {
			return nil, err
		}
	}
	if err := n.newFencer(c.opts.Watchdog); err != nil {
		return nil, err
	}
	return n, nil
}

// Close stops every node and its Postgres (SIGKILL by pid for process
// nodes; a normal Run shutdown, then SIGKILL of anything left, for
// in-process ones), closes the proxies and clients, stops the embedded
// etcd and removes the directories it created. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, n := range c.nodes {
			n.resumeProxies() // a node cut from etcd would wait out its timeouts
			wg.Go(func() {
				if err := n.teardown(); err != nil {
					mu.Lock()
					c.closeErr = errors.Join(c.closeErr, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, n := range c.nodes {
			n.closeProxies()
		}
		if c.store != nil {
			_ = c.store.Close()
		}
		if c.admin != nil {
			_ = c.admin.Close()
		}
		if c.etcd != nil {
			c.etcd.Stop()
		}
		if err := c.unmountNodeDisks(); err != nil {
			c.closeErr = errors.Join(c.closeErr, err)
		}
		if c.ownDir {
			if err := os.RemoveAll(c.dir); err != nil {
				c.closeErr = errors.Join(c.closeErr, err)
			}
		}
	})
	return c.closeErr
}

// Nodes returns the nodes in name order.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Node returns the node with the given name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Path returns the cluster's place in the DCS.
func (c *Cluster) Path() dcs.Path { return c.path }

// Store returns a read-only DCS client on the cluster's keys (no member
// name), connected to etcd directly rather than through a proxy. Use it as
// an operator tool would: SetFailover, SetConfig, Cluster.
func (c *Cluster) Store() dcs.Store { return c.store }

// Etcd returns a client connected to etcd directly, for watches and raw
// reads.
func (c *Cluster) Etcd() *clientv3.Client { return c.admin }

// EtcdAddr returns etcd's client host:port.
func (c *Cluster) EtcdAddr() string { return c.addr }

// Dir returns the directory holding the nodes' directories.
func (c *Cluster) Dir() string { return c.dir }

// Since returns the time elapsed since the cluster was created; the
// checker stamps its observations with it.
func (c *Cluster) Since() time.Duration { return time.Since(c.start) }

// Leader reads the leader key from etcd (a linearizable read) and returns
// its value, "" when there is none.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	name, _, err := c.leaderKey(ctx)
	return name, err
}

// leaderKey returns the leader's name and the key's create revision.
func (c *Cluster) leaderKey(ctx context.Context) (string, int64, error) {
	resp, err := c.admin.Get(ctx, c.path.Key(dcs.KeyLeader))
	if err != nil {
		return "", 0, err
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].CreateRevision, nil
}

// LeaderRevision returns the leader key's value and create revision (0
// when there is no leader): a leader that kept its key through an event
// keeps the same revision.
func (c *Cluster) LeaderRevision(ctx context.Context) (string, int64, error) {
	return c.leaderKey(ctx)
}

// SetConfig merges values into /config, as patronictl edit-config does
// (a CAS on the revision it read). The nodes read it on their next cycle;
// the DCS watch wakes them at once.
func (c *Cluster) SetConfig(ctx context.Context, values map[string]any) error {
	cl, err := c.store.Cluster(ctx)
	if err != nil {
		return err
	}
	data := map[string]any{}
	cond := dcs.IfAbsent()
	if cl.Config != nil {
		for k, v := range cl.Config.Data {
			data[k] = v
		}
		cond = dcs.IfRevision(cl.Config.ModRevision)
	}
	for k, v := range values {
		data[k] = v
	}
	_, err = c.store.SetConfig(ctx, data, cond)
	return err
}

// RequestFailover writes /failover as patronictl does: leader "" and a
// candidate is a failover (allowed without a leader), a leader with a
// candidate ("" for any healthy member) is a switchover. No validation is
// done here; the nodes judge the request.
func (c *Cluster) RequestFailover(ctx context.Context, leader, candidate string) error {
	_, err := c.store.SetFailover(ctx, dcs.Failover{Leader: leader, Candidate: candidate}, dcs.Unconditional)
	return err
}

// running returns the nodes the harness has started and not stopped or
// killed.
func (c *Cluster) running() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

func sortedNames(ns []*Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	sort.Strings(out)
	return out
}

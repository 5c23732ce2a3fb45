package ctl

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/examples/pgha/internal/config"
)

// Exit codes of the CLI. Scripts can rely on them.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailed: the operation failed or was refused (by the cluster, by
	// a validation, or because the confirmation was declined).
	ExitFailed = 1
	// ExitUsage: the command line or the configuration is wrong.
	ExitUsage = 2
	// ExitDCS: the DCS could not be reached, or the cluster is not in it.
	ExitDCS = 3
)

// IO are the streams and environment a command uses.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// exitError carries an exit code and a message for the user.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(format string, args ...any) error {
	return &exitError{code: ExitFailed, msg: fmt.Sprintf(format, args...)}
}

func usage(format string, args ...any) error {
	return &exitError{code: ExitUsage, msg: fmt.Sprintf(format, args...)}
}

func dcsErr(format string, args ...any) error {
	return &exitError{code: ExitDCS, msg: fmt.Sprintf(format, args...)}
}

// command is one subcommand.
type command struct {
	name, args, help string
	flags            func(fs *flag.FlagSet, o *opts)
	run              func(c *cli, o *opts, pos []string) error
}

// opts holds every flag of every command; each command registers the ones
// it has.
type opts struct {
	configFile, dcsURL string
	insecure           bool

	extended, timestamp, watchDefault bool
	format                            string
	watch                             float64

	leader, candidate, scheduled string
	force, wait, fromLeader      bool
	role                         string
	anyMember, pending           bool
	pgVersion, timeout           string

	set, pg        multiFlag
	apply, replace string
	quiet          bool
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func commands() []*command {
	return []*command{
		{name: "list", args: "[CLUSTER...]", help: "List the members of a cluster (patronictl list)", flags: listFlags, run: cmdList},
		{name: "topology", args: "[CLUSTER...]", help: "List the members as a replication tree", flags: listFlags, run: cmdTopology},
		{name: "switchover", args: "[CLUSTER]", help: "Hand the leader role to a replica, now or at a set time", flags: switchoverFlags, run: cmdSwitchover},
		{name: "failover", args: "[CLUSTER]", help: "Promote a named replica, whether or not the leader is healthy", flags: failoverFlags, run: cmdFailover},
		{name: "restart", args: "[CLUSTER] [MEMBER...]", help: "Restart Postgres on members", flags: restartFlags, run: cmdRestart},
		{name: "reload", args: "[CLUSTER] [MEMBER...]", help: "Reload the configuration of members (as SIGHUP)", flags: reloadFlags, run: cmdReload},
		{name: "reinit", args: "[CLUSTER] MEMBER...", help: "Wipe replicas and clone them again from the leader", flags: reinitFlags, run: cmdReinit},
		{name: "pause", args: "[CLUSTER]", help: "Turn automatic failover off (maintenance mode)", flags: pauseFlags, run: cmdPause},
		{name: "resume", args: "[CLUSTER]", help: "Turn automatic failover back on", flags: pauseFlags, run: cmdResume},
		{name: "history", args: "[CLUSTER]", help: "Show the timeline history (failovers and switchovers)", flags: formatFlag, run: cmdHistory},
		{name: "show-config", args: "[CLUSTER]", help: "Show the dynamic configuration", run: cmdShowConfig},
		{name: "edit-config", args: "[CLUSTER]", help: "Change the dynamic configuration (compare-and-swap)", flags: editFlags, run: cmdEditConfig},
		{name: "remove", args: "CLUSTER", help: "Delete a cluster's keys from the DCS", flags: formatFlag, run: cmdRemove},
		{name: "version", args: "[CLUSTER [MEMBER...]]", help: "Show pgha's version and the members'", run: cmdVersion},
	}
}

// IsCommand reports whether name is a CLI subcommand.
func IsCommand(name string) bool {
	for _, c := range commands() {
		if c.name == name {
			return true
		}
	}
	return false
}

// Usage writes the list of CLI subcommands.
func Usage(w io.Writer) {
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %-22s %s\n", c.name, c.args, c.help)
	}
}

func globalFlags(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"c", "config-file"} {
		fs.StringVar(&o.configFile, n, "", "configuration file (patroni.yml or patronictl.yaml)")
	}
	for _, n := range []string{"d", "dcs-url", "dcs"} {
		fs.StringVar(&o.dcsURL, n, "", "DCS URL: etcd3://host:port[,host:port]/namespace")
	}
	for _, n := range []string{"k", "insecure"} {
		fs.BoolVar(&o.insecure, n, false, "do not verify the REST API's TLS certificates")
	}
}

func listFlags(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"e", "extended"} {
		fs.BoolVar(&o.extended, n, false, "show pending restart, scheduled restart and tags columns")
	}
	for _, n := range []string{"t", "timestamp"} {
		fs.BoolVar(&o.timestamp, n, false, "print a timestamp first")
	}
	formatFlag(fs, o)
	fs.BoolVar(&o.watchDefault, "W", false, "refresh every 2 seconds")
	for _, n := range []string{"w", "watch"} {
		fs.Float64Var(&o.watch, n, 0, "refresh every N seconds")
	}
}

func formatFlag(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"f", "format"} {
		fs.StringVar(&o.format, n, "pretty", "output format: pretty, tsv, json or yaml")
	}
}

func leaderFlag(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"leader", "primary", "master"} {
		fs.StringVar(&o.leader, n, "", "the current leader")
	}
}

func switchoverFlags(fs *flag.FlagSet, o *opts) {
	leaderFlag(fs, o)
	fs.StringVar(&o.candidate, "candidate", "", "the member to promote (default: the healthiest)")
	fs.StringVar(&o.scheduled, "scheduled", "", "when: an ISO 8601 time, or now")
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation")
}

func failoverFlags(fs *flag.FlagSet, o *opts) {
	leaderFlag(fs, o)
	fs.StringVar(&o.candidate, "candidate", "", "the member to promote (required)")
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation")
}

func roleFlag(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"r", "role"} {
		fs.StringVar(&o.role, n, "any", "only members with this role: leader, primary, replica, any")
	}
}

func restartFlags(fs *flag.FlagSet, o *opts) {
	roleFlag(fs, o)
	fs.BoolVar(&o.anyMember, "any", false, "restart one member only, chosen at random")
	fs.StringVar(&o.scheduled, "scheduled", "", "when: an ISO 8601 time, or now")
	fs.StringVar(&o.pgVersion, "pg-version", "", "restart only if the PostgreSQL version is lower than this")
	fs.BoolVar(&o.pending, "pending", false, "restart only members with a pending restart")
	fs.StringVar(&o.timeout, "timeout", "", "fail the restart after this many seconds")
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation")
}

func reloadFlags(fs *flag.FlagSet, o *opts) {
	roleFlag(fs, o)
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation")
}

func reinitFlags(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation; cancel an action in progress")
	fs.BoolVar(&o.wait, "wait", false, "wait until the members are replicas again")
	fs.BoolVar(&o.fromLeader, "from-leader", false, "clone from the leader only")
}

func pauseFlags(fs *flag.FlagSet, o *opts) {
	fs.BoolVar(&o.wait, "wait", false, "wait until every member has seen the change")
}

func editFlags(fs *flag.FlagSet, o *opts) {
	for _, n := range []string{"s", "set"} {
		fs.Var(&o.set, n, "set key.path=value (YAML value; null removes the key); repeatable")
	}
	for _, n := range []string{"p", "pg"} {
		fs.Var(&o.pg, n, "set a PostgreSQL parameter: name=value; repeatable")
	}
	fs.StringVar(&o.apply, "apply", "", "merge the YAML in this file (- for standard input)")
	fs.StringVar(&o.replace, "replace", "", "replace the configuration with this YAML file (- for standard input)")
	for _, n := range []string{"q", "quiet"} {
		fs.BoolVar(&o.quiet, n, false, "do not show the changes")
	}
	fs.BoolVar(&o.force, "force", false, "do not ask for confirmation")
}

// parseArgs parses flags wherever they are among the arguments (as click
// does), and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, fmt.Errorf("unknown option %s", a)
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			if !hasVal {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option %s needs a value", a)
			}
			i++
			val = args[i]
		}
		if err := fs.Set(name, val); err != nil {
			return nil, fmt.Errorf("option %s: %v", a, err)
		}
	}
	return pos, nil
}

// Run runs the CLI subcommand name with its arguments (global options may
// be among them) and returns the exit code.
func Run(ctx context.Context, name string, args []string, io IO) int {
	if io.Getenv == nil {
		io.Getenv = os.Getenv
	}
	if io.Now == nil {
		io.Now = time.Now
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(io.Stderr, "Error: unknown command %q\n", name)
		return ExitUsage
	}
	o := &opts{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	globalFlags(fs, o)
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	var help bool
	fs.BoolVar(&help, "help", false, "show this help")
	fs.BoolVar(&help, "h", false, "show this help")
	pos, err := parseArgs(fs, args)
	if err != nil || help {
		if err != nil {
			fmt.Fprintf(io.Stderr, "Error: %v\n", err)
		}
		fmt.Fprintf(io.Stderr, "Usage: pgha [-c CONFIG] [--dcs-url URL] %s %s\n  %s\n\nOptions:\n", name, cmd.args, cmd.help)
		fs.PrintDefaults()
		if help {
			return ExitOK
		}
		return ExitUsage
	}
	c := &cli{ctx: ctx, io: io, in: bufio.NewReader(orEmpty(io.Stdin)), stores: map[string]*etcddcs.Store{}}
	defer c.close()
	err = c.setup(o)
	if err == nil {
		err = cmd.run(c, o, pos)
	}
	if err == nil {
		return ExitOK
	}
	return c.report(err)
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return strings.NewReader("")
	}
	return r
}

func (c *cli) report(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintf(c.io.Stderr, "Error: %s\n", ee.msg)
		return ee.code
	}
	fmt.Fprintf(c.io.Stderr, "Error: %v\n", err)
	return ExitFailed
}

// cli is the state of one command run.
type cli struct {
	ctx       context.Context
	io        IO
	in        *bufio.Reader
	cfg       *config.Config
	endpoints []string
	etcd      config.Etcd
	namespace string
	scope     string // from the configuration
	stores    map[string]*etcddcs.Store
	http      *http.Client
	user      string
	pass      string
}

func (c *cli) close() {
	for _, s := range c.stores {
		_ = s.Close()
	}
}

func (c *cli) out(format string, args ...any) { fmt.Fprintf(c.io.Stdout, format+"\n", args...) }

// setup reads the configuration and the DCS URL.
func (c *cli) setup(o *opts) error {
	path := o.configFile
	if path == "" {
		for _, k := range []string{"PGHA_CONFIG_FILE", "PATRONICTL_CONFIG_FILE"} {
			if v := c.io.Getenv(k); v != "" {
				path = v
				break
			}
		}
	}
	if path == "" {
		if home, err := os.UserConfigDir(); err == nil {
			def := filepath.Join(home, "patroni", "patronictl.yaml")
			if _, err := os.Stat(def); err == nil {
				path = def
			}
		}
	}
	if path != "" {
		cfg, err := config.LoadWith(config.Options{Path: path, Env: environ(c.io.Getenv)})
		var inv *config.InvalidError
		if err != nil && !errors.As(err, &inv) {
			return usage("%v", err)
		}
		// The CLI needs only the DCS, the scope and the credentials; the
		// daemon's other requirements do not stop it.
		c.cfg = cfg
		c.etcd = cfg.Etcd
		c.endpoints = cfg.Etcd.Endpoints
		c.namespace = cfg.Namespace
		c.scope = cfg.Scope
		c.user, c.pass = cfg.Ctl.Username, cfg.Ctl.Password
		if c.user == "" {
			c.user, c.pass = cfg.RestAPI.Username, cfg.RestAPI.Password
		}
	}
	url := o.dcsURL
	if url == "" {
		url = c.io.Getenv("DCS_URL")
	}
	if url != "" {
		eps, ns, err := ParseDCSURL(url)
		if err != nil {
			return usage("%v", err)
		}
		c.endpoints = eps
		if ns != "" || c.namespace == "" {
			c.namespace = ns
		}
	}
	if c.namespace == "" {
		c.namespace = "/" + dcs.DefaultNamespace
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // -k asks for it
	if c.cfg != nil {
		ctl := c.cfg.Ctl
		if ctl.Insecure {
			tc.InsecureSkipVerify = true
		}
		ca := ctl.CACert
		if ca == "" {
			ca = c.cfg.RestAPI.CAFile
		}
		if ca != "" {
			b, err := os.ReadFile(ca)
			if err != nil {
				return usage("ctl.cacert: %v", err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(b)
			tc.RootCAs = pool
		}
		if ctl.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(ctl.CertFile, orDefault(ctl.KeyFile, ctl.CertFile))
			if err != nil {
				return usage("ctl.certfile: %v", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	c.http = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func environ(getenv func(string) string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if v := getenv(k); v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// ParseDCSURL parses patronictl's --dcs-url for etcd:
// etcd3://host:port[,host:port...]/namespace (scheme etcd or etcd3; http
// and https name the transport). It returns client URLs and the namespace
// ("" when the URL has none).
func ParseDCSURL(s string) (endpoints []string, namespace string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "etcd3", s
	}
	proto := "http"
	switch scheme {
	case "etcd", "etcd3", "http":
	case "etcd3s", "https":
		proto = "https"
	default:
		return nil, "", fmt.Errorf("--dcs-url: scheme %q is not supported: pgha talks to etcd (etcd3://host:port/namespace)", scheme)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !strings.Contains(h, ":") {
			h += ":2379"
		}
		endpoints = append(endpoints, proto+"://"+h)
	}
	if len(endpoints) == 0 {
		return nil, "", fmt.Errorf("--dcs-url %q names no host", s)
	}
	if path = strings.Trim(path, "/"); path != "" {
		namespace = "/" + path
	}
	return endpoints, namespace, nil
}

var errNoDCS = usage("no DCS: give -c CONFIG (a patroni.yml with an etcd3 section) or --dcs-url etcd3://host:port/namespace")

// store returns a read-only DCS client for the cluster.
func (c *cli) store(scope string) (*etcddcs.Store, error) {
	if s, ok := c.stores[scope]; ok {
		return s, nil
	}
	if len(c.endpoints) == 0 {
		return nil, errNoDCS
	}
	s, err := etcddcs.New(c.ctx, etcddcs.Config{
		Endpoints: c.endpoints, CAFile: c.etcd.CACert, CertFile: c.etcd.Cert, KeyFile: c.etcd.Key,
		Username: c.etcd.Username, Password: c.etcd.Password,
		Path: dcs.Path{Namespace: c.namespace, Scope: scope}, RetryTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, dcsErr("cannot reach etcd at %s: %v", strings.Join(c.endpoints, ","), err)
	}
	c.stores[scope] = s
	return s, nil
}

// cluster reads the cluster named scope.
func (c *cli) cluster(scope string) (*dcs.Cluster, error) {
	s, err := c.store(scope)
	if err != nil {
		return nil, err
	}
	cl, err := s.Cluster(c.ctx)
	if err != nil {
		return nil, dcsErr("cannot read cluster %q from etcd at %s: %v", scope, strings.Join(c.endpoints, ","), err)
	}
	return cl, nil
}

// existingCluster reads the cluster and fails when it has no keys.
func (c *cli) existingCluster(scope string) (*dcs.Cluster, error) {
	cl, err := c.cluster(scope)
	if err != nil {
		return nil, err
	}
	if cl.Initialize == nil && cl.Leader == nil && len(cl.Members) == 0 && cl.Config == nil {
		return nil, dcsErr("cluster %q does not exist in etcd under %s", scope, c.namespace)
	}
	return cl, nil
}

// scopeOf picks the cluster name and returns the remaining positional
// arguments. Without member arguments (members false) the first argument,
// if any, is the cluster. With members, the first argument is the cluster
// when it is the configured scope, or is not one of its members; without a
// configured scope it is the cluster when etcd has a cluster of that name.
// With no argument naming it: the configured scope, else the only cluster
// under the namespace.
func (c *cli) scopeOf(pos []string, members bool) (string, []string, error) {
	if len(pos) > 0 {
		switch {
		case !members || pos[0] == c.scope:
			return pos[0], pos[1:], nil
		case c.scope != "":
			cl, err := c.cluster(c.scope)
			if err != nil {
				return "", nil, err
			}
			if _, isMember := cl.Member(pos[0]); isMember {
				return c.scope, pos, nil
			}
			return pos[0], pos[1:], nil
		}
		names, err := c.discover()
		if err != nil {
			return "", nil, err
		}
		if slices.Contains(names, pos[0]) {
			return pos[0], pos[1:], nil
		}
		if len(names) == 1 {
			return names[0], pos, nil
		}
		return "", nil, usage("name the cluster first: %q is not a cluster under %s (clusters: %s)",
			pos[0], c.namespace, strings.Join(names, ", "))
	}
	if c.scope != "" {
		return c.scope, nil, nil
	}
	names, err := c.discover()
	if err != nil {
		return "", nil, err
	}
	switch len(names) {
	case 0:
		return "", nil, dcsErr("no cluster in etcd under %s", c.namespace)
	case 1:
		return names[0], nil, nil
	}
	return "", nil, usage("several clusters under %s (%s): name one", c.namespace, strings.Join(names, ", "))
}

// discover lists the clusters under the namespace.
func (c *cli) discover() ([]string, error) {
	if len(c.endpoints) == 0 {
		return nil, errNoDCS
	}
	tc := (*tls.Config)(nil)
	if c.etcd.CACert != "" || c.etcd.Cert != "" {
		info := etcdTLS{ca: c.etcd.CACert, cert: c.etcd.Cert, key: c.etcd.Key}
		var err error
		if tc, err = info.config(); err != nil {
			return nil, usage("etcd TLS: %v", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints, DialTimeout: 5 * time.Second, TLS: tc,
		Username: c.etcd.Username, Password: c.etcd.Password, Logger: zap.NewNop()})
	if err != nil {
		return nil, dcsErr("cannot reach etcd at %s: %v", strings.Join(c.endpoints, ","), err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	prefix := strings.TrimSuffix(c.namespace, "/") + "/"
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, dcsErr("cannot read etcd at %s: %v", strings.Join(c.endpoints, ","), err)
	}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), prefix)
		if scope, _, ok := strings.Cut(rest, "/"); ok && scope != "" {
			seen[scope] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

type etcdTLS struct{ ca, cert, key string }

func (e etcdTLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.ca != "" {
		b, err := os.ReadFile(e.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b)
		tc.RootCAs = pool
	}
	if e.cert != "" {
		cert, err := tls.LoadX509KeyPair(e.cert, e.key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// request calls a member's REST API: the endpoint on the host of its
// api_url. A nil body sends none.
func (c *cli) request(m dcs.Member, method, endpoint string, body any) (int, string, error) {
	base := strings.TrimSuffix(m.Data.APIURL, "/patroni")
	if base == "" {
		return 0, "", fmt.Errorf("member %s publishes no api_url", m.Name)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(c.ctx, method, base+"/"+endpoint, rd)
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// prompt asks a question and returns the answer, or def for an empty one
// (or at the end of the input).
func (c *cli) prompt(question, def string) string {
	if def != "" {
		fmt.Fprintf(c.io.Stdout, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(c.io.Stdout, "%s []: ", question)
	}
	line, err := c.in.ReadString('\n')
	line = strings.TrimSpace(line)
	if err != nil && line == "" {
		fmt.Fprintln(c.io.Stdout)
		return def
	}
	if line == "" {
		return def
	}
	return line
}

// promptRequired asks without a default (remove's typed confirmations).
func (c *cli) promptRequired(question string) string {
	fmt.Fprintf(c.io.Stdout, "%s: ", question)
	line, err := c.in.ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(c.io.Stdout)
	}
	return strings.TrimSpace(line)
}

// confirm asks a yes/no question; the default is no.
func (c *cli) confirm(question string) bool {
	fmt.Fprintf(c.io.Stdout, "%s [y/N]: ", question)
	line, err := c.in.ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(c.io.Stdout)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// timestamp is patronictl's timestamp(): local time with hundredths.
func (c *cli) timestamp() string {
	return c.io.Now().Format("2006-01-02 15:04:05.00")
}

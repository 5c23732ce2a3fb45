package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/pg"
)

// otherDCS are Patroni's DCS sections pgha does not implement.
var otherDCS = []string{"consul", "zookeeper", "exhibitor", "kubernetes", "raft"}

// decode turns the raw configuration into a Config, collecting problems.
func decode(raw map[string]any, src *sources) *Config {
	d := &decoder{src: src}
	root := d.root(raw)
	c := &Config{}

	c.Scope = root.str("scope")
	if c.Scope == "" {
		d.fail("scope", "required: the cluster name")
	}
	c.Name = root.str("name")
	switch {
	case c.Name == "":
		d.fail("name", "required: this member's name, unique in the cluster")
	case strings.Contains(c.Name, "/"):
		d.fail("name", "must not contain '/' (it is part of the member's DCS key)")
	}
	c.Namespace = root.str("namespace")
	if c.Namespace == "" {
		c.Namespace = "/" + dcs.DefaultNamespace
	}

	c.Log = decodeLog(root.sub("log"))
	c.RestAPI = decodeRestAPI(root.sub("restapi"))
	c.Ctl = decodeCtl(root.sub("ctl"))
	c.Etcd = decodeDCS(root)
	c.Postgres = decodePostgres(root.sub("postgresql"))
	if root.has("bootstrap") {
		c.Bootstrap = decodeBootstrap(root.sub("bootstrap"))
	}
	c.Tags = decodeTags(root.sub("tags"))
	c.Watchdog = decodeWatchdog(root.sub("watchdog"))

	if root.has("citus") {
		root.get("citus")
		d.fail("citus", "Citus clusters are not implemented in pgha")
	}
	root.ignored("thread_pool_size", "pgha is not a Python process; it has no thread pool to size")
	root.ignored("thread_stack_size", "pgha is not a Python process")
	root.done()

	sort.SliceStable(d.problems, func(i, j int) bool { return lessSource(d.problems[i].Source, d.problems[j].Source) })
	c.Problems = d.problems
	return c
}

// lessSource orders problems by file line, environment last, missing keys
// first.
func lessSource(a, b string) bool {
	la, lb := lineOf(a), lineOf(b)
	return la < lb
}

func lineOf(src string) int {
	switch {
	case src == "":
		return -1
	case strings.HasPrefix(src, "environment"):
		return 1 << 30
	}
	if i := strings.LastIndexByte(src, ':'); i >= 0 {
		if n, err := strconv.Atoi(src[i+1:]); err == nil {
			return n
		}
	}
	return 0
}

func decodeLog(s *section) Log {
	l := Log{Level: "INFO"}
	if v := s.str("level"); v != "" {
		switch strings.ToUpper(v) {
		case "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "TRACE":
			l.Level = strings.ToUpper(v)
		default:
			s.d.fail(s.key("level"), "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not %q", v)
		}
	}
	switch t := s.str("type"); t {
	case "", "plain":
	case "json":
		l.JSON = true
	default:
		s.d.fail(s.key("type"), "must be plain or json, not %q", t)
	}
	s.notImplemented("format", "pgha's log lines have their own format")
	s.notImplemented("dateformat", "pgha's log lines have their own format")
	s.notImplemented("static_fields", "")
	s.notImplemented("traceback_level", "")
	s.notImplemented("dir", "pgha logs to standard error; redirect it or use journald")
	s.notImplemented("mode", "")
	s.notImplemented("file_num", "no log rotation: pgha logs to standard error")
	s.notImplemented("file_size", "no log rotation: pgha logs to standard error")
	s.notImplemented("loggers", "")
	s.notImplemented("deduplicate_heartbeat_logs", "")
	s.ignored("max_queue_size", "pgha writes log lines synchronously, there is no queue")
	s.done()
	return l
}

func decodeRestAPI(s *section) RestAPI {
	r := RestAPI{}
	if !s.present() {
		s.d.fail("restapi", "required: the REST API's listen and connect_address")
	}
	r.Listen = s.str("listen")
	r.ConnectAddress = s.str("connect_address")
	if r.Listen == "" && s.present() {
		s.d.fail(s.key("listen"), "required: host:port the REST API listens on")
	} else if r.Listen != "" {
		checkHostPort(s.d, s.key("listen"), r.Listen, true)
	}
	if r.ConnectAddress == "" && s.present() {
		s.d.fail(s.key("connect_address"), "required: host:port other members and HAProxy reach this REST API at")
	} else if r.ConnectAddress != "" {
		checkHostPort(s.d, s.key("connect_address"), r.ConnectAddress, false)
	}
	auth := s.sub("authentication")
	r.Username, r.Password = auth.str("username"), auth.str("password")
	auth.done()
	// The users' guide puts them directly under restapi; Patroni ignores
	// them there. pgha reads them as Basic auth and says so.
	for _, k := range []string{"username", "password"} {
		if v := s.str(k); v != "" {
			s.d.warn(s.key(k), "Patroni reads this from restapi.authentication.%s; pgha uses it for Basic auth on the unsafe endpoints", k)
			if k == "username" && r.Username == "" {
				r.Username = v
			}
			if k == "password" && r.Password == "" {
				r.Password = v
			}
		}
	}
	if (r.Username == "") != (r.Password == "") {
		s.d.fail(s.key("authentication"), "set both username and password, or neither")
	}
	r.CertFile, r.KeyFile = s.str("certfile"), s.str("keyfile")
	r.KeyFilePassword = s.str("keyfile_password")
	r.CAFile = s.str("cafile")
	if r.KeyFile != "" && r.CertFile == "" {
		s.d.fail(s.key("keyfile"), "set certfile too")
	}
	r.VerifyClient = s.str("verify_client")
	switch r.VerifyClient {
	case "", "none":
		r.VerifyClient = "none"
	case "optional", "required":
		if r.CertFile == "" {
			s.d.fail(s.key("verify_client"), "%s needs TLS: set restapi.certfile and restapi.keyfile", r.VerifyClient)
		}
		if r.CAFile == "" {
			s.d.fail(s.key("verify_client"), "%s needs restapi.cafile (the CA that signs client certificates)", r.VerifyClient)
		}
	default:
		s.d.fail(s.key("verify_client"), "must be none, optional or required, not %q", r.VerifyClient)
	}
	r.Allowlist = s.strList("allowlist")
	for i, a := range r.Allowlist {
		if _, _, err := net.ParseCIDR(a); err != nil && net.ParseIP(a) == nil && !validHostname(a) {
			s.d.fail(fmt.Sprintf("%s[%d]", s.key("allowlist"), i), "not an address, network or host name: %q", a)
		}
	}
	if b, ok := s.boolean("allowlist_include_members"); ok {
		r.AllowlistIncludeMembers = b
	}
	r.HTTPExtraHeaders = s.strMap("http_extra_headers")
	r.HTTPSExtraHeaders = s.strMap("https_extra_headers")
	s.notImplemented("ciphers", "Go's TLS defaults are used")
	switch v := s.str("server_tokens"); v {
	case "", "original", "productonly", "minimal":
	default:
		s.d.fail(s.key("server_tokens"), "must be original, productonly or minimal, not %q", v)
	}
	s.ignored("request_queue_size", "Go's HTTP server has no accept queue setting; it serves requests concurrently")
	s.ignored("thread_pool_size", "Go's HTTP server serves every request in its own goroutine")
	s.done()
	return r
}

func decodeCtl(s *section) Ctl {
	c := Ctl{}
	if b, ok := s.boolean("insecure"); ok {
		c.Insecure = b
	}
	c.CACert, c.CertFile, c.KeyFile = s.str("cacert"), s.str("certfile"), s.str("keyfile")
	c.KeyFilePassword = s.str("keyfile_password")
	auth := s.sub("authentication")
	c.Username, c.Password = auth.str("username"), auth.str("password")
	auth.done()
	s.done()
	return c
}

// decodeDCS reads the one DCS section: etcd3, or etcd (served over the v3
// API).
func decodeDCS(root *section) Etcd {
	d := root.d
	var found []string
	for _, k := range []string{"etcd3", "etcd"} {
		if root.has(k) {
			found = append(found, k)
		}
	}
	for _, k := range otherDCS {
		if root.has(k) {
			root.get(k)
			d.fail(k, "pgha supports etcd only (an etcd3: or etcd: section); %s is not implemented", k)
		}
	}
	if len(found) == 0 {
		if !anyPresent(root, otherDCS) {
			d.fail("etcd3", "required: the etcd3 section (hosts) that locates the DCS")
		}
		return Etcd{}
	}
	name := found[0]
	if len(found) == 2 {
		// Environment overrides may add one; prefer the one from the
		// environment, else refuse to guess.
		envA := strings.HasPrefix(d.src.of("etcd3"), "environment") || strings.HasPrefix(d.src.of("etcd3.hosts"), "environment")
		envB := strings.HasPrefix(d.src.of("etcd"), "environment") || strings.HasPrefix(d.src.of("etcd.hosts"), "environment")
		switch {
		case envB && !envA:
			name = "etcd"
		case envA && !envB:
		default:
			d.fail("etcd", "both etcd: and etcd3: are set; keep one")
		}
		other := "etcd"
		if name == "etcd" {
			other = "etcd3"
		}
		root.get(other)
	}
	s := root.sub(name)
	e := Etcd{Section: name}
	if name == "etcd" {
		d.warn("etcd", "Patroni uses etcd's v2 API for an etcd: section; pgha talks to the same hosts over the v3 API "+
			"(keys under %s), so a Patroni cluster on the v2 keyspace is not visible to it", "/<namespace>/<scope>/")
	}
	protocol := s.str("protocol")
	switch protocol {
	case "":
		protocol = "http"
	case "http", "https":
	default:
		d.fail(s.key("protocol"), "must be http or https, not %q", protocol)
	}
	e.CACert, e.Cert, e.Key = s.str("cacert"), s.str("cert"), s.str("key")
	if protocol == "http" && (e.CACert != "" || e.Cert != "") && !s.has("protocol") {
		protocol = "https"
	}
	port := 2379
	if p, ok := s.integer("port"); ok {
		port = p
	}
	var hosts []string
	if h := s.str("host"); h != "" {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, s.strList("hosts")...)
	for _, h := range hosts {
		if !strings.Contains(h, ":") || strings.HasSuffix(h, "]") {
			h = net.JoinHostPort(strings.Trim(h, "[]"), strconv.Itoa(port))
		}
		if ep := protocol + "://" + h; !slices.Contains(e.Endpoints, ep) {
			e.Endpoints = append(e.Endpoints, ep)
		}
	}
	if u := s.str("url"); u != "" {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			d.fail(s.key("url"), "must be an http(s)://host:port URL, not %q", u)
		} else {
			e.Endpoints = append(e.Endpoints, pu.Scheme+"://"+pu.Host)
		}
	}
	for _, k := range []string{"srv", "srv_suffix", "proxy"} {
		if s.has(k) {
			s.get(k)
			d.fail(s.key(k), "endpoint discovery by %s is not implemented in pgha; list the endpoints in hosts", k)
		}
	}
	if len(e.Endpoints) == 0 && !s.has("srv") && !s.has("proxy") {
		d.fail(s.key("hosts"), "required: the etcd endpoints (hosts, host or url)")
	}
	e.Username, e.Password = s.str("username"), s.str("password")
	if (e.Username == "") != (e.Password == "") {
		d.fail(s.key("username"), "set both username and password, or neither")
	}
	if (e.Cert == "") != (e.Key == "") {
		d.fail(s.key("cert"), "set both cert and key, or neither")
	}
	s.ignored("use_proxies", "pgha's etcd client uses exactly the listed endpoints")
	s.notImplemented("verify", "server certificates are always verified against cacert")
	s.notImplemented("token", "")
	s.done()
	return e
}

func anyPresent(s *section, keys []string) bool {
	for _, k := range keys {
		if s.has(k) {
			return true
		}
	}
	return false
}

func decodePostgres(s *section) Postgres {
	d := s.d
	p := Postgres{PgCtlTimeout: pg.DefaultTimeout}
	if !s.present() {
		d.fail("postgresql", "required: listen, connect_address, data_dir and authentication")
	}
	listen := s.str("listen")
	switch {
	case listen == "" && s.present():
		d.fail(s.key("listen"), "required: the address(es) and port Postgres listens on, e.g. 127.0.0.1:5432")
	case listen != "":
		hosts, port, err := splitListen(listen)
		if err != nil {
			d.fail(s.key("listen"), "%v", err)
		}
		p.ListenHosts, p.Port = hosts, port
	}
	p.ConnectAddress = s.str("connect_address")
	switch {
	case p.ConnectAddress == "" && s.present():
		d.fail(s.key("connect_address"), "required: host:port other members and clients reach this Postgres at")
	case p.ConnectAddress != "":
		checkHostPort(d, s.key("connect_address"), p.ConnectAddress, false)
	}
	p.DataDir = s.str("data_dir")
	if p.DataDir == "" && s.present() {
		d.fail(s.key("data_dir"), "required: the data directory")
	} else if p.DataDir != "" && !filepath.IsAbs(p.DataDir) {
		if abs, err := filepath.Abs(p.DataDir); err == nil {
			p.DataDir = abs
		}
	}
	p.BinDir = s.str("bin_dir")
	p.PgPass = s.str("pgpass")
	if p.PgPass != "" && !filepath.IsAbs(p.PgPass) {
		if abs, err := filepath.Abs(p.PgPass); err == nil {
			p.PgPass = abs
		}
	}
	s.notImplemented("config_dir", "pgha keeps postgresql.conf in the data directory")
	s.notImplemented("proxy_address", "no proxy_url is published")
	if bn := s.sub("bin_name"); bn.present() {
		for k, v := range bn.m {
			bn.used[k] = true
			if fmt.Sprint(v) != k {
				d.warn(bn.key(k), "not implemented yet: pgha runs the program under its standard name %q from bin_dir", k)
			}
		}
	}

	decodeAuthentication(s.sub("authentication"), &p)

	p.Parameters = map[string]string{}
	params := s.sub("parameters")
	for k := range params.m {
		v, ok := params.get(k)
		if !ok {
			continue
		}
		switch v.(type) {
		case map[string]any, []any:
			d.fail(params.key(k), "a PostgreSQL parameter must be a single value, not %s", describe(v))
		default:
			p.Parameters[k] = pgValue(v)
		}
	}
	for _, k := range []string{"parameters_primary", "parameters_replica", "parameters_standby_leader"} {
		s.notImplemented(k, "only postgresql.parameters applies, to every role")
	}
	if s.has("pg_hba") {
		p.PgHBA = s.strList("pg_hba")
		if p.PgHBA == nil {
			p.PgHBA = []string{}
		}
	}
	for _, k := range []string{"pg_hba_primary", "pg_hba_replica", "pg_hba_standby_leader", "pg_ident",
		"pg_ident_primary", "pg_ident_replica", "pg_ident_standby_leader"} {
		s.notImplemented(k, "")
	}
	cb := s.sub("callbacks")
	p.Callbacks = ha.Callbacks{
		OnStart: cb.str("on_start"), OnStop: cb.str("on_stop"), OnRestart: cb.str("on_restart"),
		OnReload: cb.str("on_reload"), OnRoleChange: cb.str("on_role_change"),
		PrePromote: s.str("pre_promote"), BeforeStop: s.str("before_stop"),
	}
	cb.done()
	checkCommand(cb, "on_start", p.Callbacks.OnStart)
	checkCommand(cb, "on_stop", p.Callbacks.OnStop)
	checkCommand(cb, "on_restart", p.Callbacks.OnRestart)
	checkCommand(cb, "on_reload", p.Callbacks.OnReload)
	checkCommand(cb, "on_role_change", p.Callbacks.OnRoleChange)
	checkCommand(s, "pre_promote", p.Callbacks.PrePromote)
	checkCommand(s, "before_stop", p.Callbacks.BeforeStop)
	if methods := s.strList("create_replica_methods"); methods != nil {
		if len(methods) != 1 || methods[0] != "basebackup" {
			d.warn(s.key("create_replica_methods"), "not implemented yet: replicas are always created with pg_basebackup (methods %v ignored)", methods)
		}
		for _, m := range methods {
			if m != "basebackup" && s.has(m) {
				s.notImplemented(m, "custom replica creation methods are not run")
			}
		}
	}
	if bb, ok := s.get("basebackup"); ok {
		d.warn(s.key("basebackup"), "not implemented yet: pgha runs pg_basebackup -X stream --checkpoint=fast with no further options; ignored: %s", brief(bb))
	}
	rc := s.sub("recovery_conf")
	for k := range rc.m {
		v, _ := rc.get(k)
		if k == "recovery_target_timeline" && fmt.Sprint(v) == "latest" {
			continue // what pgha always sets
		}
		d.warn(rc.key(k), "not implemented yet: pgha writes its own standby settings (recovery_target_timeline = 'latest'); ignored")
	}
	s.notImplemented("custom_conf", "pgha uses the data directory's postgresql.conf")
	if t, ok := s.integer("pg_ctl_timeout"); ok {
		if t <= 0 {
			d.fail(s.key("pg_ctl_timeout"), "must be a positive number of seconds")
		} else {
			p.PgCtlTimeout = time.Duration(t) * time.Second
		}
	}
	for _, k := range []string{"use_pg_rewind", "use_slots"} {
		if s.has(k) {
			s.get(k)
			d.warn(s.key(k), "not applied from the local file: pgha reads it from the dynamic configuration "+
				"(bootstrap.dcs.postgresql.%s, or edit-config)", k)
		}
	}
	if b, ok := s.boolean("remove_data_directory_on_rewind_failure"); ok {
		p.RemoveDataOnRewindFailure = b
	}
	if b, ok := s.boolean("remove_data_directory_on_diverged_timelines"); ok {
		p.RemoveDataOnDivergedTimelines = b
	}
	s.ignored("use_unix_socket", "pgha always connects to its own Postgres through the unix socket")
	s.ignored("use_unix_socket_repl", "replicas always connect over TCP to connect_address")
	s.notImplemented("rewind", "")
	s.ignored("database", "pgha connects to the postgres database")
	s.done()
	return p
}

func decodeAuthentication(s *section, p *Postgres) {
	d := s.d
	cred := func(role string) (pg.Credentials, bool) {
		if !s.has(role) {
			return pg.Credentials{}, false
		}
		r := s.sub(role)
		c := pg.Credentials{Username: r.str("username"), Password: r.str("password")}
		for _, k := range []string{"sslmode", "sslkey", "sslpassword", "sslcert", "sslrootcert", "sslcrl", "sslcrldir",
			"gssencmode", "channel_binding", "sslnegotiation"} {
			r.notImplemented(k, "pgha's connections do not use SSL options yet")
		}
		r.done()
		return c, true
	}
	var ok bool
	p.Superuser, ok = cred("superuser")
	// The users' guide writes the superuser's username and password directly
	// under authentication; read them as the superuser and say so.
	for _, k := range []string{"username", "password"} {
		if v := s.str(k); v != "" {
			d.warn(s.key(k), "Patroni expects this under postgresql.authentication.superuser; pgha reads it as the superuser's %s", k)
			if k == "username" && p.Superuser.Username == "" {
				p.Superuser.Username = v
			}
			if k == "password" && p.Superuser.Password == "" {
				p.Superuser.Password = v
			}
			ok = true
		}
	}
	if !ok && s.present() {
		d.warn(s.key("superuser"), "not set: pgha uses the role %q without a password", pg.DefaultSuperuser)
	}
	if p.Replication, ok = cred("replication"); !ok {
		d.fail(s.key("replication"), "required: the username and password replicas connect with")
	} else if p.Replication.Username == "" {
		d.fail(s.key("replication.username"), "required")
	}
	p.Rewind, _ = cred("rewind")
	s.done()
}

func decodeBootstrap(s *section) *Bootstrap {
	d := s.d
	b := &Bootstrap{}
	if dm, ok := s.get("dcs"); ok {
		m, isMap := dm.(map[string]any)
		if !isMap {
			d.fail(s.key("dcs"), "must be a mapping (the initial dynamic configuration)")
		} else {
			b.DCS = m
			checkDynamic(d, s.key("dcs"), m)
		}
	}
	switch method := s.str("method"); method {
	case "", "initdb":
	default:
		d.fail(s.key("method"), "custom bootstrap methods are not implemented; pgha bootstraps with initdb (method %q)", method)
		s.get(method)
	}
	b.Initdb = decodeInitdb(s)
	if s.has("pg_hba") {
		b.PgHBA = s.strList("pg_hba")
	}
	if s.has("users") {
		s.get("users")
		d.warn(s.key("users"), "not supported (Patroni 3 dropped it too): no users are created; create them with SQL after the bootstrap")
	}
	s.notImplemented("post_bootstrap", "the script is NOT run after the bootstrap")
	s.notImplemented("post_init", "the script is NOT run after the bootstrap")
	s.done()
	return b
}

// decodeInitdb reads bootstrap.initdb: a list of "flag" strings and
// {option: value} mappings.
func decodeInitdb(s *section) pg.InitdbOptions {
	d := s.d
	var o pg.InitdbOptions
	v, ok := s.get("initdb")
	if !ok {
		return o
	}
	items, isList := v.([]any)
	if !isList {
		if m, isMap := v.(map[string]any); isMap {
			for k, x := range m {
				items = append(items, map[string]any{k: x})
			}
			sort.Slice(items, func(i, j int) bool { return fmt.Sprint(items[i]) < fmt.Sprint(items[j]) })
		} else {
			d.fail(s.key("initdb"), "must be a list of options (\"data-checksums\", {encoding: UTF8}, ...)")
			return o
		}
	}
	set := func(key, name string, val any, hasVal bool) {
		str := ""
		if hasVal && val != nil {
			str = scalarString(val)
		}
		switch name {
		case "encoding", "E":
			o.Encoding = str
		case "locale":
			o.Locale = str
		case "data-checksums", "k":
			o.DataChecksums = true
		case "auth":
			o.AuthLocal, o.AuthHost = str, str
		case "auth-local":
			o.AuthLocal = str
		case "auth-host":
			o.AuthHost = str
		case "pgdata", "D", "username", "U", "pwfile", "pwprompt", "W", "waldir", "X":
			d.warn(key, "ignored: pgha sets initdb's %s itself", name)
		default:
			if str == "" {
				o.Args = append(o.Args, "--"+name)
			} else {
				o.Args = append(o.Args, "--"+name+"="+str)
			}
		}
	}
	for i, it := range items {
		key := fmt.Sprintf("%s[%d]", s.key("initdb"), i)
		switch t := it.(type) {
		case string:
			set(key, strings.TrimLeft(t, "-"), nil, false)
		case map[string]any:
			for k, x := range t {
				set(key, strings.TrimLeft(k, "-"), x, true)
			}
		default:
			d.fail(key, "must be an option name or a {name: value} mapping, not %s", describe(it))
		}
	}
	return o
}

// checkDynamic warns about dynamic settings pgha does not act on.
func checkDynamic(d *decoder, key string, m map[string]any) {
	dyn := dcs.ParseDynamicConfig(m)
	for _, w := range dyn.Warnings {
		d.warn(key, "%s", w)
	}
	known := map[string]string{
		"ttl": "", "loop_wait": "", "retry_timeout": "", "maximum_lag_on_failover": "", "postgresql": "",
		"check_timeline": "", "primary_start_timeout": "", "primary_stop_timeout": "", "master_start_timeout": "",
		"master_stop_timeout": "", "pause": "", "max_timelines_history": "", "member_slots_ttl": "",
		"priority":         "",
		"synchronous_mode": "", "synchronous_mode_strict": "", "synchronous_node_count": "",
		"maximum_lag_on_syncnode": "", "failsafe_mode": "",
		"standby_cluster":             "standby clusters are not implemented yet",
		"slots":                       "permanent replication slots are not implemented yet",
		"permanent_slots":             "permanent replication slots are not implemented yet",
		"permanent_replication_slots": "permanent replication slots are not implemented yet",
		"ignore_slots":                "replication slots are not managed yet",
		"primary_race_backoff":        "",
	}
	if dyn.SynchronousMode == dcs.SyncQuorum {
		d.warn(join(key, "synchronous_mode"), "quorum mode (ANY n) is not implemented yet: pgha runs it as synchronous_mode on, every picked standby confirming each commit (safe, but commits wait for all of them)")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		why, ok := known[k]
		switch {
		case !ok:
			d.warn(join(key, k), "unknown dynamic setting, stored in /config as it is but not used by pgha")
		case why != "" && isSet(m[k]):
			d.warn(join(key, k), "not implemented yet: %s", why)
		}
	}
	if pgm, ok := m["postgresql"].(map[string]any); ok {
		for k := range pgm {
			switch k {
			case "parameters", "use_pg_rewind", "use_slots", "pg_hba":
			case "recovery_conf", "pg_ident":
				d.warn(join(key, "postgresql."+k), "not implemented yet; ignored")
			default:
				d.warn(join(key, "postgresql."+k), "not used by pgha from the dynamic configuration")
			}
		}
	}
}

func isSet(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != "" && t != "off" && t != "false"
	case map[string]any:
		return len(t) > 0
	case []any:
		return len(t) > 0
	}
	return true
}

func decodeTags(s *section) dcs.Tags {
	d := s.d
	tags := dcs.Tags{}
	for k := range s.m {
		v, ok := s.get(k)
		if !ok {
			continue
		}
		switch k {
		case "nofailover", "clonefrom", "noloadbalance", "nosync", "nostream":
			b, good := parseBool(v)
			if !good {
				d.fail(s.key(k), "must be true or false, not %s", describe(v))
				continue
			}
			if b {
				tags[k] = true
			}
			if k == "nostream" && b {
				d.warn(s.key(k), "not implemented yet: the member still streams from its upstream")
			}
		case "failover_priority", "sync_priority":
			n, good := parseInt(v)
			if !good || n < 0 {
				d.fail(s.key(k), "must be an integer >= 0, not %s", describe(v))
				continue
			}
			tags[k] = n
		case "replicatefrom":
			tags[k] = scalarString(v)
		default:
			tags[k] = v
		}
	}
	if tags.Bool("nofailover") {
		if p, ok := tags.Int("failover_priority"); ok && p > 0 {
			d.fail(s.key("failover_priority"), "contradicts nofailover: true (set one of them)")
		}
	}
	if tags.Bool("nosync") {
		if p, ok := tags.Int("sync_priority"); ok && p > 0 {
			d.fail(s.key("sync_priority"), "contradicts nosync: true (set one of them)")
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

func decodeWatchdog(s *section) Watchdog {
	w := Watchdog{Mode: "off", SafetyMargin: 5}
	if s.has("mode") {
		raw := s.str("mode")
		if m, err := watchdog.ParseMode(raw); err != nil {
			s.d.fail(s.key("mode"), "must be off, automatic or required, not %q", raw)
		} else {
			w.Mode = m.String()
		}
	}
	w.Device = s.str("device")
	if n, ok := s.integer("safety_margin"); ok {
		switch {
		case n < -1:
			s.d.fail(s.key("safety_margin"), "must be -1 (half the TTL) or a number of seconds, not %d", n)
		case n == 0:
			s.d.warn(s.key("safety_margin"), "0 would let the watchdog fire only when the leader key expires; pgha uses the default, 5")
		default:
			w.SafetyMargin = n
		}
	}
	if d := s.str("driver"); d != "" && d != "default" {
		s.d.warn(s.key("driver"), "ignored: pgha drives Linux watchdog devices only (driver %q)", d)
	}
	s.done()
	return w
}

// checkCommand fails a callback command that cannot be split shell-style.
func checkCommand(s *section, k, cmd string) {
	if _, err := ha.SplitCommand(cmd); err != nil {
		s.d.fail(s.key(k), "cannot be split into a command and its arguments: %v", err)
	}
}

// splitListen parses postgresql.listen: "host[,host...]:port".
func splitListen(v string) (hosts string, port int, err error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("must be host:port (with the port), not %q", v)
	}
	hosts, ps := v[:i], v[i+1:]
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number between 1 and 65535", ps)
	}
	var hs []string
	for _, h := range strings.Split(hosts, ",") {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h == "" {
			continue
		}
		if h == "0.0.0.0" || h == "::" {
			h = "*"
		}
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		hs = []string{"*"}
	}
	return strings.Join(hs, ","), port, nil
}

// checkHostPort checks a host:port value; listen addresses may leave the
// host empty.
func checkHostPort(d *decoder, key, v string, listen bool) {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		d.fail(key, "must be host:port, not %q", v)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		d.fail(key, "port %q is not a number between 1 and 65535", port)
	}
	if host == "" && !listen {
		d.fail(key, "needs a host others can reach, not only a port (%q)", v)
	}
	if !listen && (host == "0.0.0.0" || host == "::" || host == "*") {
		d.fail(key, "%q is a wildcard; give an address others can reach", host)
	}
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// pgValue renders a parameter value for postgresql.conf: YAML booleans as
// on/off, numbers as written.
func pgValue(v any) string {
	if b, ok := v.(bool); ok {
		if b {
			return "on"
		}
		return "off"
	}
	return scalarString(v)
}

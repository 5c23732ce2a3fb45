package config

import (
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/pg"
)

// Config is a node's configuration, read from a patroni.yml-shaped file and
// the environment. Load and Parse fill it in; Problems lists every warning
// (and, when Load failed, every error) with its key path.
type Config struct {
	// Source names where the configuration was read from.
	Source string

	Scope     string
	Namespace string // default "/service"
	Name      string

	Log      Log
	RestAPI  RestAPI
	Ctl      Ctl
	Etcd     Etcd
	Postgres Postgres
	// Bootstrap is nil when the file has no bootstrap section: the node then
	// never creates a cluster, it only joins one (as in Patroni).
	Bootstrap *Bootstrap
	// Tags are the effective tags: boolean tags only when true, as Patroni
	// publishes them.
	Tags     dcs.Tags
	Watchdog Watchdog

	// Problems are the warnings (and errors) found, in key order.
	Problems []Problem
}

// Log is the log section.
type Log struct {
	// Level is DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO).
	Level string
	// JSON is log.type: json.
	JSON bool
}

// RestAPI is the restapi section.
type RestAPI struct {
	Listen         string // host:port the REST API listens on
	ConnectAddress string // host:port others reach it at
	// Username and Password protect the unsafe endpoints with Basic auth
	// (restapi.authentication; restapi.username/password are read too).
	Username, Password string
	CertFile, KeyFile  string
	KeyFilePassword    string
	CAFile             string
	// VerifyClient is none, optional or required.
	VerifyClient            string
	Allowlist               []string
	AllowlistIncludeMembers bool
	HTTPExtraHeaders        map[string]string
	HTTPSExtraHeaders       map[string]string
}

// Ctl is the ctl section, used by the CLI.
type Ctl struct {
	Insecure                  bool
	CACert, CertFile, KeyFile string
	KeyFilePassword           string
	Username, Password        string
}

// Etcd is the etcd3 (or etcd) section. pgha always talks to etcd's v3 API.
type Etcd struct {
	// Section is "etcd3" or "etcd", whichever the file has.
	Section string
	// Endpoints are client URLs (http(s)://host:port).
	Endpoints          []string
	Username, Password string
	CACert, Cert, Key  string
}

// Bootstrap is the bootstrap section.
type Bootstrap struct {
	// DCS is the initial dynamic configuration (bootstrap.dcs), with YAML
	// numbers as int64 or float64.
	DCS map[string]any
	// Initdb are the options from bootstrap.initdb.
	Initdb pg.InitdbOptions
	// PgHBA are the bootstrap.pg_hba lines (nil when absent).
	PgHBA []string
}

// Postgres is the postgresql section.
type Postgres struct {
	// ListenHosts is listen_addresses (comma-separated), Port the port, both
	// from postgresql.listen.
	ListenHosts string
	Port        int
	// ConnectAddress is host:port others reach this Postgres at.
	ConnectAddress string
	DataDir        string
	BinDir         string
	PgPass         string
	Superuser      pg.Credentials
	Replication    pg.Credentials
	Rewind         pg.Credentials
	// Parameters are postgresql.parameters as given (values as text), before
	// the dynamic configuration and Patroni's rules are applied; see
	// Config.PGConfig.
	Parameters map[string]string
	// PgHBA is postgresql.pg_hba (nil when absent).
	PgHBA []string
	// Callbacks are postgresql.callbacks (on_start, on_stop, on_restart,
	// on_reload, on_role_change), postgresql.pre_promote and
	// postgresql.before_stop.
	Callbacks ha.Callbacks
	// PgCtlTimeout is pg_ctl_timeout (default 60 s).
	PgCtlTimeout time.Duration
	// RemoveDataOnRewindFailure and RemoveDataOnDivergedTimelines are the
	// remove_data_directory_on_* switches.
	RemoveDataOnRewindFailure     bool
	RemoveDataOnDivergedTimelines bool
}

// Watchdog is the watchdog section.
type Watchdog struct {
	// Mode is off, automatic or required (Patroni's other spellings,
	// such as auto, require or disabled, are read as these). Default off
	// when the section has no mode (Patroni's default is automatic).
	Mode string
	// Device is the watchdog device (default /dev/watchdog).
	Device string
	// SafetyMargin is watchdog.safety_margin in seconds (default 5); -1
	// sets the watchdog's timeout to half the TTL.
	SafetyMargin int
}

// Warnings returns the problems of severity Warning.
func (c *Config) Warnings() []Problem {
	var out []Problem
	for _, p := range c.Problems {
		if p.Severity == Warning {
			out = append(out, p)
		}
	}
	return out
}

// Path is the cluster's place in the DCS.
func (c *Config) Path() dcs.Path { return dcs.Path{Namespace: c.Namespace, Scope: c.Scope} }

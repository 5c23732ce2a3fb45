package pg

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Credentials are a PostgreSQL role name and password.
type Credentials struct {
	// Username is the role name.
	Username string
	// Password may be empty when pg_hba.conf does not ask for one (trust).
	// pgha writes it to Config.PgpassFile for the programs it runs and
	// never puts it on a command line.
	Password string
}

// Config describes one PostgreSQL instance. Zero values mean "use the
// default"; [Config.Validate] reports every problem at once. [New] copies
// the Config, so later changes by the caller have no effect.
type Config struct {
	// Name is the member name (required). It becomes application_name in
	// primary_conninfo, so the upstream's pg_stat_replication shows it, and
	// SlotName(Name) is this member's replication slot on other members.
	Name string

	// ClusterName sets the cluster_name GUC (Patroni's scope). Empty leaves
	// it unset.
	ClusterName string

	// DataDir is the data directory, an absolute path (required). Initdb and
	// Clone create it (and missing parents, mode 0755); it is owned by the OS
	// user with mode 0700.
	DataDir string

	// BinDir holds the PostgreSQL programs. Empty means auto-detect: the
	// PGHA_PG_BIN environment variable, else `pg_config --bindir`, else the
	// newest /usr/lib/postgresql/*/bin. See [FindBinDir].
	BinDir string

	// ListenAddress is listen_addresses: one address or a comma-separated
	// list; "*" for all. Default "127.0.0.1".
	ListenAddress string

	// Port is the TCP port, also the unix socket's number. Default 5432.
	Port int

	// ConnectAddress is the "host:port" other members and clients use to
	// reach this instance (Patroni's postgresql.connect_address). Default:
	// the first ListenAddress with Port; required when ListenAddress is a
	// wildcard.
	ConnectAddress string

	// SocketDir is unix_socket_directories (a single directory). pgha
	// connects through it. Default: a directory pgha-<Port> under
	// os.TempDir(). When pgha creates it, it is owned by the OS user with
	// mode 0700; an existing directory is used as it is if the OS user can
	// write to it. The socket path (SocketDir + "/.s.PGSQL.<port>") must be
	// at most 107 bytes.
	SocketDir string

	// LogFile receives the postmaster's stdout and stderr (everything, unless
	// the parameters turn on logging_collector). Default: DataDir + ".log",
	// beside and not inside the data directory, so that pg_basebackup and
	// pg_rewind neither copy nor overwrite it. pgha appends to it and never
	// rotates it.
	LogFile string

	// PgpassFile is the password file pgha writes for the programs it runs
	// (pg_basebackup, pg_rewind) and for the WAL receiver (passfile= in
	// primary_conninfo). Owned by the OS user, mode 0600. Default:
	// SocketDir/pgpass.<Port>.
	PgpassFile string

	// Superuser is the role pgha connects as for its own queries, and the
	// bootstrap superuser initdb creates. Default username "postgres".
	Superuser Credentials
	// Replication is the role replicas connect to their upstream with
	// (pg_basebackup, primary_conninfo). Default username "replicator".
	Replication Credentials
	// Rewind is the role pg_rewind connects to its source with. Empty
	// Username means Superuser.
	Rewind Credentials

	// Database is the database pgha connects to and names in pg_rewind's
	// source connection. Default "postgres".
	Database string

	// Parameters are PostgreSQL settings (GUCs). The protected ones (SPEC
	// 6.3, see [ResolveParameters]) go on the postmaster command line, after
	// validation; the others go to pgha.conf in the data directory, which
	// pgha includes at the end of postgresql.conf. Can be changed later with
	// [Instance.SetParameters].
	Parameters map[string]string

	// HBA, when not nil, is the complete list of pg_hba.conf lines: pgha
	// writes them to pgha_hba.conf in the data directory and points hba_file
	// at it. When nil, the data directory's own pg_hba.conf is used as it is.
	HBA []string

	// OSUser is the operating-system account every PostgreSQL program runs as
	// when this process runs as root (effective uid 0), which postgres
	// refuses. Default "postgres". When not running as root, programs run as
	// the current user and OSUser must be empty or name the current user.
	OSUser string

	// Timeout bounds each short operation (initdb, start, stop, restart,
	// reload, promote, pg_controldata, queries) unless the context ends
	// first. Default 60s, Patroni's pg_ctl_timeout.
	Timeout time.Duration

	// TransferTimeout bounds operations whose length depends on the data
	// size: clone, rewind and single-user crash recovery. Zero means no bound
	// beyond the context.
	TransferTimeout time.Duration

	// Logger receives pgha's messages about this instance. Nil means no
	// logging.
	Logger hclog.Logger
}

// Defaults.
const (
	DefaultPort            = 5432
	DefaultListenAddress   = "127.0.0.1"
	DefaultSuperuser       = "postgres"
	DefaultReplicationUser = "replicator"
	DefaultOSUser          = "postgres"
	DefaultDatabase        = "postgres"
	DefaultTimeout         = 60 * time.Second
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// holds 108 bytes including the terminating NUL).
const maxSocketPath = 107

// withDefaults returns a copy of c with every zero field that has a default
// filled in.
func (c Config) withDefaults() Config {
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.ConnectAddress == "" {
		if h := firstListenHost(c.ListenAddress); h != "" {
			c.ConnectAddress = net.JoinHostPort(h, strconv.Itoa(c.Port))
		}
	}
	if c.SocketDir == "" {
		c.SocketDir = filepath.Join(os.TempDir(), "pgha-"+strconv.Itoa(c.Port))
	}
	if c.LogFile == "" && c.DataDir != "" {
		c.LogFile = filepath.Clean(c.DataDir) + ".log"
	}
	if c.PgpassFile == "" {
		c.PgpassFile = filepath.Join(c.SocketDir, "pgpass."+strconv.Itoa(c.Port))
	}
	if c.Superuser.Username == "" {
		c.Superuser.Username = DefaultSuperuser
	}
	if c.Replication.Username == "" {
		c.Replication.Username = DefaultReplicationUser
	}
	if c.Rewind.Username == "" {
		c.Rewind = c.Superuser
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	c.Parameters = maps.Clone(c.Parameters)
	c.HBA = slices.Clone(c.HBA)
	if c.DataDir != "" && filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Clean(c.DataDir)
	}
	return c
}

// firstListenHost returns the first entry of a listen_addresses list when it
// is a specific host, or "" for a wildcard.
func firstListenHost(list string) string {
	first, _, _ := strings.Cut(list, ",")
	first = strings.TrimSpace(first)
	switch first {
	case "", "*", "0.0.0.0", "::":
		return ""
	}
	return first
}

// Validate checks the configuration, with defaults applied, and returns
// every problem joined (each a *[ConfigError]), or nil. It does no I/O
// beyond reading the current user id; binaries and the OS user are checked
// by [New].
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(c.Name) == "" {
		bad("Name", "required: the member name (application_name and slot name)")
	}
	if strings.ContainsAny(c.Name, "\x00\n") {
		bad("Name", "must not contain NUL or newline")
	}
	switch {
	case c.DataDir == "":
		bad("DataDir", "required")
	case !filepath.IsAbs(c.DataDir):
		bad("DataDir", "must be an absolute path, got %q", c.DataDir)
	case c.DataDir == "/":
		bad("DataDir", "must not be /")
	}
	if c.BinDir != "" && !filepath.IsAbs(c.BinDir) {
		bad("BinDir", "must be an absolute path, got %q", c.BinDir)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("Port", "must be between 1 and 65535, got %d", c.Port)
	}
	if strings.ContainsAny(c.ListenAddress, "'\"\n\\ ") {
		bad("ListenAddress", "must be a comma-separated list of hosts without spaces or quotes, got %q", c.ListenAddress)
	}
	if c.ConnectAddress == "" {
		bad("ConnectAddress", "required when ListenAddress (%q) is a wildcard: the host:port others reach this instance at", c.ListenAddress)
	} else if h, p, err := net.SplitHostPort(c.ConnectAddress); err != nil || h == "" {
		bad("ConnectAddress", "must be host:port, got %q", c.ConnectAddress)
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		bad("ConnectAddress", "port must be between 1 and 65535, got %q", p)
	}
	if !filepath.IsAbs(c.SocketDir) {
		bad("SocketDir", "must be an absolute path, got %q", c.SocketDir)
	} else if strings.ContainsAny(c.SocketDir, ", '\"\\\n") {
		bad("SocketDir", "must not contain commas, spaces, quotes or backslashes (it becomes unix_socket_directories), got %q", c.SocketDir)
	} else if n := len(filepath.Join(c.SocketDir, ".s.PGSQL."+strconv.Itoa(c.Port))); n > maxSocketPath {
		bad("SocketDir", "socket path would be %d bytes, more than the %d unix sockets allow; choose a shorter directory", n, maxSocketPath)
	}
	if c.LogFile != "" && !filepath.IsAbs(c.LogFile) {
		bad("LogFile", "must be an absolute path, got %q", c.LogFile)
	}
	if c.DataDir != "" && c.LogFile != "" && filepath.IsAbs(c.LogFile) && filepath.IsAbs(c.DataDir) &&
		strings.HasPrefix(filepath.Clean(c.LogFile)+"/", c.DataDir+"/") {
		bad("LogFile", "must be outside DataDir (pg_basebackup and pg_rewind would copy or overwrite it)")
	}
	if !filepath.IsAbs(c.PgpassFile) {
		bad("PgpassFile", "must be an absolute path, got %q", c.PgpassFile)
	}
	for field, cr := range map[string]Credentials{"Superuser": c.Superuser, "Replication": c.Replication, "Rewind": c.Rewind} {
		if strings.ContainsAny(cr.Username, "\x00\n") || strings.ContainsAny(cr.Password, "\x00\n\r") {
			bad(field, "username and password must not contain NUL or line breaks")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Parameters)) {
		if !gucName.MatchString(strings.TrimSpace(name)) {
			bad("Parameters["+name+"]", "not a valid parameter name")
		}
		if strings.ContainsAny(c.Parameters[name], "\x00\n\r") {
			bad("Parameters["+name+"]", "value must not contain NUL or line breaks")
		}
	}
	for i, l := range c.HBA {
		if strings.ContainsAny(l, "\x00\n\r") {
			bad(fmt.Sprintf("HBA[%d]", i), "must be a single line")
		}
	}
	if c.Timeout < 0 {
		bad("Timeout", "must not be negative")
	}
	if c.TransferTimeout < 0 {
		bad("TransferTimeout", "must not be negative")
	}
	switch {
	case c.OSUser == "root":
		bad("OSUser", "postgres refuses to run as root; name an unprivileged account (default %q)", DefaultOSUser)
	case os.Geteuid() != 0 && c.OSUser != "":
		if u := currentUserName(); u != "" && u != c.OSUser {
			bad("OSUser", "switching to %q needs root; this process runs as %q (leave OSUser empty to run as the current user)", c.OSUser, u)
		}
	}
	return errors.Join(errs...)
}

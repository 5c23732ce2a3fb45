package routing

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults applied to zero Config fields.
const (
	// DefaultMaxLag is the default replica lag bound: 1 MiB of WAL, Patroni's
	// maximum_lag_on_failover default.
	DefaultMaxLag = 1 << 20
	// DefaultProbeInterval is how often every node is probed.
	DefaultProbeInterval = time.Second
	// DefaultProbeTimeout bounds one probe (connect and query).
	DefaultProbeTimeout = time.Second
	// DefaultSwitchoverHold bounds how long write acquisitions are held
	// during a planned switchover.
	DefaultSwitchoverHold = 30 * time.Second
	// DefaultReadYourWritesWait bounds how long a read given a token waits
	// for a replica to replay it before it goes to the primary.
	DefaultReadYourWritesWait = 200 * time.Millisecond
	// DefaultRetryInterval is the first wait between retries.
	DefaultRetryInterval = 10 * time.Millisecond
	// DefaultMaxRetryInterval caps the wait between retries.
	DefaultMaxRetryInterval = 500 * time.Millisecond
)

// Fallback says what a read does when no replica is eligible.
type Fallback int8

// Fallback policies.
const (
	// FallbackDefault: in Config, FallbackPrimary; in ReadOptions, the
	// Config's policy.
	FallbackDefault Fallback = iota
	// FallbackPrimary: read from the primary.
	FallbackPrimary
	// FallbackNone: wait (bounded by ctx) for an eligible replica.
	FallbackNone
)

// Config configures a Router. Zero values mean the documented default. New
// copies it; changing it afterwards has no effect.
type Config struct {
	// Source is where the topology comes from: FromDCS or FromHosts.
	// Required.
	Source Source

	// ConnString is the base connection string (URL or key=value) every
	// node's pool is built from: user, password, database, TLS, runtime
	// parameters, pool settings (pool_max_conns, ...). Its host and port
	// are replaced by each node's address (a FromDCS member's conn_url gives
	// host and port only). target_session_attrs is replaced by the router's
	// own checks. Exactly one of ConnString and PoolConfig is required.
	ConnString string
	// PoolConfig is the base pool configuration, as returned by
	// pgxpool.ParseConfig, possibly with hooks and a tracer set (they are
	// kept, and the router's checks are chained after them). It is copied.
	PoolConfig *pgxpool.Config
	// ConfigurePool, when set, adjusts the configuration of each pool the
	// router creates (per-member overrides: a larger pool for the primary,
	// other credentials on one host). role is RolePrimary or RoleReplica.
	// It runs on the router's goroutine and must not block. An error leaves
	// the node without a pool (it gets no traffic) and is logged.
	ConfigurePool func(n Node, role Role, cfg *pgxpool.Config) error

	// MaxLag bounds replica lag for reads, in bytes of WAL behind the
	// primary's current position. Default DefaultMaxLag; negative: no
	// bound.
	MaxLag int64
	// Picker chooses among the eligible replicas. Default RoundRobin().
	Picker Picker
	// Fallback is what a read does when no replica is eligible. Default
	// (FallbackDefault) is FallbackPrimary.
	Fallback Fallback

	// ProbeInterval is how often the router probes every node over its own
	// connection (pg_is_in_recovery(), current or replay LSN, timeline,
	// WAL receiver state, round-trip time). Default DefaultProbeInterval.
	// Negative disables probing; only FromDCS allows that, and lag and
	// roles then come from the member keys alone.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe, connection included. Default
	// DefaultProbeTimeout.
	ProbeTimeout time.Duration

	// SwitchoverHold bounds how long new write acquisitions wait while a
	// planned switchover is under way. Default DefaultSwitchoverHold;
	// negative disables the hold.
	SwitchoverHold time.Duration
	// ReadYourWritesWait bounds how long a read given a token (ReadOptions
	// After) waits for a replica to replay it before it uses the primary.
	// Default DefaultReadYourWritesWait.
	ReadYourWritesWait time.Duration
	// RetryInterval is the first wait between retries of Write and Read
	// (and of a failed primary acquisition); it doubles up to
	// MaxRetryInterval, with jitter. Defaults DefaultRetryInterval and
	// DefaultMaxRetryInterval. A leader change cuts a wait short.
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration

	// MaxStaleness, with FromDCS, makes writes fail closed when the DCS
	// cannot confirm the primary: the router asks the DCS every
	// MaxStaleness/4 (dcs.Confirmer: a linearizable read) whether the
	// leader key still names the tenure it follows, and a primary
	// acquisition made more than MaxStaleness after the last such
	// confirmation waits (bounded by its ctx) instead of connecting, and
	// fails wrapping ErrNoPrimary and ErrStaleView. Connections already
	// acquired are not cut. 0 (the default) keeps the last topology while
	// the DCS cannot be reached: writes go on to the primary, whose own
	// leader fence stops it if it lost its lease. A bound of about the
	// DCS TTL suits clients that prefer refusing writes to the primary's
	// fence doing it. The reader must implement dcs.Confirmer.
	MaxStaleness time.Duration

	// Logger receives the router's logs. nil means no logging.
	Logger hclog.Logger
	// Hooks are event callbacks.
	Hooks Hooks
}

// Hooks are optional callbacks. They run on the router's goroutine, in
// order, after the new topology is published (routing never waits for them),
// except OnRetry, which runs on the goroutine of the Write or Read that
// retries. They must not block. nil fields are skipped.
type Hooks struct {
	// OnTopology is called with every new topology snapshot.
	OnTopology func(t *Topology)
	// OnLeaderChange is called when the primary's tenure changes (to a zero
	// Epoch when the cluster has no leader). By then writes already go to
	// the new primary and the old primary's pool is fenced.
	OnLeaderChange func(old, new Epoch)
	// OnConflict is called once per node and tenure when a node other than
	// the followed primary acts as a primary. The router never sends it
	// writes.
	OnConflict func(c Conflict)
	// OnRetry is called before Write or Read runs a transaction again;
	// attempt is the number of the failed attempt (1 for the first).
	OnRetry func(op string, attempt int, err error)
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Source == nil {
		errs = append(errs, errors.New("Source is required (FromDCS or FromHosts)"))
	} else if v, ok := c.Source.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.ConnString == "" && c.PoolConfig == nil:
		errs = append(errs, errors.New("one of ConnString and PoolConfig is required"))
	case c.ConnString != "" && c.PoolConfig != nil:
		errs = append(errs, errors.New("set only one of ConnString and PoolConfig"))
	case c.ConnString != "":
		if _, err := pgxpool.ParseConfig(c.ConnString); err != nil {
			errs = append(errs, fmt.Errorf("ConnString: %w", err))
		}
	case c.PoolConfig.ConnConfig == nil:
		errs = append(errs, errors.New("PoolConfig must come from pgxpool.ParseConfig"))
	}
	if c.ProbeInterval < 0 {
		if hs, ok := c.Source.(*hostsSource); ok && hs != nil {
			errs = append(errs, errors.New("FromHosts needs probes: ProbeInterval must not be negative"))
		}
	}
	if err := c.validateStaleness(); err != nil {
		errs = append(errs, err)
	}
	if c.ProbeTimeout < 0 {
		errs = append(errs, errors.New("ProbeTimeout must not be negative"))
	}
	if c.ReadYourWritesWait < 0 {
		errs = append(errs, errors.New("ReadYourWritesWait must not be negative"))
	}
	if c.RetryInterval < 0 || c.MaxRetryInterval < 0 {
		errs = append(errs, errors.New("RetryInterval and MaxRetryInterval must not be negative"))
	}
	if c.RetryInterval > 0 && c.MaxRetryInterval > 0 && c.RetryInterval > c.MaxRetryInterval {
		errs = append(errs, fmt.Errorf("RetryInterval (%s) exceeds MaxRetryInterval (%s)", c.RetryInterval, c.MaxRetryInterval))
	}
	switch c.Fallback {
	case FallbackDefault, FallbackPrimary, FallbackNone:
	default:
		errs = append(errs, fmt.Errorf("invalid Fallback %d", c.Fallback))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("routing: invalid config: %w", errors.Join(errs...))
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxLag == 0 {
		c.MaxLag = DefaultMaxLag
	}
	if c.Picker == nil {
		c.Picker = RoundRobin()
	}
	if c.Fallback == FallbackDefault {
		c.Fallback = FallbackPrimary
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.SwitchoverHold == 0 {
		c.SwitchoverHold = DefaultSwitchoverHold
	}
	if c.ReadYourWritesWait == 0 {
		c.ReadYourWritesWait = DefaultReadYourWritesWait
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.MaxRetryInterval == 0 {
		c.MaxRetryInterval = max(DefaultMaxRetryInterval, c.RetryInterval)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

package ha

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/pg"
)

// Version is the version string pgha publishes in member keys and /patroni.
const Version = "0.1.0-pgha"

// Postgres is what the Node needs from the PostgreSQL instance it manages.
// *pg.Instance implements it; tests may script a fake.
type Postgres interface {
	Initialized() bool
	Initdb(ctx context.Context, opts pg.InitdbOptions) error
	EnsureRoles(ctx context.Context) error
	Start(ctx context.Context) error
	Stop(ctx context.Context, mode pg.StopMode) error
	Promote(ctx context.Context) error
	Checkpoint(ctx context.Context) error
	ConfigurePrimary(ctx context.Context) error
	ConfigureStandby(ctx context.Context, up pg.Upstream) error
	Clone(ctx context.Context, up pg.Upstream, progress func(pg.CloneProgress)) error
	Rewind(ctx context.Context, up pg.Upstream) (bool, error)
	CrashRecovery(ctx context.Context) error
	Status(ctx context.Context) (pg.Status, error)
	Reload(ctx context.Context) error
	TimelineHistory(ctx context.Context, tl int) ([]pg.TimelineSwitch, error)
	Running() (pid int, running bool)
	Exits() <-chan pg.ExitEvent
	ConnURL() string
	Version() int
	Config() pg.Config
}

var _ Postgres = (*pg.Instance)(nil)

// Bootstrap is what the node does when it wins the race to create a new
// cluster (Patroni's bootstrap section).
type Bootstrap struct {
	// Initdb are the initdb options.
	Initdb pg.InitdbOptions
	// DCS is the initial dynamic configuration written to /config (Patroni's
	// bootstrap.dcs). nil writes {"ttl":30,"loop_wait":10,...} defaults.
	DCS map[string]any
}

// Hooks are optional callbacks for events. They run in their own goroutines
// (they may run concurrently with each other and must not block for long);
// nil fields are skipped.
type Hooks struct {
	// OnRoleChange is called after the node's role changed (to "primary" after
	// a promotion, "replica" after a demote or follow, "demoted", ...).
	OnRoleChange func(role string)
	// OnStartedLeading is called once the node is a writable primary
	// holding the lease. ctx is cancelled the moment leadership is lost
	// (fence, demote, lost key, shutdown): stop leader-only work then.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading is called when leadership ends, and once when Run
	// returns even if the node never led.
	OnStoppedLeading func()
	// OnDecision is called with each decision's one-line rendering.
	OnDecision func(decision string)

	// OnStart, OnStop, OnRestart and OnReload are called at the events
	// of the same-named callback scripts (see Callbacks: once per event,
	// with the role the script gets). OnRoleChange, unlike the
	// on_role_change script, reports every change of the published role.
	OnStart   func(role string)
	OnStop    func(role string)
	OnRestart func(role string)
	OnReload  func(role string)

	// BeforePromote is called synchronously, in the promoting goroutine,
	// after the node won the leader key and armed its watchdog and before
	// the pre_promote script and the promotion. An error vetoes the
	// promotion exactly as a failing pre_promote does: the node releases
	// the key and does not race for a TTL, so another member can be
	// promoted. ctx ends when the promotion is abandoned or after
	// Callbacks.Timeout (default the TTL).
	BeforePromote func(ctx context.Context) error
	// BeforeStop is called synchronously right before Postgres is
	// signalled to stop (not before the fence's immediate stop, which
	// never waits), before the before_stop script. ctx ends after
	// Callbacks.Timeout.
	BeforeStop func(ctx context.Context)
}

// Config configures a Node. Zero values mean the documented default.
type Config struct {
	// Name is the member name (required). It must equal Store.Name() and
	// Postgres.Config().Name.
	Name string
	// Scope is the cluster name, reported by the REST API (required).
	Scope string
	// Store is the DCS client acting for Name (required).
	Store dcs.Store
	// Postgres is the instance this node manages (required).
	Postgres Postgres
	// APIURL is the api_url published in the member key, the URL of this
	// node's GET /patroni (e.g. "http://10.0.0.1:8008/patroni"). Required:
	// peers probe it before they race.
	APIURL string
	// Tags are published in the member key (nofailover, failover_priority,
	// clonefrom, noloadbalance, ...).
	Tags dcs.Tags
	// Bootstrap, when not nil, lets this node race for /initialize and
	// create the cluster with initdb. A node without it only clones.
	Bootstrap *Bootstrap
	// RemoveDataOnDivergence re-clones a member whose timeline diverged when
	// pg_rewind cannot be used (remove_data_directory_on_diverged_timelines).
	RemoveDataOnDivergence bool
	// RemoveDataOnRewindFailure re-clones a member whose pg_rewind failed.
	RemoveDataOnRewindFailure bool

	// RenewInterval is how often the lease keeper renews the lease. Default
	// ttl/4 (a dead leader's lease then runs out at most ttl after its last
	// renewal, on average 7/8 ttl after it died). Must leave at least two renewals before the fence fires.
	RenewInterval time.Duration
	// FenceMargin is how long before the lease deadline a leader that could
	// not renew stops Postgres. It covers the stop's latency and the
	// difference in clock rates between this host and the DCS. Default
	// max(ttl/5, 500ms).
	FenceMargin time.Duration
	// ProbeTimeout bounds each GET /patroni to a peer. Default 1s.
	ProbeTimeout time.Duration
	// HTTPClient probes peers. Default: a client with ProbeTimeout.
	HTTPClient *http.Client

	// API secures the REST API's unsafe endpoints.
	API APIConfig
	// SlotWALWarning is how much WAL (bytes) a replication slot may hold
	// back before the node logs a warning and counts it in the
	// pgha_replication_slots_over_wal_threshold metric: a slot whose
	// standby never comes back keeps every WAL file until the disk is
	// full. Default DefaultSlotWALWarning (1 GiB); negative: no warning.
	SlotWALWarning int64

	// Logger receives the node's logs. nil means no logging.
	Logger hclog.Logger
	// Hooks are the event callbacks.
	Hooks Hooks
	// Callbacks are Patroni's callback scripts (postgresql.callbacks,
	// pre_promote, before_stop).
	Callbacks Callbacks
	// Watchdog configures the watchdog device (Patroni's watchdog
	// section). The zero value is off; Logger is the node's when nil.
	Watchdog watchdog.Config
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ha: "+format, args...)) }
	if c.Name == "" {
		bad("Name is required")
	}
	if c.Scope == "" {
		bad("Scope is required")
	}
	if c.Store == nil {
		bad("Store is required")
	} else if c.Store.Name() != c.Name {
		bad("Store acts for %q, not for Name %q", c.Store.Name(), c.Name)
	}
	if c.Postgres == nil {
		bad("Postgres is required")
	} else if n := c.Postgres.Config().Name; n != c.Name {
		bad("Postgres is configured for member %q, not for Name %q", n, c.Name)
	}
	if c.APIURL == "" {
		bad("APIURL is required (peers probe it before a failover)")
	} else if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("APIURL %q is not an http(s) URL", c.APIURL)
	}
	if c.RenewInterval < 0 || c.FenceMargin < 0 || c.ProbeTimeout < 0 {
		bad("RenewInterval, FenceMargin and ProbeTimeout must not be negative")
	}
	errs = append(errs, c.Callbacks.validate()...)
	if err := c.Watchdog.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ha: Watchdog: %w", err))
	}
	return errors.Join(errs...)
}

// timing is the lease timing in force for one TTL.
type timing struct {
	ttl, renew, margin, retry time.Duration
}

// timingFor derives and checks the lease timing for ttl: the fence fires at
// deadline-margin, and at least two renewals must fit before it.
func (c Config) timingFor(ttl time.Duration) (timing, error) {
	t := timing{ttl: ttl, renew: c.RenewInterval, margin: c.FenceMargin}
	if t.renew == 0 {
		t.renew = ttl / 4
	}
	if t.margin == 0 {
		t.margin = max(ttl/5, 500*time.Millisecond)
	}
	if 2*t.renew+t.margin >= ttl {
		return t, fmt.Errorf("ha: ttl %s is too short for renewals every %s and a fence margin of %s (need 2*renew + margin < ttl)",
			ttl, t.renew, t.margin)
	}
	return t, nil
}

package etcddcs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
)

// Defaults applied to zero Config fields.
const (
	// DefaultRetryTimeout is Patroni's retry_timeout default.
	DefaultRetryTimeout = 10 * time.Second
	// DefaultTTL is the lease TTL used when PutMember or AcquireLeader needs a
	// lease before any KeepAlive named one (Patroni's ttl default).
	DefaultTTL = 30 * time.Second
	// minRequestTimeout is the floor of the per-request timeout, as in Patroni.
	minRequestTimeout = time.Second
)

// Config configures a Store. Zero values mean "use the default". New copies
// it; later changes to the caller's value have no effect.
type Config struct {
	// Endpoints are the etcd client URLs, e.g. "http://10.0.0.1:2379" or
	// "https://etcd1:2379". Required unless Client is set.
	Endpoints []string

	// TLS is the client TLS configuration for https endpoints. Leave nil to
	// build one from CertFile, KeyFile and CAFile, or for plain http.
	TLS *tls.Config
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// client-certificate authentication. Set both or neither. Ignored when
	// TLS is set (setting both is an error).
	CertFile, KeyFile string
	// CAFile is a PEM bundle of the CAs that sign the etcd servers'
	// certificates. Empty means the system roots.
	CAFile string

	// Username and Password authenticate with etcd's auth (set both or
	// neither). Invalid credentials make New fail.
	Username, Password string

	// Path is the cluster's namespace and scope. Required.
	Path dcs.Path

	// Name is the node this store acts for; "" makes a read-only client whose
	// session, election and leader-only operations fail with dcs.ErrNoSession.
	// It must not contain '/'.
	Name string

	// RetryTimeout is Patroni's retry_timeout: the budget of one request
	// across all endpoints. Each request to etcd gets RetryTimeout divided by
	// the number of endpoints (at least 1 s). Cluster and Watch wait up to
	// RetryTimeout for the first read of the cluster. Default 10 s.
	RetryTimeout time.Duration

	// DialTimeout bounds the initial connection (and authentication) in New.
	// Default: the per-request timeout.
	DialTimeout time.Duration

	// Logger receives the store's logs; nil discards them.
	Logger hclog.Logger

	// Client is an existing etcd client to use instead of dialling Endpoints.
	// The Store does not close it. When set, Endpoints, TLS, the certificate
	// files, Username, Password and DialTimeout must be empty.
	Client *clientv3.Client
}

// Validate reports every problem with the configuration, joined.
func (c Config) Validate() error {
	var errs []error
	if err := c.Path.Validate(); err != nil {
		errs = append(errs, err)
	}
	if strings.Contains(c.Name, "/") {
		errs = append(errs, fmt.Errorf("name %q must not contain '/'", c.Name))
	}
	if c.Client != nil {
		if len(c.Endpoints) > 0 || c.TLS != nil || c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" ||
			c.Username != "" || c.Password != "" || c.DialTimeout != 0 {
			errs = append(errs, errors.New("with Client set, Endpoints, TLS, CertFile, KeyFile, CAFile, Username, Password and DialTimeout must be empty"))
		}
	} else {
		if len(c.Endpoints) == 0 {
			errs = append(errs, errors.New("at least one endpoint is required"))
		}
		for i, ep := range c.Endpoints {
			if strings.TrimSpace(ep) == "" || strings.ContainsAny(ep, " \t\n") {
				errs = append(errs, fmt.Errorf("endpoint %d (%q) is empty or contains spaces", i, ep))
			}
		}
	}
	if c.TLS != nil && (c.CertFile != "" || c.KeyFile != "" || c.CAFile != "") {
		errs = append(errs, errors.New("set either TLS or CertFile/KeyFile/CAFile, not both"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("CertFile and KeyFile must be set together"))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, errors.New("Username and Password must be set together"))
	}
	if c.RetryTimeout < 0 {
		errs = append(errs, fmt.Errorf("RetryTimeout must not be negative, got %s", c.RetryTimeout))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("DialTimeout must not be negative, got %s", c.DialTimeout))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("etcddcs: invalid config: %w", errors.Join(errs...))
}

// requestTimeout is RetryTimeout divided across the endpoints, at least 1 s,
// as Patroni derives its per-node timeout.
func requestTimeout(retry time.Duration, endpoints int) time.Duration {
	if endpoints < 1 {
		endpoints = 1
	}
	return max(retry/time.Duration(endpoints), minRequestTimeout)
}

package config

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/pg"
)

// APIURL is the api_url this node publishes: http(s)://connect_address/patroni.
func (c *Config) APIURL() string {
	scheme := "http"
	if c.RestAPI.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + c.RestAPI.ConnectAddress + "/patroni"
}

// DynamicConfig returns the dynamic configuration to use before the DCS
// has one: bootstrap.dcs, or nil.
func (c *Config) DynamicConfig() map[string]any {
	if c.Bootstrap == nil {
		return nil
	}
	return c.Bootstrap.DCS
}

// EtcdConfig maps the etcd section onto the DCS client's configuration (no
// Logger; Name is this member). retry is the dynamic retry_timeout.
func (c *Config) EtcdConfig(retry time.Duration) etcddcs.Config {
	return etcddcs.Config{
		Endpoints:    slices.Clone(c.Etcd.Endpoints),
		CAFile:       c.Etcd.CACert,
		CertFile:     c.Etcd.Cert,
		KeyFile:      c.Etcd.Key,
		Username:     c.Etcd.Username,
		Password:     c.Etcd.Password,
		Path:         c.Path(),
		Name:         c.Name,
		RetryTimeout: retry,
	}
}

// HAConfig maps the configuration onto ha.Config, with the callback
// scripts and the watchdog. Store, Postgres, Logger, Hooks and HTTPClient
// are the caller's to fill in.
func (c *Config) HAConfig() ha.Config {
	h := ha.Config{
		Name:                      c.Name,
		Scope:                     c.Scope,
		APIURL:                    c.APIURL(),
		Tags:                      maps.Clone(c.Tags),
		RemoveDataOnDivergence:    c.Postgres.RemoveDataOnDivergedTimelines,
		RemoveDataOnRewindFailure: c.Postgres.RemoveDataOnRewindFailure,
		API: ha.APIConfig{
			Username:                c.RestAPI.Username,
			Password:                c.RestAPI.Password,
			Allowlist:               slices.Clone(c.RestAPI.Allowlist),
			AllowlistIncludeMembers: c.RestAPI.AllowlistIncludeMembers,
		},
	}
	if c.RestAPI.VerifyClient != "none" {
		h.API.VerifyClient = c.RestAPI.VerifyClient
	}
	if c.Bootstrap != nil {
		h.Bootstrap = &ha.Bootstrap{Initdb: c.Bootstrap.Initdb, DCS: jsonNumbers(c.Bootstrap.DCS)}
	}
	h.Callbacks = c.Postgres.Callbacks
	h.Watchdog = c.Watchdog.config()
	return h
}

// config maps the watchdog section onto watchdog.Config (a mode Decode
// accepted always parses).
func (w Watchdog) config() watchdog.Config {
	mode, _ := watchdog.ParseMode(w.Mode)
	wc := watchdog.Config{Mode: mode, Device: w.Device, SafetyMargin: time.Duration(w.SafetyMargin) * time.Second}
	if w.SafetyMargin < 0 {
		wc.SafetyMargin = -time.Second
	}
	return wc
}

// jsonNumbers copies a YAML-decoded value so that it can be stored as
// JSON (maps with string keys; it already is) and returns it.
func jsonNumbers(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return jsonNumbers(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = copyValue(x)
		}
		return out
	}
	return v
}

// PGConfig maps the configuration onto pg.Config, with the parameters and
// pg_hba of the dynamic configuration dynamic (the DCS /config, or
// bootstrap.dcs before there is one), following Patroni's rules (SPEC.md
// 6.1): local postgresql.parameters override the dynamic ones, except the
// protected parameters, which only the dynamic configuration sets. It
// returns notes about the values it did not use as given. Logger is the
// caller's to fill in.
func (c *Config) PGConfig(dynamic map[string]any) (pg.Config, []string) {
	var notes []string
	p := c.Postgres
	cfg := pg.Config{
		Name:           c.Name,
		ClusterName:    c.Scope,
		DataDir:        p.DataDir,
		BinDir:         p.BinDir,
		ListenAddress:  p.ListenHosts,
		Port:           p.Port,
		ConnectAddress: p.ConnectAddress,
		PgpassFile:     p.PgPass,
		Superuser:      p.Superuser,
		Replication:    p.Replication,
		Rewind:         p.Rewind,
		Timeout:        p.PgCtlTimeout,
	}
	params, n := c.Parameters(dynamic)
	notes = append(notes, n...)
	if dirs, ok := params["unix_socket_directories"]; ok {
		first := strings.TrimSpace(strings.Split(dirs, ",")[0])
		first = strings.Trim(first, "'\"")
		if first != "" {
			cfg.SocketDir = first
		}
		if strings.Contains(dirs, ",") {
			notes = append(notes, fmt.Sprintf("postgresql.parameters.unix_socket_directories: pgha uses one socket directory, %s", first))
		}
		delete(params, "unix_socket_directories")
	}
	cfg.Parameters = params
	cfg.HBA = c.HBA(dynamic)
	return cfg, notes
}

// Parameters merges the dynamic configuration's postgresql.parameters with
// the local ones (SPEC.md 6.1) and returns them as text, with notes about
// local values that were not used.
func (c *Config) Parameters(dynamic map[string]any) (map[string]string, []string) {
	var notes []string
	out := map[string]string{}
	if pgm, ok := dynamic["postgresql"].(map[string]any); ok {
		if pm, ok := pgm["parameters"].(map[string]any); ok {
			for k, v := range pm {
				if v == nil {
					continue
				}
				out[k] = pgValue(v)
			}
		}
	}
	protected := map[string]bool{}
	for _, n := range pg.ProtectedParameterNames() {
		protected[n] = true
	}
	keys := make([]string, 0, len(c.Postgres.Parameters))
	for k := range c.Postgres.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := c.Postgres.Parameters[k]
		if protected[strings.ToLower(k)] {
			notes = append(notes, fmt.Sprintf("postgresql.parameters.%s: %q is ignored: this parameter comes only from the dynamic "+
				"configuration (bootstrap.dcs.postgresql.parameters, or edit-config --pg), as in Patroni", k, v))
			continue
		}
		out[k] = v
	}
	return out, notes
}

// HBA returns the pg_hba lines to use: postgresql.pg_hba, else the dynamic
// configuration's postgresql.pg_hba, else bootstrap.pg_hba followed by
// initdb's default lines (so pgha's own local and loopback connections keep
// working), else nil (the data directory's pg_hba.conf).
func (c *Config) HBA(dynamic map[string]any) []string {
	if c.Postgres.PgHBA != nil {
		return slices.Clone(c.Postgres.PgHBA)
	}
	if pgm, ok := dynamic["postgresql"].(map[string]any); ok {
		if l, ok := pgm["pg_hba"].([]any); ok {
			var out []string
			for _, x := range l {
				out = append(out, fmt.Sprint(x))
			}
			return out
		}
	}
	if c.Bootstrap == nil || c.Bootstrap.PgHBA == nil {
		return nil
	}
	local, host := c.Bootstrap.Initdb.AuthLocal, c.Bootstrap.Initdb.AuthHost
	def := "trust"
	if c.Postgres.Superuser.Password != "" {
		def = "scram-sha-256"
	}
	if local == "" {
		local = def
	}
	if host == "" {
		host = def
	}
	out := slices.Clone(c.Bootstrap.PgHBA)
	return append(out,
		"local all all "+local,
		"host all all 127.0.0.1/32 "+host,
		"host all all ::1/128 "+host,
		"local replication all "+local,
		"host replication all 127.0.0.1/32 "+host,
		"host replication all ::1/128 "+host,
	)
}

// ConnectHost is the host part of postgresql.connect_address.
func (c *Config) ConnectHost() string {
	h, _, err := net.SplitHostPort(c.Postgres.ConnectAddress)
	if err != nil {
		return c.Postgres.ConnectAddress
	}
	return h
}

// Dynamic parses a dynamic configuration with Patroni's defaults.
func Dynamic(m map[string]any) dcs.DynamicConfig { return dcs.ParseDynamicConfig(m) }

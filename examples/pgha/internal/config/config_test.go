package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/examples/pgha/internal/config"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/pg"
)

func keys(ps []config.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

// The users' guide's patroni.yml (addresses on loopback) and the recorded
// Patroni configurations load with warnings only.
func TestGuideAndGoldenConfigsLoad(t *testing.T) {
	t.Parallel()
	c, err := config.LoadWith(config.Options{Path: "../../testdata/guide_patroni.yml"})
	require.NoError(t, err)
	assert.Equal(t, "pg-cluster", c.Scope)
	assert.Equal(t, "/patroni", c.Namespace)
	assert.Equal(t, "etcd", c.Etcd.Section)
	assert.Equal(t, []string{"http://127.0.0.1:2379"}, c.Etcd.Endpoints, "duplicates folded")
	assert.Equal(t, "patroni_api_user", c.RestAPI.Username, "restapi.username read as Basic auth")
	assert.Equal(t, "patroni_api_password", c.RestAPI.Password)
	assert.Equal(t, pg.Credentials{Username: "postgres", Password: "postgres_password"}, c.Postgres.Superuser)
	assert.Equal(t, pg.Credentials{Username: "replication", Password: "replication_password"}, c.Postgres.Replication)
	assert.Equal(t, "en_US.UTF-8", c.Bootstrap.Initdb.Locale)
	assert.True(t, c.Bootstrap.Initdb.DataChecksums)
	assert.Equal(t, "UTF8", c.Bootstrap.Initdb.Encoding)
	assert.Equal(t, config.Watchdog{Mode: "automatic", Device: "/dev/watchdog", SafetyMargin: 5}, c.Watchdog)
	assert.Nil(t, c.Tags, "false boolean tags are not published")
	want := []string{"restapi.username", "restapi.password", "etcd", "postgresql.scope",
		"postgresql.authentication.username", "postgresql.authentication.password", "postgresql.basebackup",
		"bootstrap.users"}
	assert.Equal(t, want, keys(c.Problems))
	for _, p := range c.Problems {
		assert.Equal(t, config.Warning, p.Severity, p.String())
		assert.True(t, strings.HasPrefix(p.Source, "guide_patroni.yml:"), p.String())
	}
	pc, notes := c.PGConfig(c.DynamicConfig())
	assert.Len(t, notes, 5, "the five protected parameters of the guide are dynamic-only: %v", notes)
	assert.Equal(t, "pg_stat_statements", pc.Parameters["shared_preload_libraries"])
	assert.Equal(t, "on", pc.Parameters["logging_collector"])
	assert.NotContains(t, pc.Parameters, "wal_level")
	assert.Equal(t, "local   all             all                                   trust", pc.HBA[0])
	assert.Equal(t, "host all all 127.0.0.1/32 scram-sha-256", pc.HBA[5], "initdb's defaults follow the user's lines")

	for i := 1; i <= 3; i++ {
		name := filepath.Join("../../testdata", "patroni_node"+string(rune('0'+i))+".yml")
		c, err := config.LoadWith(config.Options{Path: name})
		require.NoError(t, err, name)
		assert.Empty(t, keys(c.Problems), name)
		pc, notes := c.PGConfig(c.DynamicConfig())
		assert.Empty(t, notes)
		assert.Equal(t, "/var/lib/pgha-bench/node"+string(rune('0'+i)), pc.SocketDir)
		assert.Equal(t, "replica", pc.Parameters["wal_level"], "from bootstrap.dcs")
		assert.Equal(t, 5431+i, pc.Port)
		assert.Equal(t, "rewind_user", pc.Rewind.Username)
		assert.Equal(t, []string{"http://127.0.0.1:2379", "http://127.0.0.1:22379", "http://127.0.0.1:32379"}, c.Etcd.Endpoints)
		h := c.HAConfig()
		assert.Equal(t, "http://127.0.0.1:"+[]string{"8008", "8009", "8010"}[i-1]+"/patroni", h.APIURL)
		require.NotNil(t, h.Bootstrap)
		assert.EqualValues(t, 30, h.Bootstrap.DCS["ttl"])
	}
}

// A broken file: every problem is reported at once, with its key path and
// line.
func TestInvalidConfigListsEveryProblem(t *testing.T) {
	t.Parallel()
	yml := `
name: a/b
restapi:
  listen: 8008
  connect_address: 0.0.0.0:8008
  verify_client: sometimes
  authentication:
    username: only-user
consul:
  host: 127.0.0.1:8500
postgresql:
  listen: 127.0.0.1
  data_dir: [1, 2]
  authentication:
    superuser:
      username: postgres
  parameters:
    work_mem: {a: 1}
  pg_ctl_timeout: soon
bootstrap:
  method: wal_e
  initdb: 5
tags:
  nofailover: maybe
  failover_priority: -1
watchdog:
  mode: sometimes
  safety_margin: -2
log:
  level: LOUD
`
	_, err := config.Parse([]byte(yml), "bad.yml", nil)
	var inv *config.InvalidError
	require.True(t, errors.As(err, &inv), "%v", err)
	got := map[string]string{}
	for _, p := range inv.Errors() {
		got[p.Key] = p.String()
	}
	for _, k := range []string{
		"scope", "name", "restapi.listen", "restapi.connect_address", "restapi.verify_client", "restapi.authentication",
		"consul", "postgresql.listen", "postgresql.connect_address", "postgresql.data_dir",
		"postgresql.authentication.replication", "postgresql.parameters.work_mem", "postgresql.pg_ctl_timeout",
		"bootstrap.method", "bootstrap.initdb", "tags.nofailover", "tags.failover_priority", "watchdog.mode",
		"watchdog.safety_margin", "log.level",
	} {
		assert.Contains(t, got, k)
	}
	assert.Equal(t, "bad.yml:4: restapi.listen: must be host:port, not \"8008\"", got["restapi.listen"])
	assert.Contains(t, got["watchdog.mode"], "bad.yml:27: ")
	assert.Contains(t, err.Error(), "postgresql.data_dir")
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile("../../testdata/patroni_node1.yml")
	require.NoError(t, err)
	env := []string{
		"PATRONI_NAME=from-patroni",
		"PGHA_NAME=from-pgha", // PGHA_ wins
		"PATRONI_SCOPE=other",
		"PATRONI_RESTAPI_LISTEN=127.0.0.1:9999",
		"PATRONI_RESTAPI_USERNAME=u",
		"PATRONI_RESTAPI_PASSWORD=p",
		"PATRONI_RESTAPI_ALLOWLIST=[127.0.0.1, 10.0.0.0/8]",
		"PATRONI_ETCD3_HOSTS=['10.0.0.1:2379','10.0.0.2:2379']",
		"PATRONI_ETCD3_PROTOCOL=https",
		"PATRONI_SUPERUSER_PASSWORD=env-secret",
		"PATRONI_REPLICATION_USERNAME=repl2",
		"PATRONI_POSTGRESQL_DATA_DIR=/srv/pg",
		"PATRONI_LOG_LEVEL=DEBUG",
		"PATRONI_UNKNOWN_THING=x",
	}
	c, err := config.Parse(base, "patroni_node1.yml", env)
	require.NoError(t, err)
	assert.Equal(t, "from-pgha", c.Name)
	assert.Equal(t, "other", c.Scope)
	assert.Equal(t, "127.0.0.1:9999", c.RestAPI.Listen)
	assert.Equal(t, "u", c.RestAPI.Username)
	assert.Equal(t, []string{"127.0.0.1", "10.0.0.0/8"}, c.RestAPI.Allowlist)
	assert.Equal(t, []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, c.Etcd.Endpoints)
	assert.Equal(t, "env-secret", c.Postgres.Superuser.Password)
	assert.Equal(t, "repl2", c.Postgres.Replication.Username)
	assert.Equal(t, "/srv/pg", c.Postgres.DataDir)
	assert.Equal(t, "DEBUG", c.Log.Level)
	vars := config.EnvVariables(env)
	assert.True(t, slices.Contains(vars, "PATRONI_SUPERUSER_PASSWORD"))
	assert.False(t, slices.Contains(vars, "PATRONI_UNKNOWN_THING"))

	// A bad value from the environment names its variable.
	_, err = config.Parse(base, "patroni_node1.yml", []string{"PATRONI_RESTAPI_LISTEN=nope"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment PATRONI_RESTAPI_LISTEN: restapi.listen: must be host:port")

	// The whole configuration from PATRONI_CONFIGURATION.
	c, err = config.LoadWith(config.Options{Env: []string{"PATRONI_CONFIGURATION=" + string(base)}})
	require.NoError(t, err)
	assert.Equal(t, "node1", c.Name)
}

func TestDirectoryOfFilesIsMerged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, err := os.ReadFile("../../testdata/patroni_node1.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00-base.yml"), base, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "10-local.yaml"), []byte("name: node9\npostgresql:\n  listen: 127.0.0.1:6000\n"), 0o600))
	c, err := config.Load(dir)
	require.NoError(t, err)
	assert.Equal(t, "node9", c.Name)
	assert.Equal(t, 6000, c.Postgres.Port)
	assert.Equal(t, "127.0.0.1:5432", c.Postgres.ConnectAddress, "the rest of the section is kept")
}

func TestUnknownAndUnimplementedKeysAreWarnedByName(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile("../../testdata/patroni_node1.yml")
	require.NoError(t, err)
	extra := `
zzz_unknown: 1
ctl:
  insecure: true
  nonsense: 2
`
	yml := strings.Replace(string(base), "  parameters:\n    unix_socket_directories", `  callbacks:
    on_start: /bin/true
    on_role_change: /bin/true
  recovery_conf:
    recovery_target_timeline: latest
    restore_command: cp x y
  create_replica_methods: [wal_g, basebackup]
  wal_g:
    command: wal-g
  parameters:
    unix_socket_directories`, 1) + extra
	c, err := config.Parse([]byte(yml), "x.yml", nil)
	require.NoError(t, err)
	got := keys(c.Problems)
	for _, k := range []string{"zzz_unknown", "ctl.nonsense",
		"postgresql.recovery_conf.restore_command", "postgresql.create_replica_methods", "postgresql.wal_g"} {
		assert.Contains(t, got, k)
	}
	assert.NotContains(t, got, "postgresql.callbacks.on_role_change", "implemented")
	assert.NotContains(t, got, "postgresql.callbacks.on_start", "implemented")
	assert.NotContains(t, got, "postgresql.recovery_conf.recovery_target_timeline", "what pgha does anyway")
	assert.Equal(t, "/bin/true", c.Postgres.Callbacks.OnRoleChange)
	assert.Equal(t, "/bin/true", c.Postgres.Callbacks.OnStart)
	assert.True(t, c.Ctl.Insecure)
}

func TestCallbacksAndWatchdogReachHAConfig(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile("../../testdata/patroni_node1.yml")
	require.NoError(t, err)
	yml := strings.Replace(string(base), "  parameters:\n    unix_socket_directories", `  callbacks:
    on_start: /usr/local/bin/cb --flag 'two words'
    on_stop: /usr/local/bin/cb
    on_restart: /usr/local/bin/cb
    on_reload: /usr/local/bin/cb
    on_role_change: /usr/local/bin/cb
  pre_promote: /usr/local/bin/check-fencing
  before_stop: "/usr/local/bin/drain --wait 5"
  parameters:
    unix_socket_directories`, 1)
	yml = strings.Replace(yml, "watchdog:\n  mode: \"off\"", "watchdog:\n  mode: require\n  device: /dev/watchdog1\n  safety_margin: -1\n  driver: default", 1)
	c, err := config.Parse([]byte(yml), "x.yml", nil)
	require.NoError(t, err)
	for _, p := range c.Problems {
		assert.NotContains(t, p.Key, "callbacks", p.String())
		assert.NotContains(t, p.Key, "watchdog", p.String())
		assert.NotContains(t, p.Key, "pre_promote", p.String())
		assert.NotContains(t, p.Key, "before_stop", p.String())
	}
	h := c.HAConfig()
	assert.Equal(t, ha.Callbacks{
		OnStart: "/usr/local/bin/cb --flag 'two words'", OnStop: "/usr/local/bin/cb", OnRestart: "/usr/local/bin/cb",
		OnReload: "/usr/local/bin/cb", OnRoleChange: "/usr/local/bin/cb",
		PrePromote: "/usr/local/bin/check-fencing", BeforeStop: "/usr/local/bin/drain --wait 5",
	}, h.Callbacks)
	assert.Equal(t, watchdog.Config{Mode: watchdog.ModeRequired, Device: "/dev/watchdog1", SafetyMargin: -time.Second}, h.Watchdog)

	bad := strings.Replace(yml, "pre_promote: /usr/local/bin/check-fencing", "pre_promote: \"/bin/x 'open\"", 1)
	_, err = config.Parse([]byte(bad), "x.yml", nil)
	require.ErrorContains(t, err, "postgresql.pre_promote: cannot be split")
}

func TestSynchronousAndFailsafeSettingsAreNotWarned(t *testing.T) {
	t.Parallel()
	base, err := os.ReadFile("../../testdata/patroni_node1.yml")
	require.NoError(t, err)
	for _, tc := range []struct {
		mode   string
		warned bool
	}{{"true", false}, {"quorum", true}} {
		yml := strings.Replace(string(base), "  dcs:\n", "  dcs:\n    synchronous_mode: "+tc.mode+"\n    synchronous_mode_strict: true\n    synchronous_node_count: 2\n    maximum_lag_on_syncnode: 1048576\n    failsafe_mode: true\n", 1)
		require.NotEqual(t, string(base), yml)
		c, err := config.Parse([]byte(yml), "x.yml", nil)
		require.NoError(t, err)
		got := keys(c.Problems)
		for _, k := range []string{"bootstrap.dcs.synchronous_mode_strict", "bootstrap.dcs.synchronous_node_count",
			"bootstrap.dcs.maximum_lag_on_syncnode", "bootstrap.dcs.failsafe_mode"} {
			assert.NotContains(t, got, k, "implemented")
		}
		if tc.warned {
			assert.Contains(t, got, "bootstrap.dcs.synchronous_mode", "quorum runs as priority mode")
		} else {
			assert.NotContains(t, got, "bootstrap.dcs.synchronous_mode")
		}
	}
}

package config

import (
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvPrefixes are the prefixes of the environment variables that override
// the file: Patroni's, and pgha's own (which wins when both are set).
var EnvPrefixes = []string{"PATRONI_", "PGHA_"}

// envKey maps the part of a variable after the prefix to a key path, and
// says whether its value is parsed as YAML (lists, maps, booleans).
type envKey struct {
	path string
	yaml bool
}

// envTable is Patroni's Config._build_environment_configuration (SPEC.md
// 6.4), as key paths.
func envTable() map[string]envKey {
	t := map[string]envKey{
		"NAME":      {path: "name"},
		"NAMESPACE": {path: "namespace"},
		"SCOPE":     {path: "scope"},
		// legacy log names
		"LOGLEVEL":          {path: "log.level"},
		"LOGFORMAT":         {path: "log.format"},
		"LOG_DATEFMT":       {path: "log.dateformat"},
		"THREAD_POOL_SIZE":  {path: "thread_pool_size"},
		"THREAD_STACK_SIZE": {path: "thread_stack_size"},
		"CITUS_GROUP":       {path: "citus.group", yaml: true},
		"CITUS_DATABASE":    {path: "citus.database"},
	}
	for _, s := range []string{"TYPE", "LEVEL", "TRACEBACK_LEVEL", "FORMAT", "DATEFORMAT", "MAX_QUEUE_SIZE", "DIR",
		"MODE", "FILE_SIZE", "FILE_NUM"} {
		t["LOG_"+s] = envKey{path: "log." + strings.ToLower(s)}
	}
	for _, s := range []string{"STATIC_FIELDS", "LOGGERS", "DEDUPLICATE_HEARTBEAT_LOGS"} {
		t["LOG_"+s] = envKey{path: "log." + strings.ToLower(s), yaml: true}
	}
	for _, s := range []string{"LISTEN", "CONNECT_ADDRESS", "CERTFILE", "KEYFILE", "KEYFILE_PASSWORD", "CAFILE",
		"CIPHERS", "VERIFY_CLIENT", "SERVER_TOKENS"} {
		t["RESTAPI_"+s] = envKey{path: "restapi." + strings.ToLower(s)}
	}
	for _, s := range []string{"HTTP_EXTRA_HEADERS", "HTTPS_EXTRA_HEADERS", "ALLOWLIST", "ALLOWLIST_INCLUDE_MEMBERS",
		"REQUEST_QUEUE_SIZE"} {
		t["RESTAPI_"+s] = envKey{path: "restapi." + strings.ToLower(s), yaml: true}
	}
	t["RESTAPI_USERNAME"] = envKey{path: "restapi.authentication.username"}
	t["RESTAPI_PASSWORD"] = envKey{path: "restapi.authentication.password"}
	for _, s := range []string{"CACERT", "CERTFILE", "KEYFILE", "KEYFILE_PASSWORD"} {
		t["CTL_"+s] = envKey{path: "ctl." + strings.ToLower(s)}
	}
	t["CTL_INSECURE"] = envKey{path: "ctl.insecure", yaml: true}
	t["CTL_USERNAME"] = envKey{path: "ctl.authentication.username"}
	t["CTL_PASSWORD"] = envKey{path: "ctl.authentication.password"}
	for _, s := range []string{"LISTEN", "CONNECT_ADDRESS", "PROXY_ADDRESS", "CONFIG_DIR", "DATA_DIR", "PGPASS", "BIN_DIR"} {
		t["POSTGRESQL_"+s] = envKey{path: "postgresql." + strings.ToLower(s)}
	}
	for _, s := range []string{"PG_CTL", "INITDB", "PG_CONTROLDATA", "PG_BASEBACKUP", "POSTGRES", "PG_ISREADY", "PG_REWIND"} {
		t["POSTGRESQL_BIN_"+s] = envKey{path: "postgresql.bin_name." + strings.ToLower(s)}
	}
	for _, role := range []string{"REPLICATION", "SUPERUSER", "REWIND"} {
		for _, s := range []string{"USERNAME", "PASSWORD", "SSLMODE", "SSLKEY", "SSLPASSWORD", "SSLCERT", "SSLROOTCERT",
			"SSLCRL", "SSLCRLDIR", "GSSENCMODE", "CHANNEL_BINDING", "SSLNEGOTIATION"} {
			t[role+"_"+s] = envKey{path: "postgresql.authentication." + strings.ToLower(role) + "." + strings.ToLower(s)}
		}
	}
	for _, dcsName := range []string{"ETCD", "ETCD3", "CONSUL", "ZOOKEEPER", "EXHIBITOR", "KUBERNETES", "RAFT"} {
		for _, s := range []string{"HOST", "PROTOCOL", "SRV", "SRV_SUFFIX", "URL", "PROXY", "CACERT", "CERT", "KEY",
			"USERNAME", "PASSWORD", "TOKEN", "NAMESPACE", "DC", "CONSISTENCY", "CHECKS", "REGISTER_SERVICE",
			"SERVICE_CHECK_INTERVAL", "SERVICE_TAGS", "LABELS", "SCOPE_LABEL", "ROLE_LABEL", "POD_IP", "PORTS",
			"SELF_ADDR", "PARTNER_ADDRS", "DATA_DIR", "BYPASS_API_SERVICE", "USE_ENDPOINTS"} {
			t[dcsName+"_"+s] = envKey{path: strings.ToLower(dcsName) + "." + strings.ToLower(s)}
		}
		for _, s := range []string{"HOSTS", "PORT", "USE_PROXIES", "VERIFY", "PORTS", "CHECKS", "SERVICE_TAGS",
			"LABELS", "PARTNER_ADDRS", "BYPASS_API_SERVICE", "USE_ENDPOINTS", "REGISTER_SERVICE"} {
			t[dcsName+"_"+s] = envKey{path: strings.ToLower(dcsName) + "." + strings.ToLower(s), yaml: true}
		}
	}
	return t
}

// EnvVariables lists the environment variables (with their prefix) in env
// that LoadWith reads, so a daemon can remove them from its environment
// before it starts PostgreSQL, as Patroni does.
func EnvVariables(env []string) []string {
	t := envTable()
	var out []string
	for k := range envMap(env) {
		for _, p := range EnvPrefixes {
			if rest, ok := strings.CutPrefix(k, p); ok {
				if _, known := t[rest]; known || rest == "CONFIGURATION" {
					out = append(out, k)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// applyEnv overrides raw with the environment: PATRONI_ first, then PGHA_.
func applyEnv(raw map[string]any, env []string, src *sources) {
	t := envTable()
	vars := envMap(env)
	for _, prefix := range EnvPrefixes {
		names := make([]string, 0)
		for k := range vars {
			if strings.HasPrefix(k, prefix) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			ek, ok := t[strings.TrimPrefix(name, prefix)]
			if !ok {
				continue
			}
			var v any = vars[name]
			if ek.yaml {
				var parsed any
				if err := yaml.Unmarshal([]byte(vars[name]), &parsed); err == nil && parsed != nil {
					v = normalize(parsed)
				}
			}
			setPath(raw, ek.path, v)
			src.lines[ek.path] = "environment " + name
		}
	}
}

package pg_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

func TestResolveParametersDefaults(t *testing.T) {
	p := pg.ResolveParameters(nil)
	require.Equal(t, map[string]string{
		"hot_standby":               "on",
		"wal_log_hints":             "on",
		"wal_level":                 "replica",
		"max_connections":           "100",
		"max_wal_senders":           "10",
		"wal_keep_size":             "128MB",
		"max_prepared_transactions": "0",
		"max_locks_per_transaction": "64",
		"track_commit_timestamp":    "off",
		"max_replication_slots":     "10",
		"max_worker_processes":      "8",
	}, p.Protected)
	require.Empty(t, p.File)
	require.Empty(t, p.Adjusted)
	require.Contains(t, pg.ProtectedParameterNames(), "listen_addresses")
}

func TestResolveParameters(t *testing.T) {
	for _, tc := range []struct {
		name, given string
		used        string // value in Protected; "" = not in Protected
		adjusted    bool
		file        bool // passed through to pgha.conf
	}{
		{"max_connections", "200", "200", false, false},
		{"max_connections", "24", "100", true, false},
		{"max_connections", "25", "25", false, false},
		{"max_connections", "lots", "100", true, false},
		{"max_connections", "0x20", "0x20", false, false},
		{"max_wal_senders", "2", "10", true, false},
		{"max_wal_senders", "3", "3", false, false},
		{"max_replication_slots", "3", "10", true, false},
		{"max_worker_processes", "1", "8", true, false},
		{"max_locks_per_transaction", "31", "64", true, false},
		{"max_prepared_transactions", "-1", "0", true, false},
		{"max_prepared_transactions", "100", "100", false, false},
		{"wal_level", "logical", "logical", false, false},
		{"wal_level", "hot_standby", "hot_standby", false, false},
		{"wal_level", "minimal", "replica", true, false},
		{"hot_standby", "off", "on", true, false},
		{"hot_standby", "on", "on", false, false},
		{"wal_log_hints", "false", "on", true, false},
		{"wal_log_hints", "yes", "yes", false, false},
		{"track_commit_timestamp", "on", "on", false, false},
		{"track_commit_timestamp", "maybe", "off", true, false},
		{"wal_keep_size", "1GB", "1GB", false, false},
		{"wal_keep_size", "16MB", "16MB", false, false},
		{"wal_keep_size", "1024kB", "128MB", true, false},
		{"wal_keep_size", "64", "64", false, false},
		{"wal_keep_size", "lots", "128MB", true, false},
		{"wal_keep_size", "5PB", "128MB", true, false},
		{"Max_Connections", "50", "50", false, false},
		{"port", "5433", "", true, false},
		{"listen_addresses", "*", "", true, false},
		{"primary_conninfo", "host=x", "", true, false},
		{"wal_keep_segments", "8", "", true, false},
		{"work_mem", "8MB", "", false, true},
		{"shared_preload_libraries", "pg_stat_statements", "", false, true},
	} {
		t.Run(tc.name+"="+tc.given, func(t *testing.T) {
			p := pg.ResolveParameters(map[string]string{tc.name: tc.given})
			key := map[string]string{"Max_Connections": "max_connections"}[tc.name]
			if key == "" {
				key = tc.name
			}
			if tc.used != "" {
				require.Equal(t, tc.used, p.Protected[key])
			} else {
				require.NotContains(t, p.Protected, key)
			}
			if tc.file {
				require.Equal(t, tc.given, p.File[key])
			} else {
				require.NotContains(t, p.File, key)
			}
			if tc.adjusted {
				require.Len(t, p.Adjusted, 1)
				a := p.Adjusted[0]
				require.Equal(t, key, a.Name)
				require.Equal(t, tc.given, a.Given)
				require.NotEmpty(t, a.Reason)
				if tc.used != "" {
					require.Equal(t, tc.used, a.Used)
				}
				require.Contains(t, a.String(), key)
			} else {
				require.Empty(t, p.Adjusted)
			}
		})
	}
}

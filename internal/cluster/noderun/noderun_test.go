package noderun_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/internal/cluster/noderun"
	"github.com/pgha/pgha/pg"
)

func TestSpecRoundTrip(t *testing.T) {
	s := noderun.Spec{
		Name: "node1", Scope: "c1", Namespace: "ns", Endpoints: []string{"http://127.0.0.1:1", "http://127.0.0.1:2"},
		BinDir: "/usr/lib/postgresql/15/bin", DataDir: "/tmp/x/data", SocketDir: "/tmp/x/run", Port: 5433, ConnectAddress: "127.0.0.1:6433",
		Superuser:   pg.Credentials{Username: "postgres", Password: "su"},
		Replication: pg.Credentials{Username: "replicator", Password: "re:pl"},
		Rewind:      pg.Credentials{Username: "rewinder", Password: "rew'ind"},
		APIAddr:     "127.0.0.1:8009", Bootstrap: true,
		Dynamic: map[string]any{"ttl": float64(3), "postgresql": map[string]any{"use_pg_rewind": true}},
		Tags:    dcs.Tags{"nofailover": true}, Debug: true, Trace: true,
	}
	args, err := s.Args()
	require.NoError(t, err)
	env := map[string]string{}
	for _, e := range s.Env() {
		for i := range e {
			if e[i] == '=' {
				env[e[:i]] = e[i+1:]
				break
			}
		}
	}
	got, err := noderun.Parse(args, func(k string) string { return env[k] })
	require.NoError(t, err)
	require.Equal(t, s, got)
	for _, a := range args {
		require.NotContains(t, a, "rew'ind", "passwords stay off the command line")
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	_, err := noderun.Parse([]string{"-dynamic", "{"}, func(string) string { return "" })
	require.Error(t, err)
	_, err = noderun.Parse([]string{"stray"}, func(string) string { return "" })
	require.Error(t, err)
}

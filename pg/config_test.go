package pg_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

func TestValidateJoinsEveryProblem(t *testing.T) {
	err := pg.Config{
		DataDir:    "relative/data",
		Port:       70000,
		OSUser:     "root",
		Parameters: map[string]string{"bad name": "1", "work_mem": "1\n2"},
		HBA:        []string{"local all all trust\nhost all all 0.0.0.0/0 trust"},
		SocketDir:  "/" + strings.Repeat("s", 120),
	}.Validate()
	require.Error(t, err)
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *pg.ConfigError
		require.True(t, errors.As(e, &ce), "%v", e)
		fields = append(fields, ce.Field)
	}
	for _, f := range []string{"Name", "DataDir", "Port", "OSUser", "Parameters[bad name]", "Parameters[work_mem]", "HBA[0]", "SocketDir"} {
		require.Contains(t, fields, f)
	}
	require.Contains(t, err.Error(), "refuses to run as root")
}

func TestValidateDefaults(t *testing.T) {
	require.NoError(t, pg.Config{Name: "n", DataDir: "/var/lib/pgha/data"}.Validate())

	err := pg.Config{Name: "n", DataDir: "/d", ListenAddress: "*"}.Validate()
	var ce *pg.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "ConnectAddress", ce.Field)
	require.NoError(t, pg.Config{Name: "n", DataDir: "/d", ListenAddress: "*", ConnectAddress: "db1:5432"}.Validate())

	err = pg.Config{Name: "n", DataDir: "/d", LogFile: "/d/log/postgres.log"}.Validate()
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "LogFile", ce.Field)

	if os.Geteuid() != 0 {
		err = pg.Config{Name: "n", DataDir: "/d", OSUser: "someone-else"}.Validate()
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "OSUser", ce.Field)
	}
}

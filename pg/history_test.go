package pg_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

func TestParseTimelineHistory(t *testing.T) {
	got, err := pg.ParseTimelineHistory("1\t0/3000158\tno recovery target specified\n\n# c\n2\t0/5000000\tno recovery target specified\n")
	require.NoError(t, err)
	require.Equal(t, []pg.TimelineSwitch{
		{Timeline: 1, LSN: 0x3000158, Reason: "no recovery target specified"},
		{Timeline: 2, LSN: 0x5000000, Reason: "no recovery target specified"},
	}, got)
	for _, bad := range []string{"x\t0/1\tr", "1", "1\tzz\tr"} {
		_, err := pg.ParseTimelineHistory(bad)
		require.Error(t, err, bad)
	}
}

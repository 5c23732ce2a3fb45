package pg_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

func TestLSN(t *testing.T) {
	for _, tc := range []struct {
		text string
		lsn  pg.LSN
	}{
		{"0/0", 0},
		{"0/3000148", 0x3000148},
		{"16/B374D848", 0x16_B374D848},
		{"1/0", 1 << 32},
		{"7FFFFFFF/FFFFFFFF", 1<<63 - 1},
	} {
		got, err := pg.ParseLSN(tc.text)
		require.NoError(t, err, tc.text)
		require.Equal(t, tc.lsn, got, tc.text)
		require.Equal(t, tc.text, tc.lsn.String())
	}
	got, err := pg.ParseLSN("16/b374d848")
	require.NoError(t, err)
	require.Equal(t, "16/B374D848", got.String())
	require.Equal(t, int64(0x100), int64(pg.LSN(0x1000200)-pg.LSN(0x1000100)), "differences are byte counts")

	for _, bad := range []string{"", "0", "/0", "0/", "x/0", "0/x", "123456789/0", "0/123456789", "80000000/0", "-1/0", "0/0/0", " 0/0"} {
		_, err := pg.ParseLSN(bad)
		require.Error(t, err, "%q", bad)
	}
}

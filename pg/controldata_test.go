package pg_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

const controlDataOut = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7712326155330322545
Database cluster state:               in archive recovery
pg_control last modified:             Thu Nov 26 04:04:23 2026
Latest checkpoint location:           0/1500718
Latest checkpoint's REDO location:    0/15006E0
Latest checkpoint's TimeLineID:       2
Minimum recovery ending location:     0/3000060
Min recovery ending loc's timeline:   2
wal_level setting:                    replica
wal_log_hints setting:                off
Data page checksum version:           1
`

func TestParseControlData(t *testing.T) {
	cd, err := pg.ParseControlData(controlDataOut)
	require.NoError(t, err)
	require.Equal(t, uint64(7712326155330322545), cd.SystemID)
	require.Equal(t, pg.StateInArchiveRecovery, cd.State)
	require.Equal(t, "0/1500718", cd.CheckpointLSN.String())
	require.Equal(t, "0/15006E0", cd.RedoLSN.String())
	require.Equal(t, 2, cd.Timeline)
	require.Equal(t, "0/3000060", cd.MinRecoveryEndLSN.String())
	require.Equal(t, 2, cd.MinRecoveryEndTimeline)
	require.Equal(t, "replica", cd.WALLevel)
	require.False(t, cd.WALLogHints)
	require.Equal(t, 1, cd.ChecksumVersion)
	require.True(t, cd.RewindPossible(), "checksums alone allow pg_rewind")
	require.False(t, cd.CleanShutdown())
	require.Equal(t, "202209061", cd.Fields["Catalog version number"])

	for state, clean := range map[string]bool{
		pg.StateShutDown: true, pg.StateShutDownInRecovery: true, pg.StateInProduction: false,
		pg.StateInCrashRecovery: false, pg.StateShuttingDown: false, pg.StateInArchiveRecovery: false,
	} {
		require.Equal(t, clean, pg.ControlData{State: state}.CleanShutdown(), state)
	}
	require.False(t, pg.ControlData{}.RewindPossible())
	require.True(t, pg.ControlData{WALLogHints: true}.RewindPossible())

	_, err = pg.ParseControlData("WARNING: Calculated CRC checksum does not match value stored in file.\n" + controlDataOut)
	require.ErrorContains(t, err, "checksum")
	_, err = pg.ParseControlData("Database cluster state: shut down\n")
	require.ErrorContains(t, err, "Latest checkpoint location")
}

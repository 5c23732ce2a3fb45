package pg_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
)

// ShutdownCheckpoint on a real server: not done while it runs; after a
// fast stop, done, at the location pg_controldata reports.
func TestShutdownCheckpoint(t *testing.T) {
	ctx := context.Background()
	a := pgtest.New(t, pgtest.Config(t, "shutdown-cp"))
	require.NoError(t, a.Initdb(ctx, pg.InitdbOptions{NoSync: true}))
	require.NoError(t, a.Start(ctx))
	_, done, err := a.ShutdownCheckpoint()
	require.NoError(t, err)
	require.False(t, done, "a running server has not written its shutdown checkpoint")
	require.NoError(t, a.Stop(ctx, pg.StopFast))
	lsn, done, err := a.ShutdownCheckpoint()
	require.NoError(t, err)
	require.True(t, done)
	cd, err := a.ControlData(ctx)
	require.NoError(t, err)
	require.Equal(t, pg.StateShutDown, cd.State)
	require.Equal(t, cd.CheckpointLSN, lsn)
}

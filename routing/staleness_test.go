package routing_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/routing"
)

func primaryWithin(r *routing.Router, d time.Duration) (routing.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.WaitForNode(ctx, routing.Primary)
}

// RELIABILITY.md D11: a router cut from the DCS stops choosing a primary
// once MaxStaleness has passed without a confirmation (fail closed), never
// chooses a node that was not the leader in its last confirmed view, and
// follows the new leader once the DCS answers again.
func TestMaxStalenessFailsClosedWhenCutFromTheDCS(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1", "n2")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	f.member(t, "n2", "postgres://127.0.0.1:1002/postgres", dcs.RoleReplica, 100, nil)
	f.lead(t, "n1")
	const bound = 200 * time.Millisecond
	r := newFakeRouter(t, f, routing.Config{MaxStaleness: bound})
	n, err := primaryWithin(r, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name)

	f.srv.Partition("") // the router's reader: every call fails, its watch is silent
	cut := time.Now()
	// Once the bound has passed, no primary is chosen.
	require.Eventually(t, func() bool {
		_, err := primaryWithin(r, 20*time.Millisecond)
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(cut), bound, "the router kept the confirmed primary for the bound")
	_, err = primaryWithin(r, 100*time.Millisecond)
	require.ErrorIs(t, err, routing.ErrNoPrimary)
	require.ErrorIs(t, err, routing.ErrStaleView)
	// A write acquisition fails closed without connecting.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = r.Primary(ctx)
	cancel()
	require.ErrorIs(t, err, routing.ErrStaleView)
	require.EqualValues(t, 1, r.Stats().StaleAcquisitions)

	// The leader moves while the router cannot see it: it still chooses
	// nobody (n1 is unconfirmed, n2 unseen).
	require.NoError(t, f.nodes["n1"].ReleaseLeader(context.Background(), nil))
	_, err = f.nodes["n2"].AcquireLeader(context.Background())
	require.NoError(t, err)
	_, err = primaryWithin(r, 300*time.Millisecond)
	require.ErrorIs(t, err, routing.ErrStaleView)

	f.srv.Heal("")
	n, err = primaryWithin(r, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "n2", n.Name, "after healing, the new leader")
}

// Without MaxStaleness the router keeps the last topology while the DCS is
// out of reach (the primary's own fence is what stops writes then).
func TestWithoutMaxStalenessTheLastTopologyStays(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, "n1")
	f.member(t, "n1", "postgres://127.0.0.1:1001/postgres", dcs.RolePrimary, 100, nil)
	f.lead(t, "n1")
	r := newFakeRouter(t, f, routing.Config{})
	f.srv.Partition("")
	time.Sleep(300 * time.Millisecond) // the cut's duration, not a wait for a condition
	n, err := primaryWithin(r, time.Second)
	require.NoError(t, err)
	require.Equal(t, "n1", n.Name)
}

func TestMaxStalenessValidation(t *testing.T) {
	f := newFakeCluster(t)
	for _, tc := range []struct {
		cfg  routing.Config
		want string
	}{
		{routing.Config{Source: routing.FromDCS(f.reader), ConnString: "dbname=x", MaxStaleness: -time.Second}, "MaxStaleness must not be negative"},
		{routing.Config{Source: routing.FromHosts("127.0.0.1:5432"), ConnString: "dbname=x", MaxStaleness: time.Second}, "MaxStaleness needs FromDCS"},
		{routing.Config{Source: routing.FromDCS(readerOnly{f.reader}), ConnString: "dbname=x", MaxStaleness: time.Second}, "dcs.Confirmer"},
	} {
		require.ErrorContains(t, tc.cfg.Validate(), tc.want)
	}
}

// readerOnly hides every method but dcs.Reader's.
type readerOnly struct{ dcs.Reader }

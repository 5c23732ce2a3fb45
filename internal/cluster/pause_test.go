package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
)

// Pause (maintenance) mode, SPEC.md 3.13: with pause on, the primary's
// Postgres crashing triggers nothing (it is not restarted, no replica is
// promoted, the leader key stays); resuming brings the automatic actions
// back: the leader restarts its Postgres, and a later SIGKILL of the
// leader fails over.
func TestPauseTriggersNothingUntilResumed(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.Processes, Dynamic: shortTTL(nil)})
	finish := startChecker(t, c)
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 3*time.Minute)
	_, rev, err := c.LeaderRevision(ctx)
	require.NoError(t, err)

	require.NoError(t, c.SetConfig(ctx, map[string]any{"pause": true}))
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(ctx context.Context) error {
		for _, n := range c.Nodes() {
			if !pausedPerAPI(ctx, n) {
				return fmt.Errorf("%s does not report pause yet", n.Name)
			}
		}
		return nil
	}))
	pid, err := p.KillPostgres()
	require.NoError(t, err)
	// Several TTLs: nothing may happen.
	deadline := time.Now().Add(4 * 3 * time.Second)
	for time.Now().Before(deadline) {
		np, err := p.PostmasterPID()
		require.True(t, err != nil || np == pid || np == 0, "paused: Postgres must not be restarted (new postmaster %d)", np)
		require.Empty(t, c.Writable(ctx), "paused: no node may become a writable primary")
		leader, r, err := c.LeaderRevision(ctx)
		require.NoError(t, err)
		require.Equal(t, p.Name, leader, "paused: the leader key stays with %s", p.Name)
		require.Equal(t, rev, r, "paused: same leader tenure")
		time.Sleep(500 * time.Millisecond)
	}

	require.NoError(t, c.SetConfig(ctx, map[string]any{"pause": false}))
	q, err := c.WaitPrimary(within(t, 60*time.Second))
	require.NoError(t, err)
	t.Logf("resumed: %s is the writable primary again", q.Name)
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)

	// Automatic failover works again.
	require.NoError(t, q.Kill())
	r, err := c.WaitPrimary(within(t, 30*time.Second), q)
	require.NoError(t, err)
	t.Logf("after resume, SIGKILL of %s failed over to %s", q.Name, r.Name)
	require.NoError(t, q.Start(ctx))
	_, err = c.WaitStable(within(t, 60*time.Second))
	require.NoError(t, err)
	finish()
}

// pausedPerAPI reports whether the node's GET /patroni says pause: true.
func pausedPerAPI(ctx context.Context, n *cluster.Node) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL(), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Pause bool `json:"pause"`
	}
	return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Pause
}

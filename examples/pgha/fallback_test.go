package main_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/freeport"
)

// TestCLIFallsBackToTheDCS: when no member's REST API answers, switchover
// writes /failover itself and pause/resume write /config with a CAS, as
// patronictl's DCS fallback does; the commands that need the API fail with
// status 1. No Postgres is needed: the cluster is written into etcd
// directly, with api_urls nobody listens on.
func TestCLIFallsBackToTheDCS(t *testing.T) {
	t.Parallel()
	e := startEtcd(t, "pgha-fallback")
	ctx := context.Background()
	path := dcs.Path{Scope: "shop"}
	stores := map[string]*etcddcs.Store{}
	for _, name := range []string{"node1", "node2"} {
		s, err := etcddcs.New(ctx, etcddcs.Config{Endpoints: []string{"http://" + e.Addr}, Path: path, Name: name})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		stores[name] = s
		_, err = s.KeepAlive(ctx, 30*time.Second)
		require.NoError(t, err)
		require.NoError(t, s.PutMember(ctx, dcs.MemberData{
			ConnURL: fmt.Sprintf("postgres://127.0.0.1:%d/postgres", freeport.MustGet(t)),
			APIURL:  fmt.Sprintf("http://127.0.0.1:%d/patroni", freeport.MustGet(t)),
			State:   "running", Role: map[string]string{"node1": "primary", "node2": "replica"}[name], Version: "0.1.0-pgha",
		}))
	}
	require.NoError(t, stores["node1"].InitializeRace(ctx, "7000000000000000001"))
	_, err := stores["node1"].SetConfig(ctx, map[string]any{"ttl": 30, "loop_wait": 10, "retry_timeout": 10}, dcs.IfAbsent())
	require.NoError(t, err)
	_, err = stores["node1"].AcquireLeader(ctx)
	require.NoError(t, err)
	url := "etcd3://" + e.Addr + "/service"

	r := pgha(t, "", "--dcs-url", url, "switchover", "--candidate", "node2", "--force")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "Could not switchover using the REST API")
	assert.Contains(t, r.stdout, "falling back to DCS")
	c, err := stores["node2"].Cluster(ctx)
	require.NoError(t, err)
	require.NotNil(t, c.Failover)
	assert.Equal(t, "node1", c.Failover.Leader)
	assert.Equal(t, "node2", c.Failover.Candidate)

	r = pgha(t, "", "--dcs-url", url, "pause")
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stderr, "No member answered: pause written to /config in the DCS (compare-and-swap)")
	require.Eventually(t, func() bool {
		c, err := stores["node2"].Cluster(ctx)
		return err == nil && c.Config.Dynamic().Pause
	}, 5*time.Second, 20*time.Millisecond)
	r = pgha(t, "", "--dcs-url", url, "list")
	assert.Contains(t, r.stdout, " Maintenance mode: on")
	r = pgha(t, "", "--dcs-url", url, "resume", "shop")
	require.Equal(t, 0, r.code, r)
	require.Eventually(t, func() bool {
		c, err := stores["node2"].Cluster(ctx)
		return err == nil && !c.Config.Dynamic().Pause
	}, 5*time.Second, 20*time.Millisecond)

	r = pgha(t, "", "--dcs-url", url, "restart", "node1", "--force")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stdout, "Failed: restart for member node1")
	r = pgha(t, "", "--dcs-url", url, "reload", "shop", "--force")
	assert.Equal(t, 1, r.code, r)
	r = pgha(t, "", "--dcs-url", url, "version", "shop", "node2")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stdout, "node2: failed to get version")
	r = pgha(t, "", "--dcs-url", url, "reinit", "shop")
	assert.Equal(t, 2, r.code, r, "no member named")
	assert.Contains(t, r.stdout, "Which member do you want to reinitialize [node1, node2]? []: ")
}

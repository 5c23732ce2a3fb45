package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
)

// Failsafe mode (SPEC.md 3.10, RELIABILITY.md: the DCS lost entirely):
// every node is cut from etcd. The primary keeps running, for many TTLs,
// while every member acknowledges it (POST /failsafe); once one member is
// gone it can no longer be sure nobody else will promote, and demotes. When
// etcd is back the cluster heals.
func TestFailsafeKeepsPrimaryWhileAllMembersAcknowledge(t *testing.T) {
	c := newCluster(t, cluster.Options{Mode: cluster.InProcess, Dynamic: shortTTL(map[string]any{"failsafe_mode": true})})
	finish := startChecker(t, c)
	p, err := c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	ctx := within(t, 3*time.Minute)
	require.NoError(t, cluster.Eventually(within(t, 20*time.Second), func(ctx context.Context) error {
		cl, err := c.Store().Cluster(ctx)
		if err != nil {
			return err
		}
		if cl.Failsafe == nil || len(cl.Failsafe.Members) != 3 {
			return fmt.Errorf("/failsafe is %+v", cl.Failsafe)
		}
		return nil
	}))

	for _, n := range c.Nodes() {
		n.CutFromDCS()
	}
	cutAt := time.Now()
	for time.Since(cutAt) < 4*3*time.Second { // four TTLs
		w := c.Writable(ctx)
		require.Len(t, w, 1, "the primary keeps running in failsafe mode (%s after the cut)", time.Since(cutAt).Round(time.Millisecond))
		require.Equal(t, p.Name, w[0].Name)
		require.NoError(t, p.Exec(ctx, "SELECT 1"))
		time.Sleep(500 * time.Millisecond)
	}
	require.True(t, p.HA().Status().FailsafeActive, "the primary reports failsafe active")
	t.Logf("%s kept running for %s with etcd out of reach", p.Name, time.Since(cutAt).Round(time.Millisecond))

	gone := others(c, p)[0]
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	require.NoError(t, gone.Stop(stopCtx))
	cancel()
	stopped := time.Now()
	require.NoError(t, cluster.Eventually(within(t, 30*time.Second), func(ctx context.Context) error {
		if p.Writable(ctx) {
			return errors.New(p.Name + " is still writable")
		}
		return nil
	}))
	t.Logf("%s stopped; %s demoted after %s", gone.Name, p.Name, time.Since(stopped).Round(time.Millisecond))

	for _, n := range c.Nodes() {
		n.HealDCS()
	}
	require.NoError(t, gone.Start(ctx))
	_, err = c.WaitStable(within(t, 90*time.Second))
	require.NoError(t, err)
	finish()
}

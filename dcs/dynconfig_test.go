package dcs_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
)

func parse(t *testing.T, js string) dcs.DynamicConfig {
	t.Helper()
	m, err := dcs.DecodeConfig([]byte(js))
	require.NoError(t, err)
	return dcs.ParseDynamicConfig(m)
}

func TestDynamicConfigDefaults(t *testing.T) {
	d := dcs.ParseDynamicConfig(nil)
	require.Equal(t, 30*time.Second, d.TTL)
	require.Equal(t, 10*time.Second, d.LoopWait)
	require.Equal(t, 10*time.Second, d.RetryTimeout)
	require.Equal(t, int64(1048576), d.MaximumLagOnFailover)
	require.Equal(t, int64(-1), d.MaximumLagOnSyncNode)
	require.Equal(t, 300*time.Second, d.PrimaryStartTimeout)
	require.Equal(t, dcs.SyncOff, d.SynchronousMode)
	require.Equal(t, 1, d.SynchronousNodeCount)
	require.Equal(t, 30*time.Minute, d.MemberSlotsTTL)
	require.True(t, d.UseSlots)
	require.False(t, d.UsePgRewind)
	require.Empty(t, d.Warnings)
	require.Equal(t, d, (*dcs.Config)(nil).Dynamic())
}

func TestDynamicConfigValues(t *testing.T) {
	d := parse(t, `{"ttl":"20","loop_wait":5,"retry_timeout":"5s","maximum_lag_on_failover":0,
		"master_start_timeout":7,"synchronous_mode":"Quorum","synchronous_mode_strict":"on",
		"synchronous_node_count":2,"failsafe_mode":"yes","check_timeline":1,"member_slots_ttl":"2min","pause":"true",
		"postgresql":{"use_pg_rewind":"on","use_slots":false,"parameters":{"max_connections":200}},
		"permanent_slots":{"s1":{"type":"physical"}},"standby_cluster":{"host":"h","port":5432}}`)
	require.Empty(t, d.Warnings)
	require.Equal(t, 20*time.Second, d.TTL)
	require.Equal(t, 5*time.Second, d.RetryTimeout)
	require.Equal(t, int64(0), d.MaximumLagOnFailover)
	require.Equal(t, 7*time.Second, d.PrimaryStartTimeout, "legacy master_start_timeout is read")
	require.Equal(t, dcs.SyncQuorum, d.SynchronousMode)
	require.True(t, d.SynchronousModeStrict)
	require.Equal(t, 2, d.SynchronousNodeCount)
	require.True(t, d.FailsafeMode)
	require.True(t, d.CheckTimeline)
	require.Equal(t, 2*time.Minute, d.MemberSlotsTTL)
	require.True(t, d.Pause)
	require.True(t, d.UsePgRewind)
	require.False(t, d.UseSlots)
	require.Equal(t, json.Number("200"), d.Parameters["max_connections"])
	require.Contains(t, d.Slots, "s1")
	require.Equal(t, "h", d.StandbyCluster["host"])

	d = parse(t, `{"primary_start_timeout":0,"master_start_timeout":9,"synchronous_mode":true}`)
	require.Equal(t, time.Duration(0), d.PrimaryStartTimeout, "the new name wins over the legacy one")
	require.Equal(t, dcs.SyncOn, d.SynchronousMode)
	require.Nil(t, parse(t, `{"standby_cluster":{"create_replica_methods":["x"]}}`).StandbyCluster)
}

func TestDynamicConfigInvalidFallsBack(t *testing.T) {
	d := parse(t, `{"ttl":"soon","loop_wait":-3,"maximum_lag_on_failover":"lots","synchronous_mode":"maybe",
		"synchronous_node_count":0,"pause":"perhaps","postgresql":"x"}`)
	require.Equal(t, 30*time.Second, d.TTL)
	require.Equal(t, 10*time.Second, d.LoopWait)
	require.Equal(t, int64(1048576), d.MaximumLagOnFailover)
	require.Equal(t, dcs.SyncOff, d.SynchronousMode)
	require.Equal(t, 1, d.SynchronousNodeCount)
	require.False(t, d.Pause)
	joined := strings.Join(d.Warnings, "\n")
	for _, k := range []string{"ttl", "loop_wait", "maximum_lag_on_failover", "synchronous_mode", "synchronous_node_count", "pause", "postgresql"} {
		require.Contains(t, joined, k+":")
	}
}

func TestDynamicConfigTimingRule(t *testing.T) {
	// loop_wait + 2*retry_timeout > ttl: loop_wait shrinks.
	d := parse(t, `{"ttl":20,"loop_wait":10,"retry_timeout":6}`)
	require.Equal(t, 8*time.Second, d.LoopWait)
	require.Equal(t, 6*time.Second, d.RetryTimeout)
	require.Len(t, d.Warnings, 1)
	// 1 + 2*retry_timeout > ttl: loop_wait 1, retry_timeout (ttl-1)/2.
	d = parse(t, `{"ttl":10,"loop_wait":10,"retry_timeout":10}`)
	require.Equal(t, time.Second, d.LoopWait)
	require.Equal(t, 4*time.Second, d.RetryTimeout)
	// pgha accepts short TTLs down to MinTTL, and raises lower ones to it.
	d = parse(t, `{"ttl":2}`)
	require.Equal(t, dcs.MinTTL, d.TTL)
	require.LessOrEqual(t, d.LoopWait+2*d.RetryTimeout, d.TTL)
	for ttl := 1; ttl < 100; ttl++ {
		d := dcs.ParseDynamicConfig(map[string]any{"ttl": ttl, "loop_wait": 10, "retry_timeout": 10})
		require.LessOrEqual(t, d.LoopWait+2*d.RetryTimeout, d.TTL, "ttl %d", ttl)
		require.GreaterOrEqual(t, d.LoopWait, dcs.MinLoopWait)
		require.GreaterOrEqual(t, d.RetryTimeout, dcs.MinRetryTimeout)
	}
}

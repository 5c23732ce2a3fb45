package faultsuite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/history"
)

// TestWorkloadReplicationStall is RELIABILITY.md D6: the primary's
// replication edges are cut (every connection into its Postgres through
// its published conn_url is reset, and new ones are refused) while every
// node still reaches etcd, for four ttls, under the history workload.
//
// Both modes: no replica is promoted while the primary holds the leader
// key (same leader tenure throughout). Sync (non-strict): once its
// standbys are gone the primary takes them out of /sync and
// synchronous_standby_names and goes on alone; /sync then names only the
// leader, so only it may be promoted. Strict: no commit is acknowledged
// while no standby can confirm it. After healing, the replicas stream
// again; no acknowledged write is lost; no two writers.
func TestWorkloadReplicationStall(t *testing.T) {
	wlRequireSlow(t)
	for _, mode := range []string{"sync", "strict"} {
		t.Run(mode, func(t *testing.T) {
			e := wlNewEnv(t, mode, func(o *cluster.Options) { o.PostgresIngress = true })
			wlD6(t, e)
		})
	}
}

func wlD6(t *testing.T, e *wlEnv) {
	s := e.begin(t, "D6")
	p := s.current(t)
	leader, rev, err := e.c.LeaderRevision(wlWithin(t, 10*time.Second))
	require.NoError(t, err)
	require.Equal(t, p.Name, leader)
	ing := p.PostgresIngress()
	require.NotNil(t, ing)

	cutAt := s.h.Since()
	ing.ResetNew(true)
	ing.Reset()
	hold := 4 * time.Duration(3) * time.Second // four ttls
	var aloneAt time.Duration                  // /sync named the leader alone (sync mode)
	var changes []string
	for s.h.Since() < cutAt+hold {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, r, err := e.c.LeaderRevision(ctx)
		if err == nil && (l != leader || r != rev) {
			changes = append(changes, fmt.Sprintf("%s: leader %q revision %d", s.h.Since().Round(time.Millisecond), l, r))
		}
		if aloneAt == 0 {
			if sl, standbys, err := dcsSync(ctx, e.c); err == nil && sl == leader && len(standbys) == 0 {
				aloneAt = s.h.Since()
			}
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	healAt := s.h.Since()
	ackedInCut := 0 // acknowledged (completed) between a second into the cut and the heal
	for _, op := range s.h.Ops() {
		if op.Kind == history.Write && op.Result == history.OK && op.Stamp.Node == p.Name && op.Complete > cutAt+time.Second && op.Complete < healAt {
			ackedInCut++
		}
	}
	first, resumed := s.firstOK(p.Name, cutAt+time.Second)
	ing.ResetNew(false)
	ing.Heal()
	require.Empty(t, changes, "no promotion while %s holds the leader key", p.Name)
	switch e.mode {
	case "sync":
		require.NotZero(t, aloneAt, "/sync names the leader alone once its standbys are gone")
		require.True(t, resumed && first < healAt, "the primary goes on alone: commits acknowledged during the cut")
	case "strict":
		require.Zero(t, ackedInCut, "strict: no commit acknowledged while no standby can confirm it")
	}
	o := s.finish(wlExpect{NoLoss: true, NoDisappeared: e.mode == "strict"})
	require.Equal(t, p.Name, o.leader, "no failover")
	verdict := fmt.Sprintf("strict: 0 commits acknowledged during the cut (%d writes after healing resumed them)", s.okCount(p.Name, healAt))
	if e.mode == "sync" {
		verdict = fmt.Sprintf("/sync named %s alone %s after the cut, commits acknowledged again %s after it (%d during the cut): only the old primary may be promoted",
			p.Name, (aloneAt - cutAt).Round(time.Millisecond), (first - cutAt).Round(time.Millisecond), ackedInCut)
	}
	t.Logf("D6 %s: injected: every replication connection into primary %s reset and new ones refused (its Postgres ingress, etcd untouched) for %s; "+
		"verified: no replica promoted (leader key %s, revision %d throughout); %s; healed, the replicas stream again; no acknowledged write lost, no two writers; %s",
		e.mode, p.Name, hold, leader, rev, verdict, o.summary())
}

package failover_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
)

func TestValidateSwitchover(t *testing.T) {
	t.Parallel()
	healthy := []failover.Peer{primaryPeer("node1", pos), peer("node2", pos), peer("node3", pos)}
	withTags := func(name string, tags dcs.Tags) *dcs.Cluster {
		c := cluster()
		setMember(c, name, func(m *dcs.Member) { m.Data.Tags = tags })
		return c
	}
	type req = failover.SwitchoverRequest
	for _, tc := range []struct {
		name    string
		c       *dcs.Cluster
		cfg     dcs.DynamicConfig
		req     req
		peers   []failover.Peer
		err     error  // nil: valid
		message string // the error text contains this
	}{
		{name: "switchover to a healthy candidate", c: cluster(), req: req{Leader: "node1", Candidate: "node2"}, peers: healthy},
		{name: "switchover to any healthy member", c: cluster(), req: req{Leader: "node1"}, peers: healthy},
		{name: "failover to a healthy candidate, leader alive", c: cluster(), req: req{Candidate: "node2", Failover: true}, peers: healthy},
		{name: "failover to a candidate when there is no leader", c: unlocked(cluster()), req: req{Candidate: "node2", Failover: true}, peers: healthy[1:]},
		{name: "failover without a leader to a lagging candidate is accepted (the lag override)", c: func() *dcs.Cluster {
			c := unlocked(cluster())
			c.Status.Optime = pos + 10*mb
			return c
		}(), req: req{Candidate: "node2", Failover: true}, peers: []failover.Peer{peer("node2", pos), peer("node3", pos)}},
		{name: "failover with a leader to a lagging candidate is refused", c: cluster(), req: req{Candidate: "node2", Failover: true},
			peers: []failover.Peer{primaryPeer("node1", pos+3*mb), peer("node2", pos)}, err: failover.ErrCandidateLagging,
			message: "failover is not possible: candidate is lagging: node2 lagging 3145728 bytes"},
		{name: "scheduled switchover to a lagging candidate is accepted", c: cluster(),
			req: req{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(time.Hour)}, peers: []failover.Peer{primaryPeer("node1", pos+10*mb), peer("node2", pos)}},

		{name: "failover needs a candidate", c: cluster(), req: req{Failover: true}, err: failover.ErrCandidateRequired,
			message: "failover could be performed only to a specific candidate"},
		{name: "switchover needs a leader", c: cluster(), req: req{Candidate: "node2"}, err: failover.ErrLeaderRequired,
			message: "switchover could be performed only from a specific leader"},
		{name: "a failover cannot be scheduled", c: cluster(), req: req{Candidate: "node2", Failover: true, ScheduledAt: t0.Add(time.Hour)},
			err: failover.ErrCannotSchedule, message: "failover cannot be scheduled"},
		{name: "no scheduling in pause", c: cluster(), cfg: dcs.ParseDynamicConfig(map[string]any{"pause": true}),
			req: req{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(time.Hour)}, err: failover.ErrCannotSchedule},
		{name: "scheduled in the past", c: cluster(), req: req{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(-time.Minute)},
			err: failover.ErrScheduledInPast},
		{name: "pause needs a candidate", c: cluster(), cfg: dcs.ParseDynamicConfig(map[string]any{"pause": true}),
			req: req{Leader: "node1"}, err: failover.ErrCandidateRequired, message: "only to a specific candidate in a paused state"},
		{name: "candidate is the leader named", c: cluster(), req: req{Leader: "node1", Candidate: "node1"}, err: failover.ErrSameMember},
		{name: "failover to the current leader", c: cluster(), req: req{Candidate: "node1", Failover: true}, peers: healthy,
			err: failover.ErrSameMember, message: "node1 is already the leader"},
		{name: "leader name does not match", c: cluster(), req: req{Leader: "node3", Candidate: "node2"}, peers: healthy,
			err: failover.ErrLeaderMismatch, message: "leader name does not match: node3 is not the leader, node1 is"},
		{name: "switchover without a leader", c: unlocked(cluster()), req: req{Leader: "node1", Candidate: "node2"},
			err: failover.ErrLeaderMismatch, message: "the cluster has no leader"},
		{name: "unknown candidate", c: cluster(), req: req{Leader: "node1", Candidate: "node9"}, peers: healthy,
			err: failover.ErrUnknownMember, message: "switchover is not possible: candidate does not exist: node9"},
		{name: "nofailover candidate", c: withTags("node2", dcs.Tags{"nofailover": true}), req: req{Leader: "node1", Candidate: "node2"}, peers: healthy,
			err: failover.ErrCandidateNoFailover, message: "switchover is not possible: candidate is not allowed to promote (nofailover): node2"},
		{name: "failover_priority 0 candidate, even when scheduled", c: withTags("node2", dcs.Tags{"failover_priority": 0}),
			req: req{Leader: "node1", Candidate: "node2", ScheduledAt: t0.Add(time.Hour)}, err: failover.ErrCandidateNoFailover},
		{name: "candidate reports nofailover in its probe", c: cluster(), req: req{Leader: "node1", Candidate: "node2"},
			peers: []failover.Peer{primaryPeer("node1", pos), func() failover.Peer { p := peer("node2", pos); p.Tags = dcs.Tags{"nofailover": "on"}; return p }()},
			err:   failover.ErrCandidateNoFailover},
		{name: "unreachable candidate", c: cluster(), req: req{Leader: "node1", Candidate: "node2"}, peers: []failover.Peer{primaryPeer("node1", pos), deadPeer("node2")},
			err: failover.ErrCandidateUnhealthy, message: "candidate is not healthy: node2 not reachable: connection refused"},
		{name: "candidate not probed", c: cluster(), req: req{Leader: "node1", Candidate: "node2"},
			err: failover.ErrCandidateUnhealthy, message: "node2 not probed"},
		{name: "candidate whose watchdog failed", c: cluster(), req: req{Leader: "node1", Candidate: "node2"},
			peers: []failover.Peer{func() failover.Peer { p := peer("node2", pos); p.WatchdogFailed = true; return p }()},
			err:   failover.ErrCandidateUnhealthy, message: "not watchdog capable"},
		{name: "lagging candidate", c: cluster(), req: req{Leader: "node1", Candidate: "node2"},
			peers: []failover.Peer{primaryPeer("node1", pos+3*mb), peer("node2", pos)}, err: failover.ErrCandidateLagging,
			message: "switchover is not possible: candidate is lagging: node2 lagging 3145728 bytes behind 0/5300000 (node1's live position); maximum_lag_on_failover is 1048576"},
		{name: "candidate lagging behind /status", c: func() *dcs.Cluster {
			c := cluster()
			c.Status.Optime = pos + 2*mb
			return c
		}(), req: req{Leader: "node1", Candidate: "node2"}, peers: []failover.Peer{peer("node2", pos)},
			err: failover.ErrCandidateLagging, message: "the last leader position in /status"},
		{name: "candidate behind the cluster timeline", c: func() *dcs.Cluster {
			c := cluster()
			c.History = &dcs.History{Valid: true, Lines: []dcs.HistoryLine{{Timeline: 1, LSN: pos}}}
			return c
		}(), cfg: dcs.ParseDynamicConfig(map[string]any{"check_timeline": true}), req: req{Leader: "node1", Candidate: "node2"},
			peers: []failover.Peer{peer("node2", pos)}, err: failover.ErrCandidateTimeline, message: "on timeline 1, behind the cluster timeline 2"},
		{name: "nobody but the leader", c: func() *dcs.Cluster {
			c := cluster()
			c.Members = c.Members[:1]
			return c
		}(), req: req{Leader: "node1"}, err: failover.ErrNoMembers, message: "switchover is not possible: cluster does not have members except leader"},
		{name: "no good candidates", c: cluster(), req: req{Leader: "node1"},
			peers: []failover.Peer{primaryPeer("node1", pos+3*mb), peer("node2", pos), deadPeer("node3")}, err: failover.ErrNoGoodCandidates,
			message: "no good candidates have been found: node2: lagging 3145728 bytes"},
		{name: "no cluster view", c: nil, req: req{Leader: "node1"}, err: failover.ErrNoGoodCandidates},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if cfg.TTL == 0 {
				cfg = dcs.ParseDynamicConfig(nil)
			}
			err := failover.ValidateSwitchover(tc.c, cfg, tc.req, tc.peers, t0)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.Contains(t, err.Error(), tc.message)
		})
	}
}

func TestFailoverPossible(t *testing.T) {
	t.Parallel()
	in := probed(cluster(), primary("node1", pos+100), peer("node2", pos+100), peer("node3", pos))

	ok, why := failover.FailoverPossible(in, "", 0)
	require.True(t, ok, why)

	// During a graceful demote: has the candidate received the shutdown
	// checkpoint?
	ok, why = failover.FailoverPossible(in, "node3", pos+100)
	require.False(t, ok)
	require.Contains(t, why, "node3: has not received the shutdown checkpoint yet (0/5000000 < 0/5000064)")
	ok, _ = failover.FailoverPossible(in, "node2", pos+100)
	require.True(t, ok)

	ok, why = failover.FailoverPossible(in, "node9", 0)
	require.False(t, ok)
	require.Contains(t, why, "candidate does not exist: node9")

	in.Peers = nil
	ok, why = failover.FailoverPossible(in, "", 0)
	require.False(t, ok)
	require.Equal(t, "peers not probed", why)

	in.Cluster = nil
	ok, why = failover.FailoverPossible(in, "", 0)
	require.False(t, ok)
	require.Equal(t, "no cluster view", why)
}

func TestSwitchoverErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	all := []error{failover.ErrCandidateRequired, failover.ErrLeaderRequired, failover.ErrCannotSchedule, failover.ErrScheduledInPast,
		failover.ErrSameMember, failover.ErrLeaderMismatch, failover.ErrUnknownMember, failover.ErrNoMembers, failover.ErrCandidateNoFailover,
		failover.ErrCandidateUnhealthy, failover.ErrCandidateLagging, failover.ErrCandidateTimeline, failover.ErrNoGoodCandidates}
	for i, a := range all {
		for j, b := range all {
			require.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}

package failover

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgha/pgha/dcs"
)

// SwitchoverRequest is a POST /switchover or POST /failover request, parsed
// (SPEC 4.7).
type SwitchoverRequest struct {
	// Leader is the current leader the request names ("" for a failover).
	Leader string
	// Candidate is the member to promote ("member" in the /failover key),
	// "" for any healthy member (switchover only).
	Candidate string
	// ScheduledAt is when a scheduled switchover should happen, zero for
	// now.
	ScheduledAt time.Time
	// Failover is true for POST /failover. A failover that names a leader
	// is treated as a switchover.
	Failover bool
}

// Errors of ValidateSwitchover. Each comment gives the HTTP status Patroni
// answers with (SPEC 4.7); the REST API returns the error's text.
var (
	// ErrCandidateRequired: a failover must name a candidate (400). Also
	// returned in pause mode for a switchover without one.
	ErrCandidateRequired = errors.New("failover could be performed only to a specific candidate")
	// ErrLeaderRequired: a switchover must name the leader (400).
	ErrLeaderRequired = errors.New("switchover could be performed only from a specific leader")
	// ErrCannotSchedule: a failover, or any request in pause mode, cannot be
	// scheduled (400).
	ErrCannotSchedule = errors.New("cannot be scheduled")
	// ErrScheduledInPast: scheduled_at is in the past (422).
	ErrScheduledInPast = errors.New("cannot schedule switchover in the past")
	// ErrSameMember: the candidate is the leader (400).
	ErrSameMember = errors.New("switchover target and source are the same")
	// ErrLeaderMismatch: the request names a member that does not hold the
	// leader key (412).
	ErrLeaderMismatch = errors.New("leader name does not match")
	// ErrUnknownMember: the candidate is not a member of the cluster (412).
	ErrUnknownMember = errors.New("candidate does not exist")
	// ErrNoMembers: there is nobody but the leader (412).
	ErrNoMembers = errors.New("cluster does not have members except leader")
	// ErrCandidateNoFailover: the candidate is tagged nofailover (or
	// failover_priority 0) (412).
	ErrCandidateNoFailover = errors.New("candidate is not allowed to promote (nofailover)")
	// ErrCandidateUnhealthy: the candidate did not answer its probe, runs
	// as a primary, or its watchdog failed (412).
	ErrCandidateUnhealthy = errors.New("candidate is not healthy")
	// ErrCandidateLagging: the candidate is further than
	// maximum_lag_on_failover behind the leader (412).
	ErrCandidateLagging = errors.New("candidate is lagging")
	// ErrCandidateTimeline: with check_timeline, the candidate is behind the
	// cluster timeline (412).
	ErrCandidateTimeline = errors.New("candidate is behind the cluster timeline")
	// ErrCandidateNotSync: in synchronous mode, the candidate is not one of
	// the synchronous standbys /sync lists (412).
	ErrCandidateNotSync = errors.New("candidate is not a synchronous standby")
	// ErrNoGoodCandidates: no member could take over (412).
	ErrNoGoodCandidates = errors.New("no good candidates have been found")
)

// ValidateSwitchover checks an operator's switchover or failover request
// before it is written to /failover, and returns a clear error when it
// cannot succeed: an unknown, nofailover, unhealthy or lagging candidate, a
// leader that does not lead, nobody to switch over to. Errors wrap the
// sentinels above (test them with errors.Is).
//
// peers are fresh probes of the members (GET /patroni), including the
// leader if it can be probed: its xlog.location, with /status.optime, is the
// position a candidate's lag is measured from. The live checks (leader,
// candidate health, lag, timeline) are made only for an immediate request;
// a scheduled one is checked for shape and tags only, as its candidate may
// catch up by then (the leader checks again when it falls due). A failover
// when the cluster has no leader is not refused for lag: it is how an
// operator overrides maximum_lag_on_failover when failover is blocked by
// lag.
//
// In synchronous mode, while /sync lists synchronous standbys, an immediate
// switchover's candidate must be one of them ([ErrCandidateNotSync]); a
// failover without a leader may name any member (the operator's override).
func ValidateSwitchover(c *dcs.Cluster, cfg dcs.DynamicConfig, req SwitchoverRequest, peers []Peer, now time.Time) error {
	action := "switchover"
	if req.Failover && req.Leader == "" {
		action = "failover"
	}
	switch {
	case req.Failover && req.Candidate == "":
		return ErrCandidateRequired
	case !req.Failover && req.Leader == "":
		return ErrLeaderRequired
	}
	if !req.ScheduledAt.IsZero() {
		switch {
		case req.Failover:
			return fmt.Errorf("failover %w", ErrCannotSchedule)
		case cfg.Pause:
			return fmt.Errorf("switchover %w in the paused state", ErrCannotSchedule)
		case req.ScheduledAt.Before(now):
			return ErrScheduledInPast
		}
	}
	if cfg.Pause && req.Candidate == "" {
		return fmt.Errorf("%w: switchover is possible only to a specific candidate in a paused state", ErrCandidateRequired)
	}
	if req.Leader != "" && req.Leader == req.Candidate {
		return ErrSameMember
	}
	if c == nil {
		return fmt.Errorf("%s is not possible: %w: no cluster view", action, ErrNoGoodCandidates)
	}
	if req.Candidate != "" {
		if m, ok := c.Member(req.Candidate); ok && m.Data.Tags.NoFailover() {
			return fmt.Errorf("%s is not possible: %w: %s", action, ErrCandidateNoFailover, req.Candidate)
		}
	}
	if !req.ScheduledAt.IsZero() {
		return nil
	}

	leader := c.LeaderName()
	if req.Leader != "" && leader != req.Leader {
		if leader == "" {
			return fmt.Errorf("%w: %s is not the leader; the cluster has no leader", ErrLeaderMismatch, req.Leader)
		}
		return fmt.Errorf("%w: %s is not the leader, %s is", ErrLeaderMismatch, req.Leader, leader)
	}
	if req.Candidate != "" && req.Candidate == leader {
		return fmt.Errorf("%w: %s is already the leader", ErrSameMember, leader)
	}
	// Judge from the leader's point of view: its probed position is "mine".
	self := Local{Name: leader}
	for _, p := range peers {
		if p.Name == leader && leader != "" && p.Reachable && p.Err == "" {
			self.Running, self.InRecovery = true, p.InRecovery
			self.FlushLSN, self.ReceiveLSN, self.ReplayLSN = p.Location, p.ReceivedLocation, p.ReplayedLocation
		}
	}
	d := newDecider(Input{Cluster: c, Config: cfg, Peers: peers, Local: self, Now: now, DCSReachable: true})
	if d.peers == nil {
		d.peers = []Peer{}
	}
	ref, from := d.reference()
	if req.Candidate != "" {
		if _, ok := c.Member(req.Candidate); !ok {
			return fmt.Errorf("%s is not possible: %w: %s", action, ErrUnknownMember, req.Candidate)
		}
		// Without a leader the request is the operator's override of the
		// lag bound (the cluster may be blocked by lag): do not refuse it
		// for lag. With a leader, the leader would refuse a lagging
		// candidate, so say so now.
		var minLSN int64
		if leader == "" {
			minLSN = -1
		}
		if detail, kind := d.candidateProblem(req.Candidate, ref, from, minLSN); kind != nil {
			return fmt.Errorf("%s is not possible: %w: %s %s", action, kind, req.Candidate, detail)
		}
		return nil
	}
	if _, err := d.failoverPossible("", 0, leader); err != nil {
		return fmt.Errorf("%s is not possible: %w", action, err)
	}
	return nil
}

package failover

import (
	"fmt"
	"strings"

	"github.com/pgha/pgha/dcs"
)

// verdict is the result of judging whether this node may race.
type verdict struct {
	ok     bool
	reason string
	block  Block
	probe  *Decision
}

func yes(reason string) verdict { return verdict{ok: true, reason: reason} }
func no(reason string) verdict  { return verdict{reason: reason} }

// probeTargets lists the members to probe: every other member with an
// api_url, plus the last leader seen when its member key is gone (a former
// leader that still answers as a primary must stop the race).
func (d *decider) probeTargets() []ProbeTarget {
	var out []ProbeTarget
	seen := map[string]bool{}
	for _, m := range d.c.Members {
		if m.Name == "" || m.Name == d.me || m.Data.APIURL == "" || seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		out = append(out, ProbeTarget{Name: m.Name, APIURL: m.Data.APIURL})
	}
	if ll := d.mem.LastLeader; ll.Name != "" && ll.Name != d.me && ll.APIURL != "" && !seen[ll.Name] {
		out = append(out, ProbeTarget{Name: ll.Name, APIURL: ll.APIURL})
	}
	return out
}

// needPeers returns an ActionProbePeers decision when the peers have not
// been probed yet and there is someone to probe. With nobody to probe it
// records an empty result and returns nil.
func (d *decider) needPeers(why string) *Decision {
	if d.peers != nil {
		return nil
	}
	targets := d.probeTargets()
	if len(targets) == 0 {
		d.peers = []Peer{}
		return nil
	}
	return &Decision{Action: ActionProbePeers, Probe: targets, Reason: "probing peers: " + why}
}

func (d *decider) peer(name string) (Peer, bool) {
	for _, p := range d.peers {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// statusCurrent reports whether /status was written during the last leader
// tenure this node saw. A /status older than that tenure was written by an
// earlier leader: its optime belongs to a history the last leader may
// never have had, so it says nothing about what the cluster lost.
func (d *decider) statusCurrent() bool {
	lt := d.mem.LastLeader
	return !(lt.CreateRevision > 0 && d.c.Status.ModRevision > 0 && d.c.Status.ModRevision < lt.CreateRevision)
}

// reference is the position lag is measured against: the best position
// known to have existed. It is the largest of my live position, every
// reachable peer's live position, and /status.optime when /status is
// current. See "The lag rule" in the package doc.
func (d *decider) reference() (pos int64, from string) {
	pos, from = d.l.Position(), d.me+"'s live position"
	for _, p := range d.peers {
		if p.Name == d.me || !p.Reachable || p.Err != "" {
			continue
		}
		if pp := p.Position(); pp > pos {
			pos, from = pp, p.Name+"'s live position"
		}
	}
	if s := d.c.Status.Optime; s > pos && d.statusCurrent() {
		pos, from = s, "the last leader position in /status"
	}
	return pos, from
}

// lagging reports whether pos is more than maximum_lag_on_failover behind
// the reference position.
func (d *decider) lagging(pos int64) (lag, ref int64, from string, bad bool) {
	ref, from = d.reference()
	lag = ref - pos
	return lag, ref, from, lag > d.cfg.MaximumLagOnFailover
}

// timelineOK: with check_timeline, tl must not be behind the cluster
// timeline (an unknown timeline, 0, is behind).
func (d *decider) timelineOK(tl int64) bool {
	ctl := d.c.Timeline()
	return !d.cfg.CheckTimeline || ctl == 0 || tl >= ctl
}

// healthiest is Patroni's is_healthiest_node (SPEC 3.4) with the lag rule
// of this package.
func (d *decider) healthiest() verdict {
	if d.now.Before(d.mem.SkipRaceUntil) {
		d.wake(d.mem.SkipRaceUntil)
		return no("not racing: promote failed (pre_promote); backing off until " + fmtTime(d.mem.SkipRaceUntil))
	}
	if d.l.State == StateStarting {
		return no("not racing: PostgreSQL is starting")
	}
	if fs := d.c.Failsafe; d.cfg.FailsafeMode && fs != nil && len(fs.Members) > 0 {
		if _, listed := fs.Members[d.me]; !listed {
			return no("not racing: failsafe mode is on and I am not listed in /failsafe")
		}
	}
	if d.primaryish() {
		if d.syncGated() && !d.c.Sync.Matches(d.me) {
			return no(fmt.Sprintf("not racing: synchronous_mode is %s and /sync names %s, not me: a primary outside /sync may lack acknowledged commits", d.cfg.SynchronousMode, d.c.Sync.Leader))
		}
		if ctl := d.c.Timeline(); ctl > 0 && d.l.Timeline > 0 && d.l.Timeline < ctl {
			return no(fmt.Sprintf("my timeline %d is behind the cluster timeline %d: a stale former primary does not retake the lock", d.l.Timeline, ctl))
		}
		if lag, ref, from, bad := d.lagging(d.l.Position()); bad {
			return no(fmt.Sprintf("my position %s is %d bytes behind %s (%s); maximum_lag_on_failover is %d",
				fmtLSN(d.l.Position()), lag, fmtLSN(ref), from, d.cfg.MaximumLagOnFailover))
		}
		return yes("acquiring the leader lock: I am a running primary and the cluster has no leader")
	}
	if d.l.Tags.NoFailover() {
		return no("not racing: tagged nofailover")
	}
	exclude := ""
	if f := d.failoverRequest(); f != nil {
		if v, handled := d.manualFailoverNoLeader(f); handled {
			return v
		}
		exclude = f.Leader
	}
	if d.syncGated() && !d.c.Sync.Matches(d.me) {
		return verdict{reason: fmt.Sprintf("not racing: synchronous_mode is %s and I am not in /sync (leader %s, synchronous standbys %v): I may lack acknowledged commits",
			d.cfg.SynchronousMode, d.c.Sync.Leader, d.c.Sync.Standbys), block: BlockSyncMode}
	}
	if d.l.WatchdogFailed {
		return no("not racing: the watchdog is required but could not be activated")
	}
	return d.compare(exclude)
}

// manualFailoverNoLeader is Patroni's manual_failover_process_no_leader.
// handled is false when the request does not decide the race (its candidate
// is unhealthy or absent): the caller then races normally, with the lag
// bound, excluding the request's former leader.
//
// Only an operator's failover (a request naming no leader) exempts its
// candidate from maximum_lag_on_failover. A switchover's candidate keeps
// the bound: it normally has the leader's shutdown checkpoint and no lag at
// all, and when the leader died before the switchover (a scheduled one, say)
// the request is no licence to lose data. The other members wait for a
// healthy candidate, and race without it when it is past the bound.
func (d *decider) manualFailoverNoLeader(f *dcs.Failover) (verdict, bool) {
	override := f.Leader == ""
	if f.Candidate != "" {
		if f.Candidate == d.me {
			if p := d.needPeers("checking that no member still runs as a primary"); p != nil {
				return verdict{probe: p}, true
			}
			if v, alive := d.primaryAlive(); alive {
				return v, true
			}
			if override {
				return yes("manual failover: I am the candidate; acquiring the leader lock (maximum_lag_on_failover does not apply)"), true
			}
			if lag, ref, from, bad := d.lagging(d.l.Position()); bad {
				return no(fmt.Sprintf("not racing: I am the switchover candidate, but my position %s is %d bytes behind %s (%s); maximum_lag_on_failover is %d",
					fmtLSN(d.l.Position()), lag, fmtLSN(ref), from, d.cfg.MaximumLagOnFailover)), true
			}
			return yes("switchover: I am the candidate; acquiring the leader lock"), true
		}
		if _, exists := d.c.Member(f.Candidate); exists {
			if p := d.needPeers("checking the manual failover candidate " + f.Candidate); p != nil {
				return verdict{probe: p}, true
			}
			if p, ok := d.peer(f.Candidate); ok && p.usable() && p.InRecovery {
				if _, _, _, bad := d.lagging(p.Position()); override || !bad {
					return no("not racing: waiting for the manual failover candidate " + f.Candidate), true
				}
			}
		}
	}
	if f.Leader == d.me {
		probe, err := d.failoverPossible("", 0, f.Candidate)
		if probe != nil {
			return verdict{probe: probe}, true
		}
		if err == nil {
			return no("not racing: the switchover away from me can go to another member"), true
		}
		if lag, ref, from, bad := d.lagging(d.l.Position()); bad {
			return no(fmt.Sprintf("not racing: my position %s is %d bytes behind %s (%s); maximum_lag_on_failover is %d",
				fmtLSN(d.l.Position()), lag, fmtLSN(ref), from, d.cfg.MaximumLagOnFailover)), true
		}
		return yes("acquiring the leader lock: the switchover away from me found no healthy member"), true
	}
	return verdict{}, false
}

// compare ranks this node against the live peers (Patroni's
// _is_healthiest_node), measuring lag with the lag rule.
func (d *decider) compare(exclude string) verdict {
	if p := d.needPeers("ranking the members by their live WAL positions"); p != nil {
		return verdict{probe: p}
	}
	if v, alive := d.primaryAlive(); alive {
		return v
	}
	eligible := func(p Peer) bool {
		return p.Name != d.me && p.Name != exclude && p.usable() && p.InRecovery && d.timelineOK(p.Timeline) && d.syncEligible(p.Name)
	}
	myPos := d.l.Position()
	if !d.timelineOK(d.l.Timeline) {
		ctl := d.c.Timeline()
		for _, p := range d.peers {
			if eligible(p) {
				return no(fmt.Sprintf("not racing: my timeline %d is behind the cluster timeline %d (check_timeline); %s can take over", d.l.Timeline, ctl, p.Name))
			}
		}
		return verdict{block: BlockTimeline, reason: fmt.Sprintf("%s: no live member is on the cluster timeline %d (mine is %d; check_timeline is on)", BlockTimeline, ctl, d.l.Timeline)}
	}
	bound := d.cfg.MaximumLagOnFailover
	if lag, ref, from, bad := d.lagging(myPos); bad {
		bestName, bestPos := d.me, myPos
		for _, p := range d.peers {
			if eligible(p) && p.Position() > bestPos {
				bestName, bestPos = p.Name, p.Position()
			}
		}
		if ref-bestPos > bound {
			return verdict{block: BlockLag, reason: fmt.Sprintf("%s: the best live position %s (%s) is %d bytes behind %s (%s); maximum_lag_on_failover is %d. A manual failover naming a candidate overrides the bound",
				BlockLag, fmtLSN(bestPos), bestName, ref-bestPos, fmtLSN(ref), from, bound)}
		}
		return no(fmt.Sprintf("not racing: my position %s is %d bytes behind %s (%s); maximum_lag_on_failover is %d; %s can take over",
			fmtLSN(myPos), lag, fmtLSN(ref), from, bound, bestName))
	}
	myPrio := d.l.Tags.FailoverPriority()
	for _, p := range d.peers {
		if p.Name == d.me || p.Name == exclude || !p.usable() || !d.syncEligible(p.Name) {
			continue
		}
		pp := p.Position()
		if pp > myPos {
			return no(fmt.Sprintf("not racing: %s is ahead of me (%s > %s)", p.Name, fmtLSN(pp), fmtLSN(myPos)))
		}
		if pp == myPos && pp > 0 && p.Name != d.mem.LastLeader.Name {
			if pr := p.Tags.FailoverPriority(); pr > myPrio {
				return no(fmt.Sprintf("not racing: %s has the same position %s and a higher failover_priority (%d > %d)", p.Name, fmtLSN(pp), pr, myPrio))
			}
		}
	}
	return yes(fmt.Sprintf("acquiring the leader lock: I am the healthiest node (position %s)", fmtLSN(myPos)))
}

// primaryAlive: a reachable member that says it is a primary stops the
// race, whatever its tags (Patroni looks only at failover-capable members,
// and not at all for a manual failover's candidate).
func (d *decider) primaryAlive() (verdict, bool) {
	for _, p := range d.peers {
		if p.Name != d.me && p.Reachable && p.Err == "" && !p.InRecovery {
			return no(fmt.Sprintf("not racing: %s is still running as a primary", p.Name)), true
		}
	}
	return verdict{}, false
}

// failoverPossible is Patroni's is_failover_possible: whether some member
// other than me (and other than exclude) could take over. candidate
// restricts the search to one member. minLSN > 0 requires a candidate to
// have received at least that position (the shutdown checkpoint of a
// graceful demote) instead of applying the lag bound. It returns nil when a
// failover is possible, else an error wrapping ErrUnknownMember,
// ErrNoMembers or ErrNoGoodCandidates. A non-nil Decision is a request to
// probe the peers first.
func (d *decider) failoverPossible(candidate string, minLSN int64, exclude string) (*Decision, error) {
	if p := d.needPeers("checking whether a failover is possible"); p != nil {
		return p, ErrNoGoodCandidates
	}
	ref, from := d.reference()
	var problems []string
	found := false
	for _, m := range d.c.Members {
		if m.Name == "" || m.Name == d.me || m.Name == exclude || (candidate != "" && m.Name != candidate) {
			continue
		}
		found = true
		if m.Data.Tags.NoFailover() {
			problems = append(problems, m.Name+": not allowed to promote (nofailover)")
			continue
		}
		if m.Data.APIURL == "" {
			problems = append(problems, m.Name+": no api_url")
			continue
		}
		if detail, _ := d.candidateProblem(m.Name, ref, from, minLSN); detail != "" {
			problems = append(problems, m.Name+": "+detail)
			continue
		}
		return nil, nil
	}
	switch {
	case candidate != "" && !found:
		return nil, fmt.Errorf("%w: %s", ErrUnknownMember, candidate)
	case !found:
		return nil, ErrNoMembers
	}
	return nil, fmt.Errorf("%w: %s", ErrNoGoodCandidates, strings.Join(problems, "; "))
}

// candidateProblem says why the probed member name cannot take over, as a
// detail and a sentinel (for ValidateSwitchover); ("", nil) when it can.
// minLSN > 0 requires that position instead of the lag bound; minLSN < 0
// skips the lag check.
func (d *decider) candidateProblem(name string, ref int64, from string, minLSN int64) (detail string, kind error) {
	p, ok := d.peer(name)
	if !ok {
		return "not probed", ErrCandidateUnhealthy
	}
	if p.Tags.NoFailover() {
		return "not allowed to promote (nofailover)", ErrCandidateNoFailover
	}
	if lim := p.limitation(); lim != "" {
		return lim, ErrCandidateUnhealthy
	}
	if !p.InRecovery {
		return "running as a primary", ErrCandidateUnhealthy
	}
	if minLSN == 0 && d.syncGated() && len(d.c.Sync.Standbys) > 0 && !d.c.Sync.IsStandby(name) {
		return fmt.Sprintf("not a synchronous standby (synchronous_mode %s; /sync lists %v)", d.cfg.SynchronousMode, d.c.Sync.Standbys), ErrCandidateNotSync
	}
	pos := p.Position()
	switch {
	case minLSN < 0: // no lag check (an operator's failover without a leader)
	case minLSN > 0:
		if pos < minLSN {
			return fmt.Sprintf("has not received the shutdown checkpoint yet (%s < %s)", fmtLSN(pos), fmtLSN(minLSN)), ErrCandidateLagging
		}
	default:
		if lag := ref - pos; lag > d.cfg.MaximumLagOnFailover {
			return fmt.Sprintf("lagging %d bytes behind %s (%s); maximum_lag_on_failover is %d", lag, fmtLSN(ref), from, d.cfg.MaximumLagOnFailover), ErrCandidateLagging
		}
	}
	if !d.timelineOK(p.Timeline) {
		return fmt.Sprintf("on timeline %d, behind the cluster timeline %d (check_timeline)", p.Timeline, d.c.Timeline()), ErrCandidateTimeline
	}
	return "", nil
}

// FailoverPossible reports whether a member other than in.Local.Name could
// take over now (Patroni's is_failover_possible), and if not, why. The
// leader uses it before a graceful demote: with candidate "" any member
// will do, else only that one; minLSN > 0 requires the candidate to have
// received that position (the shutdown checkpoint, so the leader key can be
// released early) instead of applying maximum_lag_on_failover.
//
// It needs in.Peers (the probe results of the other members); with Peers
// nil it reports false.
func FailoverPossible(in Input, candidate string, minLSN int64) (bool, string) {
	if in.Cluster == nil {
		return false, "no cluster view"
	}
	if in.Peers == nil {
		return false, "peers not probed"
	}
	d := newDecider(in)
	d.rememberLeader()
	if _, err := d.failoverPossible(candidate, minLSN, ""); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// syncGated reports whether synchronous mode restricts who may take over
// automatically: the mode is on (or quorum, which pgha runs as priority
// mode) and /sync names a leader. Only that leader and the standbys /sync
// lists hold every acknowledged commit (see package replication). With
// /sync absent or empty, replication has been asynchronous so far and the
// usual race applies, as in Patroni.
func (d *decider) syncGated() bool {
	m := d.cfg.SynchronousMode
	return m != "" && m != dcs.SyncOff && !d.c.Sync.IsEmpty()
}

// syncEligible reports whether member name may take over automatically
// under synchronous mode (always true when it does not apply).
func (d *decider) syncEligible(name string) bool { return !d.syncGated() || d.c.Sync.Matches(name) }

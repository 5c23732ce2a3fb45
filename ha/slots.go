package ha

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/replication"
)

// SlotPostgres is what replication slot management and the replication
// monitor need from the instance, beyond [Postgres]. *pg.Instance
// implements it. With a Postgres that does not, the node manages no slots,
// points replicas at no slot, and reports no replication view.
type SlotPostgres interface {
	// WithConn runs fn on a superuser connection to the running server.
	WithConn(ctx context.Context, fn func(ctx context.Context, conn *pgx.Conn) error) error
	// SetStandbySlot sets the primary_slot_name later ConfigureStandby
	// calls write ("" for none).
	SetStandbySlot(name string) error
}

var _ SlotPostgres = (*pg.Instance)(nil)

// DefaultSlotWALWarning is Config.SlotWALWarning's default: 1 GiB.
const DefaultSlotWALWarning = 1 << 30

// slotRewarn is how often a slot that stays over the threshold is warned
// about again.
const slotRewarn = 10 * time.Minute

// ReplicationView is what the node last observed of replication, at the
// end of a loop cycle: the monitor's snapshot (positions, standbys with
// their lags, the WAL receiver) and the server's replication slots with
// the WAL each holds back.
type ReplicationView struct {
	// Taken is when the view was taken (local clock).
	Taken time.Time
	// Snapshot is replication.Observe's view of the server.
	Snapshot replication.Snapshot
	// Slots are the server's replication slots (pg_replication_slots).
	Slots []pg.ReplicationSlot
	// Threshold is the WAL a slot may hold back before the node warns
	// (bytes; <= 0: no warning).
	Threshold int64
	// OverThreshold lists the slots holding back more WAL than Threshold.
	OverThreshold []string
	// Problems are the slot configuration problems found (bad permanent
	// slots, logical permanent slots, colliding member slot names).
	Problems []string
}

// slotState is the loop's slot management state.
type slotState struct {
	retention replication.Retention
	// leading is true once the publication was computed in this tenure.
	leading bool
	// published is what the leader publishes in /status besides the
	// optime; nil until computed in this tenure.
	published *dcs.Status
	// standbySlot is the primary_slot_name last handed to SetStandbySlot.
	standbySlot string
	slotSet     bool
	problems    string
	over        map[string]time.Time
	view        atomic.Pointer[ReplicationView]
}

// Replication returns the node's last replication view (taken each loop
// cycle while Postgres runs), nil when there is none: Postgres not
// running, or a Postgres that does not implement SlotPostgres.
func (n *Node) Replication() *ReplicationView { return n.slots.view.Load() }

// standbySlotName is the primary_slot_name this node's replicas use: its
// slot name while use_slots is on (and it streams), else none.
func (n *Node) standbySlotName() string {
	if n.dyn.UseSlots && !n.cfg.Tags.Bool("nostream") {
		return pg.SlotName(n.cfg.Name)
	}
	return ""
}

// prepareSlots is the part of the replication round that must precede the
// decision's execution: primary_slot_name follows use_slots, so a replica
// started or re-pointed in this cycle already uses its slot. No I/O.
func (n *Node) prepareSlots() {
	sp, ok := n.pg.(SlotPostgres)
	if !ok {
		return
	}
	st := &n.slots
	want := n.standbySlotName()
	if !st.slotSet || want != st.standbySlot {
		if err := sp.SetStandbySlot(want); err != nil {
			n.log.Error("setting primary_slot_name", "slot", want, "error", err)
		} else {
			st.standbySlot, st.slotSet = want, true
		}
	}
}

// syncSlots is the replication round of a cycle, after the decision was
// carried out (so it never delays a failover): it observes replication,
// brings the server's physical slots to the desired set (SPEC 8.2: create,
// drop, advance), computes what the leader publishes in /status on its next
// round, warns about slots that hold back too much WAL, and re-points a
// steady replica whose WAL receiver uses another slot than it should.
func (n *Node) syncSlots(ctx context.Context, c *dcs.Cluster, d failover.Decision) {
	sp, ok := n.pg.(SlotPostgres)
	if !ok {
		return
	}
	cfg := n.dyn
	st := &n.slots
	leading := n.isLeading() && c != nil && c.LeaderName() == n.cfg.Name
	if !leading {
		st.leading, st.published = false, nil
	}
	if _, running := n.pg.Running(); !running {
		st.view.Store(nil)
		return
	}
	if n.async != failover.ActionNone || n.pgState != failover.StateRunning {
		return
	}
	version := n.observed.ServerVersion
	if version == 0 {
		version = n.pg.Version() * 10000
	}
	threshold := n.cfg.SlotWALWarning
	if threshold == 0 {
		threshold = DefaultSlotWALWarning
	}
	view := &ReplicationView{Taken: n.clock.Now(), Threshold: threshold}
	err := sp.WithConn(ctx, func(ctx context.Context, conn *pgx.Conn) error {
		snap, err := replication.Observe(ctx, conn)
		if err != nil {
			return err
		}
		view.Snapshot = snap
		slots, err := pg.ListSlots(ctx, conn)
		if err != nil {
			return err
		}
		if cfg.UseSlots && c != nil && c.Config != nil {
			role := dcs.RoleReplica
			if !snap.InRecovery {
				role = dcs.RolePrimary
			}
			cs := c
			if p := st.published; leading && p != nil && len(p.RetainSlots) > 0 {
				// The leader's own retention is ahead of /status by a
				// round: a member that left right after its slot was
				// created is retained here too.
				cc := *c
				cc.Status.RetainSlots = union(c.Status.RetainSlots, p.RetainSlots)
				cs = &cc
			}
			desired := replication.DesiredSlots(replication.SlotsInput{Cluster: cs, Name: n.cfg.Name, Role: role,
				Tags: n.cfg.Tags, Config: cfg, ServerVersion: version})
			view.Problems = desired.Problems
			if p := strings.Join(desired.Problems, "; "); p != st.problems {
				if p != "" {
					n.log.Error("replication slot configuration", "problems", p)
				}
				st.problems = p
			}
			plan := replication.PlanInput{Desired: desired, Existing: slots, Paused: cfg.Pause, IgnoreSlots: cfg.IgnoreSlots,
				ServerVersion: version,
				CleanXmin:     c.IsLocked() && (c.LeaderName() != n.cfg.Name || !snap.InRecovery)}
			if snap.InRecovery {
				plan.MaxLSN = snap.ReplayLSN
			}
			if acts := replication.PlanSlots(plan); len(acts) > 0 {
				n.applySlotActions(ctx, conn, acts)
				if slots, err = pg.ListSlots(ctx, conn); err != nil {
					return err
				}
			}
			if leading && !snap.InRecovery {
				now := n.clock.Now()
				if !st.leading {
					st.retention.Reset(c.Status.RetainSlots, now)
					st.leading = true
				}
				pub := replication.PublishedSlots(desired, slots, n.cfg.Name, snap.FlushLSN, cfg, version)
				retain := st.retention.Update(c, n.cfg.Name, pub, cfg.Slots, cfg.MemberSlotsTTL, now)
				st.published = &dcs.Status{Slots: pub, RetainSlots: retain}
			}
		} else if c != nil && c.Config != nil {
			if acts := replication.PlanSlotsDisabled(c, slots, cfg.Pause, cfg.IgnoreSlots); len(acts) > 0 {
				n.applySlotActions(ctx, conn, acts)
				if slots, err = pg.ListSlots(ctx, conn); err != nil {
					return err
				}
			}
			if leading && !snap.InRecovery {
				st.leading, st.published = true, &dcs.Status{}
			}
		}
		view.Slots = slots
		return nil
	})
	if err != nil {
		n.log.Warn("replication slots", "error", err)
		return
	}
	n.checkSlotWAL(view)
	st.view.Store(view)
	if d.Action == failover.ActionNone {
		n.repointToSlot(ctx, c, view.Snapshot, n.standbySlotName())
	}
}

// repointToSlot rewrites the standby settings of a replica that streams
// through another slot than the one it should use (use_slots was turned on
// or off while it ran): its slot on the upstream would otherwise hold WAL
// that nobody consumes. The WAL receiver reconnects with the new setting.
func (n *Node) repointToSlot(ctx context.Context, c *dcs.Cluster, snap replication.Snapshot, want string) {
	r := snap.Receiver
	if !snap.InRecovery || r == nil || r.Status != "streaming" || r.SlotName == want || c == nil {
		return
	}
	upstream := n.memberAt(c, r.SenderHost, r.SenderPort)
	if upstream == "" {
		return
	}
	up, err := upstreamOf(c, upstream)
	if err != nil {
		return
	}
	n.log.Info("re-pointing the replica: its primary_slot_name changes", "upstream", upstream, "slot", want, "was", r.SlotName)
	if err := n.pg.ConfigureStandby(ctx, up); err != nil {
		n.log.Warn("re-pointing the replica to change its primary_slot_name", "error", err)
	}
}

// applySlotActions carries out the plan; a failed step is logged and the
// others still run.
func (n *Node) applySlotActions(ctx context.Context, conn *pgx.Conn, acts []replication.SlotAction) {
	for _, a := range acts {
		switch a.Kind {
		case replication.ActionDrop:
			dropped, active, err := pg.DropSlot(ctx, conn, a.Slot)
			switch {
			case err != nil:
				n.log.Error("dropping replication slot", "slot", a.Slot, "reason", a.Reason, "error", err)
			case dropped:
				n.log.Info("dropped replication slot", "slot", a.Slot, "reason", a.Reason)
			case active:
				n.log.Warn("cannot drop replication slot: it is active", "slot", a.Slot, "reason", a.Reason)
			}
		case replication.ActionCreate:
			if created, err := pg.CreatePhysicalSlot(ctx, conn, a.Slot); err != nil {
				n.log.Error("creating replication slot", "slot", a.Slot, "reason", a.Reason, "error", err)
			} else if created {
				n.log.Info("created replication slot", "slot", a.Slot, "reason", a.Reason)
			}
		case replication.ActionAdvance:
			if end, err := pg.AdvanceSlot(ctx, conn, a.Slot, a.LSN); err != nil {
				n.log.Warn("advancing replication slot", "slot", a.Slot, "to", a.LSN.String(), "error", err)
			} else {
				n.log.Debug("advanced replication slot", "slot", a.Slot, "to", end.String())
			}
		}
	}
}

// checkSlotWAL warns when a slot holds back more WAL than the threshold
// (once when it crosses, then every slotRewarn while it stays over) and
// notes when it is back under.
func (n *Node) checkSlotWAL(view *ReplicationView) {
	st := &n.slots
	now := n.clock.Now()
	over := map[string]bool{}
	for _, s := range view.Slots {
		if view.Threshold <= 0 || s.RetainedBytes <= view.Threshold {
			continue
		}
		over[s.Name] = true
		view.OverThreshold = append(view.OverThreshold, s.Name)
		if last, ok := st.over[s.Name]; ok && now.Sub(last) < slotRewarn {
			continue
		}
		if st.over == nil {
			st.over = map[string]time.Time{}
		}
		st.over[s.Name] = now
		args := []any{"slot", s.Name, "retained_bytes", s.RetainedBytes, "threshold_bytes", view.Threshold,
			"active", s.Active, "wal_status", s.WALStatus}
		if s.SafeWALSize != nil {
			args = append(args, "safe_wal_size", *s.SafeWALSize)
		}
		n.log.Warn("replication slot holds back more WAL than the warning threshold; the disk may fill up (is its standby gone? drop the slot, or set max_slot_wal_keep_size)", args...)
	}
	for name := range st.over {
		if !over[name] {
			delete(st.over, name)
			n.log.Info("replication slot is back under the WAL warning threshold", "slot", name)
		}
	}
}

// union returns the sorted union of two name lists.
func union(a, b []string) []string {
	out := append(append([]string(nil), a...), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// releaseStatus is the /status a leader writes as it releases the key
// (shutdown, switchover): the final optime with the slots and
// retain_slots it publishes, so that the others keep its slot (and those
// of absent members) for member_slots_ttl instead of dropping them at once.
func (n *Node) releaseStatus(optime int64) *dcs.Status {
	s, _ := n.slotStatus(optime)
	return &s
}

// slotStatus is the /status value the leader writes with optime pos (its
// flush position, also its own slot's published position), and
// a key that changes whenever the value does (pos itself when it carries
// no slots). Until this tenure's publication is computed, the slots and
// retain_slots already in /status are carried over, so a new leader never
// publishes an empty retain_slots that would let the others drop the slots
// of absent members early.
func (n *Node) slotStatus(pos int64) (dcs.Status, int64) {
	s := dcs.Status{Optime: pos}
	if p := n.slots.published; p != nil {
		s.Slots, s.RetainSlots = p.Slots, p.RetainSlots
		// The publication was computed a round ago; its own slot is at
		// the position published now.
		if own := pg.SlotName(n.cfg.Name); pos > 0 && s.Slots[own] != 0 && s.Slots[own] != pos {
			m := make(map[string]int64, len(s.Slots))
			for k, v := range s.Slots {
				m[k] = v
			}
			m[own] = pos
			s.Slots = m
		}
	} else if c := n.lastCluster; c != nil && n.dyn.UseSlots {
		s.Slots, s.RetainSlots = c.Status.Slots, c.Status.RetainSlots
	}
	if len(s.Slots) == 0 && len(s.RetainSlots) == 0 {
		s.Slots, s.RetainSlots = nil, nil
		return s, pos
	}
	h := fnv.New64a()
	_, _ = h.Write(dcs.EncodeStatus(s))
	return s, -int64(h.Sum64() >> 1) // negative: never equal to a plain position
}

// slotCollector exports the replication view: the WAL each slot holds back,
// how many slots are over the warning threshold, and each standby's lag.
type slotCollector struct {
	n                               *Node
	retained, over, threshold       *prometheus.Desc
	lagBytes, lagSeconds, slotCount *prometheus.Desc
}

func newSlotCollector(n *Node) *slotCollector {
	labels := prometheus.Labels{"scope": n.cfg.Scope, "name": n.cfg.Name}
	return &slotCollector{
		n: n,
		retained: prometheus.NewDesc("pgha_replication_slot_retained_wal_bytes",
			"WAL held back by the replication slot, in bytes (from its restart_lsn to the current position).", []string{"slot"}, labels),
		over: prometheus.NewDesc("pgha_replication_slots_over_wal_threshold",
			"Number of replication slots holding back more WAL than the warning threshold.", nil, labels),
		threshold: prometheus.NewDesc("pgha_replication_slot_wal_threshold_bytes",
			"WAL a replication slot may hold back before the node warns, in bytes (0: no warning).", nil, labels),
		slotCount: prometheus.NewDesc("pgha_replication_slots",
			"Number of replication slots on this node.", nil, labels),
		lagBytes: prometheus.NewDesc("pgha_replication_standby_replay_lag_bytes",
			"How far the standby's replay is behind this node's position, in bytes.", []string{"standby"}, labels),
		lagSeconds: prometheus.NewDesc("pgha_replication_standby_replay_lag_seconds",
			"PostgreSQL's measured replay lag of the standby (pg_stat_replication.replay_lag), in seconds.", []string{"standby"}, labels),
	}
}

// Describe sends the descriptors of the replication metrics.
func (c *slotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.retained, c.over, c.threshold, c.slotCount, c.lagBytes, c.lagSeconds} {
		ch <- d
	}
}

// Collect reports the last replication view.
func (c *slotCollector) Collect(ch chan<- prometheus.Metric) {
	v := c.n.Replication()
	if v == nil {
		v = &ReplicationView{}
	}
	ch <- prometheus.MustNewConstMetric(c.over, prometheus.GaugeValue, float64(len(v.OverThreshold)))
	ch <- prometheus.MustNewConstMetric(c.threshold, prometheus.GaugeValue, float64(max(v.Threshold, 0)))
	ch <- prometheus.MustNewConstMetric(c.slotCount, prometheus.GaugeValue, float64(len(v.Slots)))
	for _, s := range v.Slots {
		ch <- prometheus.MustNewConstMetric(c.retained, prometheus.GaugeValue, float64(s.RetainedBytes), s.Name)
	}
	seen := map[string]bool{}
	for _, s := range v.Snapshot.Standbys {
		if seen[s.Name] || s.ReplayLag < 0 {
			continue // two senders with one name: report the first
		}
		seen[s.Name] = true
		ch <- prometheus.MustNewConstMetric(c.lagBytes, prometheus.GaugeValue, float64(s.ReplayLag), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, s.ReplayDelay.Seconds(), s.Name)
	}
}

// String renders the view for logs and debugging.
func (v *ReplicationView) String() string {
	if v == nil {
		return "no replication view"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "position %s", v.Snapshot.Position())
	for _, s := range v.Snapshot.Standbys {
		fmt.Fprintf(&b, "; standby %s %s %s replay lag %d B", s.Name, s.State, s.SyncState, s.ReplayLag)
	}
	for _, s := range v.Slots {
		fmt.Fprintf(&b, "; slot %s active=%v retains %d B", s.Name, s.Active, s.RetainedBytes)
	}
	return b.String()
}

package replication_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/replication"
)

const pg15 = 150000

type mem struct {
	name string
	tags dcs.Tags
	pos  int64
}

func snapshot(leader string, status dcs.Status, ms ...mem) *dcs.Cluster {
	c := &dcs.Cluster{Status: status}
	if leader != "" {
		c.Leader = &dcs.Leader{Name: leader}
	}
	for _, m := range ms {
		p := m.pos
		c.Members = append(c.Members, dcs.Member{Name: m.name, Data: dcs.MemberData{Tags: m.tags, XLogLocation: &p}})
	}
	return c
}

func dyn(extra map[string]any) dcs.DynamicConfig {
	return dcs.ParseDynamicConfig(extra)
}

// short renders a desired set as name -> flags for compact expectations:
// A expected active, P permanent, R retained, then @lsn when known.
func short(d replication.Desired) map[string]string {
	out := map[string]string{}
	for n, s := range d.Slots {
		f := ""
		if s.ExpectedActive {
			f += "A"
		}
		if s.Permanent {
			f += "P"
		}
		if s.Retained {
			f += "R"
		}
		if s.LSN != 0 {
			f += "@" + pg.LSN(s.LSN).String()
		}
		out[n] = f
		if s.Type != replication.SlotPhysical {
			out[n] += "!" + s.Type
		}
	}
	return out
}

func TestDesiredSlots(t *testing.T) {
	three := []mem{{name: "node1", pos: 300}, {name: "node-2", pos: 200}, {name: "node3", pos: 100}}
	published := dcs.Status{Optime: 300, Slots: map[string]int64{"node1": 300, "node_2": 250, "node3": 90, "perm": 80}}
	for _, tc := range []struct {
		name     string
		c        *dcs.Cluster
		me, role string
		tags     dcs.Tags
		cfg      map[string]any
		version  int
		want     map[string]string
		problems []string
	}{
		{name: "use_slots off: nothing", c: snapshot("node1", published, three...), me: "node1", role: dcs.RolePrimary,
			cfg: map[string]any{"postgresql": map[string]any{"use_slots": false}}, version: pg15, want: map[string]string{}},
		{name: "primary keeps a slot per member, expected active, no advance target needed", c: snapshot("node1", published, three...),
			me: "node1", role: dcs.RolePrimary, version: pg15,
			want: map[string]string{"node_2": "A@0/FA", "node3": "A@0/5A"}},
		{name: "replica keeps slots for the others (retention), inactive, advanced to /status.slots", c: snapshot("node1", published, three...),
			me: "node-2", role: dcs.RoleReplica, version: pg15,
			want: map[string]string{"node1": "@0/12C", "node3": "@0/5A"}},
		{name: "member_slots_ttl 0: a replica keeps only its cascades", c: snapshot("node1", published,
			mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3", tags: dcs.Tags{"replicatefrom": "node-2"}, pos: 95}),
			me: "node-2", role: dcs.RoleReplica, cfg: map[string]any{"member_slots_ttl": 0}, version: pg15,
			want: map[string]string{"node3": "A@0/5F"}},
		{name: "member_slots_ttl 0: the primary skips cascades of existing members", c: snapshot("node1", published,
			mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3", tags: dcs.Tags{"replicatefrom": "node-2"}}, mem{name: "node4", tags: dcs.Tags{"replicatefrom": "gone"}}),
			me: "node1", role: dcs.RolePrimary, cfg: map[string]any{"member_slots_ttl": 0}, version: pg15,
			want: map[string]string{"node_2": "A@0/FA", "node4": "A"}},
		{name: "PostgreSQL 10: no retention, as with member_slots_ttl 0", c: snapshot("node1", published, three...),
			me: "node-2", role: dcs.RoleReplica, version: 100000, want: map[string]string{}},
		{name: "cascading member: primary's slot inactive, advanced to the member's own position", c: snapshot("node1", published,
			mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3", tags: dcs.Tags{"replicatefrom": "node-2"}, pos: 95}),
			me: "node1", role: dcs.RolePrimary, version: pg15,
			want: map[string]string{"node_2": "A@0/FA", "node3": "@0/5F"}},
		{name: "cascade parent expects its cascade active", c: snapshot("node1", published,
			mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3", tags: dcs.Tags{"replicatefrom": "node-2"}, pos: 95}),
			me: "node-2", role: dcs.RoleReplica, version: pg15,
			want: map[string]string{"node1": "@0/12C", "node3": "A@0/5F"}},
		{name: "nostream member: no slot anywhere", c: snapshot("node1", published,
			mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3", tags: dcs.Tags{"nostream": true}}),
			me: "node1", role: dcs.RolePrimary, version: pg15, want: map[string]string{"node_2": "A@0/FA"}},
		{name: "nofailover node keeps only the slots of members replicating from it, and no permanent or retained ones",
			c: snapshot("node1", dcs.Status{RetainSlots: []string{"old"}},
				mem{name: "node1"}, mem{name: "node-2", tags: dcs.Tags{"nofailover": true}}, mem{name: "node3", tags: dcs.Tags{"replicatefrom": "node-2"}, pos: 7}),
			me: "node-2", role: dcs.RoleReplica, tags: dcs.Tags{"nofailover": true}, cfg: map[string]any{"slots": map[string]any{"perm": nil}},
			version: pg15, want: map[string]string{"node3": "A@0/7"}},
		{name: "retained slots of absent members are kept (not my own)", c: snapshot("node1",
			dcs.Status{Slots: map[string]int64{"node1": 300}, RetainSlots: []string{"gone", "node1", "node_2", "Bad-Name"}}, mem{name: "node1"}, mem{name: "node-2"}),
			me: "node-2", role: dcs.RoleReplica, version: pg15,
			want: map[string]string{"node1": "@0/12C", "gone": "R"}},
		{name: "permanent slots: physical on the primary (expected active), logical and bad names reported",
			c: snapshot("node1", published, three...), me: "node1", role: dcs.RolePrimary, version: pg15,
			cfg: map[string]any{"slots": map[string]any{
				"perm": map[string]any{"type": "physical"}, "perm2": nil, "node1": nil, "node3": map[string]any{},
				"Bad": nil, "logi": map[string]any{"database": "postgres", "plugin": "pgoutput"},
				"half": map[string]any{"type": "logical"}, "odd": "x", "stby": map[string]any{"cluster_type": "standby"}}},
			want: map[string]string{"node_2": "A@0/FA", "node3": "A@0/5A", "perm": "AP@0/50", "perm2": "AP"},
			problems: []string{
				`permanent slot "Bad": invalid name (only [a-z0-9_], at most 63 characters)`,
				`permanent slot "half": a logical slot needs database and plugin`,
				`permanent slot "logi": logical permanent slots are not supported by pgha yet; not created`,
				`permanent slot "odd": bad value x (want an object)`,
			}},
		{name: "permanent slots on a replica are inactive and advanced to the published position",
			c: snapshot("node1", published, three...), me: "node3", role: dcs.RoleReplica, version: pg15,
			cfg:  map[string]any{"permanent_slots": map[string]any{"perm": nil}},
			want: map[string]string{"node1": "@0/12C", "node_2": "@0/FA", "perm": "P@0/50"}},
		{name: "PostgreSQL 10 replica: no permanent slots", c: snapshot("node1", published, three...), me: "node3", role: dcs.RoleReplica,
			version: 100000, cfg: map[string]any{"slots": map[string]any{"perm": nil}}, want: map[string]string{}},
		{name: "colliding member slot names are reported", c: snapshot("node1", dcs.Status{}, mem{name: "node1"}, mem{name: "a-b"}, mem{name: "a.b"}),
			me: "node1", role: dcs.RolePrimary, version: pg15, want: map[string]string{"a_b": "A"},
			problems: []string{`members [a-b a.b] share the replication slot name "a_b"`}},
		{name: "no snapshot: nothing", me: "node1", role: dcs.RolePrimary, version: pg15, want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := replication.DesiredSlots(replication.SlotsInput{Cluster: tc.c, Name: tc.me, Role: tc.role, Tags: tc.tags,
				Config: dyn(tc.cfg), ServerVersion: tc.version})
			assert.Equal(t, tc.want, short(d))
			assert.Equal(t, tc.problems, d.Problems)
		})
	}
}

func slot(name string, restart pg.LSN, opts ...func(*pg.ReplicationSlot)) pg.ReplicationSlot {
	s := pg.ReplicationSlot{Name: name, Type: "physical", RestartLSN: restart, WALStatus: "reserved"}
	for _, o := range opts {
		o(&s)
	}
	return s
}

var (
	active   = func(s *pg.ReplicationSlot) { s.Active = true }
	xmin     = func(s *pg.ReplicationSlot) { s.HasXmin = true }
	lost     = func(s *pg.ReplicationSlot) { s.WALStatus = "lost" }
	logical  = func(s *pg.ReplicationSlot) { s.Type, s.Database, s.Plugin = "logical", "app", "pgoutput" }
	temp     = func(s *pg.ReplicationSlot) { s.Temporary = true }
	desired1 = replication.Desired{Slots: map[string]replication.DesiredSlot{
		"a":    {Name: "a", Type: "physical", Member: "a", ExpectedActive: true},
		"b":    {Name: "b", Type: "physical", Member: "b", LSN: 500},
		"perm": {Name: "perm", Type: "physical", Permanent: true, LSN: 300},
	}}
)

func TestPlanSlots(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   replication.PlanInput
		want []string
	}{
		{name: "fresh node: create all", in: replication.PlanInput{Desired: desired1, ServerVersion: pg15},
			want: []string{"create a (member a)", "create b (member b)", "create perm (permanent)"}},
		{name: "in place: advance inactive ones that lag, leave active and caught-up ones",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15,
				Existing: []pg.ReplicationSlot{slot("a", 100), slot("b", 400), slot("perm", 300)}},
			want: []string{"advance b to 0/1F4"}},
		{name: "advance capped at the replica's replay position",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15, MaxLSN: 450,
				Existing: []pg.ReplicationSlot{slot("a", 100), slot("b", 400), slot("perm", 100)}},
			want: []string{"advance b to 0/1C2", "advance perm to 0/12C"}},
		{name: "no advance: active, holding xmin, or PostgreSQL 10",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15,
				Existing: []pg.ReplicationSlot{slot("a", 100), slot("b", 400, active), slot("perm", 100, xmin)}},
			want: nil},
		{name: "PostgreSQL 10: create only",
			in: replication.PlanInput{Desired: desired1, ServerVersion: 100000,
				Existing: []pg.ReplicationSlot{slot("b", 0), slot("perm", 1, xmin)}},
			want: []string{"create a (member a)"}},
		{name: "unknown slots dropped unless ignored, temporary or paused",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15,
				IgnoreSlots: []any{map[string]any{"name": "keepme"}, map[string]any{"type": "logical", "plugin": "wal2json"}, "junk"},
				Existing: []pg.ReplicationSlot{slot("a", 1), slot("b", 500), slot("perm", 300), slot("gone", 5), slot("keepme", 5),
					slot("tmp", 5, temp), slot("dec", 5, logical), slot("w2j", 5, logical, func(s *pg.ReplicationSlot) { s.Plugin = "wal2json" })}},
			want: []string{"drop dec (not a slot of this cluster)", "drop gone (not a slot of this cluster)"}},
		{name: "paused: nothing dropped for being unknown or lost, still created",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15, Paused: true,
				Existing: []pg.ReplicationSlot{slot("gone", 5), slot("b", 5, lost), slot("perm", 300)}},
			want: []string{"create a (member a)"}},
		{name: "lost, wrong type, no restart_lsn, stray xmin: dropped (recreated next round)",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15, CleanXmin: true,
				Existing: []pg.ReplicationSlot{slot("a", 100, lost), slot("b", 0), slot("perm", 10, logical)}},
			want: []string{"drop a (its WAL is lost; recreating it)", "drop b (it reserves no WAL (not created by pgha); recreating it)", "drop perm (it is logical, want physical)"}},
		{name: "stray xmin dropped only with CleanXmin and only when not expected active",
			in: replication.PlanInput{Desired: desired1, ServerVersion: pg15, CleanXmin: true,
				Existing: []pg.ReplicationSlot{slot("a", 100, xmin), slot("b", 100, xmin), slot("perm", 300)}},
			want: []string{"drop b (not expected to be active but holds an xmin)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range replication.PlanSlots(tc.in) {
				got = append(got, a.String())
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestPublishedSlots(t *testing.T) {
	existing := []pg.ReplicationSlot{slot("a", 100, active), slot("b", 200), slot("perm", 300), slot("stray", 5),
		slot("nolsn", 0), slot("dec", 9, logical)}
	d := replication.Desired{Slots: map[string]replication.DesiredSlot{
		"a": {Name: "a", Type: "physical", Member: "a"}, "b": {Name: "b", Type: "physical", Member: "b"},
		"perm": {Name: "perm", Type: "physical", Permanent: true}, "nolsn": {Name: "nolsn", Type: "physical"},
	}}
	cfg := dyn(map[string]any{"slots": map[string]any{"perm": nil}})
	assert.Equal(t, map[string]int64{"a": 100, "b": 200, "perm": 300, "node_1": 1000},
		replication.PublishedSlots(d, existing, "node-1", 1000, cfg, pg15))
	assert.Nil(t, replication.PublishedSlots(d, existing, "node-1", 1000, cfg, 100000), "PostgreSQL 10 publishes nothing")

	ttl0 := dyn(map[string]any{"member_slots_ttl": 0, "slots": map[string]any{"perm": nil}})
	assert.Equal(t, map[string]int64{"perm": 300}, replication.PublishedSlots(d, existing, "node-1", 1000, ttl0, pg15))
	ttl0own := dyn(map[string]any{"member_slots_ttl": "0", "slots": map[string]any{"perm": nil, "node_1": map[string]any{}}})
	assert.Equal(t, map[string]int64{"perm": 300, "node_1": 1000}, replication.PublishedSlots(d, existing, "node-1", 1000, ttl0own, pg15))
	assert.Nil(t, replication.PublishedSlots(replication.Desired{}, nil, "node-1", 0, ttl0, pg15))
}

func TestRetention(t *testing.T) {
	var r replication.Retention
	t0 := time.Unix(1_000_000, 0)
	ttl := 10 * time.Second
	c := snapshot("node1", dcs.Status{}, mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3"}, mem{name: "ns", tags: dcs.Tags{"nostream": true}})
	perm := map[string]any{"perm": nil}
	pub := map[string]int64{"node1": 9, "node_2": 5, "node3": 5, "perm": 3, "ns": 1, "other": 2}

	require.Equal(t, []string{"node1", "node3", "node_2"}, r.Update(c, "node1", pub, perm, ttl, t0))
	// node3 leaves: kept until ttl after it was last seen.
	c2 := snapshot("node1", dcs.Status{}, mem{name: "node1"}, mem{name: "node-2"})
	pub2 := map[string]int64{"node1": 9, "node_2": 5, "node3": 5}
	require.Equal(t, []string{"node1", "node3", "node_2"}, r.Update(c2, "node1", pub2, perm, ttl, t0.Add(5*time.Second)))
	require.Equal(t, []string{"node1", "node3", "node_2"}, r.Update(c2, "node1", pub2, perm, ttl, t0.Add(9*time.Second)))
	require.Equal(t, []string{"node1", "node_2"}, r.Update(c2, "node1", pub2, perm, ttl, t0.Add(10*time.Second)))
	// Nothing published (PostgreSQL 10, or use_slots off): names age out.
	require.Equal(t, []string{"node1", "node_2"}, r.Update(c2, "node1", nil, perm, ttl, t0.Add(15*time.Second)))
	require.Nil(t, r.Update(c2, "node1", nil, perm, ttl, t0.Add(20*time.Second)))
	// A new leader restarts the clocks of what it inherited.
	r.Reset([]string{"x", "y"}, t0.Add(100*time.Second))
	require.Equal(t, []string{"x", "y"}, r.Update(c2, "node1", nil, perm, ttl, t0.Add(109*time.Second)))
	require.Nil(t, r.Update(c2, "node1", nil, perm, ttl, t0.Add(110*time.Second)))
	// member_slots_ttl 0 retains nothing.
	require.Nil(t, r.Update(c, "node1", pub, perm, 0, t0))
}

func TestIgnoreSlot(t *testing.T) {
	s := pg.ReplicationSlot{Name: "cdc", Type: "logical", Database: "app", Plugin: "pgoutput"}
	for _, tc := range []struct {
		matcher any
		want    bool
	}{
		{map[string]any{"name": "cdc"}, true},
		{map[string]any{"name": "other"}, false},
		{map[string]any{"type": "logical"}, true},
		{map[string]any{"type": "physical"}, false},
		{map[string]any{"database": "app", "plugin": "pgoutput"}, true},
		{map[string]any{"database": "app", "plugin": "wal2json"}, false},
		{map[string]any{"name": "cdc", "database": "other"}, false},
		{map[string]any{}, true},
		{"cdc", false},
	} {
		assert.Equal(t, tc.want, replication.IgnoreSlot([]any{tc.matcher}, s), "%v", tc.matcher)
	}
	assert.False(t, replication.IgnoreSlot(nil, s))
}

func TestPlanSlotsDisabled(t *testing.T) {
	c := snapshot("node1", dcs.Status{RetainSlots: []string{"gone"}}, mem{name: "node1"}, mem{name: "node-2"}, mem{name: "node3"})
	existing := []pg.ReplicationSlot{slot("node_2", 5), slot("node3", 5, active), slot("gone", 5), slot("user", 5),
		slot("node1", 5, logical), slot("ign", 5)}
	var got []string
	for _, a := range replication.PlanSlotsDisabled(c, existing, false, []any{map[string]any{"name": "gone"}}) {
		got = append(got, a.String())
	}
	assert.Equal(t, []string{"drop node_2 (use_slots is off)"}, got)
	assert.Len(t, replication.PlanSlotsDisabled(c, existing, false, nil), 2, "gone too without ignore_slots")
	assert.Empty(t, replication.PlanSlotsDisabled(c, existing, true, nil), "paused")
	assert.Empty(t, replication.PlanSlotsDisabled(nil, existing, false, nil))
}

package replication

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/pg"
)

func TestParseNames(t *testing.T) {
	cases := []struct {
		in   string
		want Names
		str  string
	}{
		{"", Names{}, ""},
		{"node2", Names{Num: 1, Standbys: []string{"node2"}}, "node2"},
		{"a, b", Names{Num: 1, Standbys: []string{"a", "b"}}, "1 (a,b)"},
		{"2 (b, a)", Names{Num: 2, Standbys: []string{"b", "a"}}, "2 (a,b)"},
		{"FIRST 2 (a,b)", Names{Num: 2, Standbys: []string{"a", "b"}}, "2 (a,b)"},
		{"any 1 (a, \"B-2\")", Names{Quorum: true, Num: 1, Standbys: []string{"a", "B-2"}}, `ANY 1 (a,"B-2")`},
		{"*", Names{Num: 1, Standbys: []string{"*"}}, "*"},
		{`"first"`, Names{Num: 1, Standbys: []string{"first"}}, `"first"`},
		{`"we""ird"`, Names{Num: 1, Standbys: []string{`we"ird`}}, `"we""ird"`},
		{"1 (123)", Names{Num: 1, Standbys: []string{"123"}}, `"123"`},
	}
	for _, c := range cases {
		got, err := ParseNames(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
		assert.Equal(t, c.str, got.String(), c.in)
		back, err := ParseNames(got.String())
		require.NoError(t, err)
		assert.Equal(t, got.Set(), back.Set(), "round trip of %q", c.in)
	}
	for _, bad := range []string{"2 (a", "0 (a)", "ANY (a)", "a,,b", `"open`, "2 a", "(a)", "a,"} {
		_, err := ParseNames(bad)
		assert.Error(t, err, bad)
	}
}

func names(ns ...string) Names { return Names{Num: len(ns), Standbys: ns} }

func TestNextSyncStep(t *testing.T) {
	sync := func(standbys ...string) *dcs.SyncState {
		return &dcs.SyncState{Leader: "n1", Standbys: standbys, ModRevision: 7}
	}
	streaming := func(name, state string, lsn int64) Candidate {
		return Candidate{Name: name, Streaming: true, SyncState: state, LSN: lsn, Priority: 1}
	}
	base := SyncInput{Leader: "n1", Mode: dcs.SyncOn, NodeCount: 1, PrimaryLSN: 1000, ConfirmLSN: 900, Managed: true}
	cases := []struct {
		name string
		edit func(*SyncInput)
		kind StepKind
		sync []string
		ssn  string
	}{
		{"off, nothing to undo", func(in *SyncInput) { in.Mode = dcs.SyncOff; in.Managed = false }, StepNone, nil, ""},
		{"off deletes /sync first", func(in *SyncInput) { in.Mode = dcs.SyncOff; in.Sync = sync("n2") }, StepDeleteSync, nil, ""},
		{"off then clears names", func(in *SyncInput) { in.Mode = dcs.SyncOff }, StepClearNames, nil, ""},
		{"enable: /sync with leader only", func(in *SyncInput) {}, StepWriteSync, []string{}, ""},
		{"another leader's /sync is rewritten", func(in *SyncInput) { in.Sync = &dcs.SyncState{Leader: "n9", Standbys: []string{"n2"}} }, StepWriteSync, []string{}, ""},
		{"names first for a new standby", func(in *SyncInput) {
			in.Sync = sync()
			in.Candidates = []Candidate{streaming("n2", "async", 1000)}
		}, StepSetNames, nil, "n2"},
		{"then /sync once confirmed", func(in *SyncInput) {
			in.Sync, in.Names = sync(), names("n2")
			in.Candidates = []Candidate{streaming("n2", "sync", 950)}
		}, StepWriteSync, []string{"n2"}, ""},
		{"not confirmed below ConfirmLSN", func(in *SyncInput) {
			in.Sync, in.Names = sync(), names("n2")
			in.Candidates = []Candidate{streaming("n2", "sync", 899)}
		}, StepWait, nil, ""},
		{"not confirmed when not reported sync", func(in *SyncInput) {
			in.Sync, in.Names = sync(), names("n2")
			in.Candidates = []Candidate{streaming("n2", "potential", 1000)}
		}, StepWait, nil, ""},
		{"unmanaged names never confirm", func(in *SyncInput) {
			in.Sync, in.Names, in.Managed = sync(), names("n2"), false
			in.Candidates = []Candidate{streaming("n2", "sync", 1000)}
		}, StepSetNames, nil, "n2"},
		{"steady", func(in *SyncInput) {
			in.Sync, in.Names = sync("n2"), names("n2")
			in.Candidates = []Candidate{streaming("n2", "sync", 10), streaming("n3", "async", 1000)}
		}, StepNone, nil, ""},
		{"gone standby leaves /sync before the names", func(in *SyncInput) {
			in.Sync, in.Names = sync("n2"), names("n2")
			in.Candidates = []Candidate{streaming("n3", "async", 1000)}
		}, StepWriteSync, []string{}, ""},
		{"switch to another: /sync emptied first", func(in *SyncInput) {
			in.Sync, in.Names = sync("n2"), names("n2")
			in.Candidates = []Candidate{streaming("n2", "sync", 1000), streaming("n3", "async", 1000)}
			in.Candidates[1].Priority = 5
		}, StepWriteSync, []string{}, ""},
		{"then the names move", func(in *SyncInput) {
			in.Sync, in.Names = sync(), names("n2")
			in.Candidates = []Candidate{streaming("n2", "sync", 1000), streaming("n3", "async", 1000)}
			in.Candidates[1].Priority = 5
		}, StepSetNames, nil, "n3"},
		{"non-strict alone: names cleared", func(in *SyncInput) { in.Sync, in.Names = sync(), names("n2") }, StepSetNames, nil, ""},
		{"strict alone: placeholder", func(in *SyncInput) { in.Strict = true; in.Sync, in.Names = sync(), names("n2") }, StepSetNames, nil, StrictPlaceholder},
		{"strict steady with placeholder", func(in *SyncInput) { in.Strict = true; in.Sync, in.Names = sync(), names(StrictPlaceholder) }, StepNone, nil, ""},
		{"two of three, picked by lsn", func(in *SyncInput) {
			in.NodeCount, in.Sync = 2, sync()
			in.Candidates = []Candidate{streaming("n2", "async", 500), streaming("n3", "async", 1000), streaming("n4", "async", 990)}
		}, StepSetNames, nil, "2 (n3,n4)"},
		{"nofailover picked last", func(in *SyncInput) {
			in.Sync = sync()
			in.Candidates = []Candidate{streaming("n2", "async", 1000), streaming("n3", "async", 10)}
			in.Candidates[0].NoFailover = true
		}, StepSetNames, nil, "n3"},
		{"maximum_lag_on_syncnode", func(in *SyncInput) {
			in.Sync, in.MaxLag, in.Names = sync(), 100, names("n2")
			in.Candidates = []Candidate{streaming("n2", "async", 10)}
		}, StepSetNames, nil, ""},
		{"a standby not streaming is not picked", func(in *SyncInput) {
			in.Sync = sync()
			in.Candidates = []Candidate{{Name: "n2", SyncState: "async", LSN: 1000, Priority: 1}}
		}, StepNone, nil, ""},
		{"quorum runs as priority", func(in *SyncInput) {
			in.Mode, in.Sync = dcs.SyncQuorum, sync()
			in.Candidates = []Candidate{streaming("n2", "async", 1000)}
		}, StepSetNames, nil, "n2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base
			c.edit(&in)
			st := NextSyncStep(in)
			assert.Equal(t, c.kind.String(), st.Kind.String(), st.Reason)
			if c.sync != nil {
				assert.Equal(t, "n1", st.Sync.Leader)
				assert.Equal(t, c.sync, append([]string{}, st.Sync.Standbys...), st.Reason)
			}
			if c.kind == StepSetNames {
				assert.Equal(t, c.ssn, st.Names.String())
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	c := &dcs.Cluster{Members: []dcs.Member{
		{Name: "n1", Data: dcs.MemberData{State: "running"}},
		{Name: "n2", Data: dcs.MemberData{State: "running", Tags: dcs.Tags{"sync_priority": float64(3)}}},
		{Name: "n3", Data: dcs.MemberData{State: "running", Tags: dcs.Tags{"nosync": true}}},
		{Name: "n4", Data: dcs.MemberData{State: "starting"}},
		{Name: "n5", Data: dcs.MemberData{State: "running", Tags: dcs.Tags{"replicatefrom": "n2"}}},
		{Name: "N6", Data: dcs.MemberData{State: "running", Tags: dcs.Tags{"nofailover": true}}},
	}}
	senders := []pg.SyncStandby{
		{Name: "n2", State: "streaming", SyncState: "sync", WriteLSN: 30, FlushLSN: 20, ReplayLSN: 10},
		{Name: "n3", State: "streaming"}, {Name: "n4", State: "streaming"}, {Name: "n5", State: "streaming"},
		{Name: "n6", State: "catchup"}, {Name: "ghost", State: "streaming"},
	}
	got := Candidates(c, "n1", senders, "on")
	require.Len(t, got, 2)
	assert.Equal(t, Candidate{Name: "n2", Streaming: true, SyncState: "sync", LSN: 20, Priority: 3}, got[0])
	assert.Equal(t, Candidate{Name: "N6", Priority: 1, NoFailover: true}, got[1])
	assert.Equal(t, int64(10), Candidates(c, "n1", senders, "remote_apply")[0].LSN)
	assert.Equal(t, int64(30), Candidates(c, "n1", senders, "remote_write")[0].LSN)
}

func TestPromoteSync(t *testing.T) {
	old := &dcs.SyncState{Leader: "n1", Standbys: []string{"n2", "n3"}}
	s, n := PromoteSync("n2", old, false)
	assert.Equal(t, dcs.SyncState{Leader: "n2"}, s)
	assert.True(t, n.IsEmpty())
	s, n = PromoteSync("n2", old, true)
	assert.Equal(t, []string{"n3"}, s.Standbys)
	assert.Equal(t, "n3", n.String())
	s, n = PromoteSync("n2", &dcs.SyncState{Leader: "n1", Standbys: []string{"n2"}}, true)
	assert.Empty(t, s.Standbys)
	assert.Equal(t, StrictPlaceholder, n.String())
}

// TestSyncInvariantModel drives the planner through random standby events
// with a model of PostgreSQL's commit rule and checks after every single
// step that each standby in /sync holds every commit acknowledged so far.
func TestSyncInvariantModel(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runSyncModel(t, seed) })
	}
}

type modelStandby struct {
	up       bool
	flushed  int64 // highest commit it holds
	priority int
}

func runSyncModel(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	strict := r.IntN(2) == 0
	count := 1 + r.IntN(2)
	sb := map[string]*modelStandby{"n2": {priority: 1}, "n3": {priority: 1}, "n4": {priority: 1}}
	var sync *dcs.SyncState
	var ssn Names
	managed := false
	var commit, confirm int64 // last acknowledged commit; ConfirmLSN
	rev := int64(0)
	check := func(where string) {
		if sync == nil {
			return
		}
		for _, s := range sync.Standbys {
			require.GreaterOrEqual(t, sb[s].flushed, commit, "seed %d %s: /sync standby %s lacks commit %d (/sync %v, names %q)", seed, where, s, commit, sync.Standbys, ssn.String())
		}
	}
	for step := range 1500 {
		// Either an event or one planning step, so that commits also happen
		// between the planner's steps.
		if r.IntN(3) == 0 {
			var cands []Candidate
			for _, n := range []string{"n2", "n3", "n4"} {
				s := sb[n]
				if !s.up || s.priority == 0 {
					continue
				}
				st := "async"
				if managed && ssn.Has(n) {
					st = "sync"
				}
				cands = append(cands, Candidate{Name: n, Streaming: true, SyncState: st, LSN: s.flushed, Priority: s.priority})
			}
			in := SyncInput{Leader: "n1", Mode: dcs.SyncOn, Strict: strict, NodeCount: count, Sync: sync, Names: ssn,
				Managed: managed, Candidates: cands, PrimaryLSN: commit, ConfirmLSN: confirm}
			st := NextSyncStep(in)
			switch st.Kind {
			case StepWriteSync:
				rev++
				s := st.Sync
				s.ModRevision = rev
				sync = &s
			case StepSetNames:
				ssn, managed = st.Names, true
				confirm = commit
			case StepNone, StepWait:
			default:
				t.Fatalf("unexpected step %v", st.Kind)
			}
			check(fmt.Sprintf("step %d after %v", step, st.Kind))
			continue
		}
		switch e := r.IntN(10); {
		case e < 5: // a commit: acknowledged once every waited-for standby has it
			lsn := commit + 1
			ok := true
			if managed && !ssn.IsEmpty() {
				var have int
				for _, n := range ssn.Set() {
					if s, exists := sb[n]; exists && s.up {
						s.flushed = lsn
						have++
					}
				}
				ok = have >= ssn.Num
			}
			for _, s := range sb { // async standbys receive it sometimes
				if s.up && r.IntN(2) == 0 {
					s.flushed = max(s.flushed, lsn)
				}
			}
			if ok {
				commit = lsn
			}
		case e < 7:
			n := fmt.Sprintf("n%d", 2+r.IntN(3))
			sb[n].up = !sb[n].up
		case e < 8:
			n := fmt.Sprintf("n%d", 2+r.IntN(3))
			sb[n].priority = r.IntN(3)
		default: // standbys catch up
			for _, s := range sb {
				if s.up {
					s.flushed = max(s.flushed, commit+int64(r.IntN(2)))
				}
			}
		}
		check(fmt.Sprintf("step %d after event", step))
		if sync != nil {
			require.True(t, slices.IsSorted(sync.Standbys))
		}
	}
}

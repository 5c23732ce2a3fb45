package dcs_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
)

// recorded is an `etcdctl get --prefix -w json` dump of a Patroni 3.0.2 cluster.
type recorded struct {
	Header struct {
		Revision int64 `json:"revision"`
	} `json:"header"`
	KVs []struct {
		Key            string `json:"key"`
		Value          string `json:"value"`
		CreateRevision int64  `json:"create_revision"`
		ModRevision    int64  `json:"mod_revision"`
		Lease          int64  `json:"lease"`
	} `json:"kvs"`
}

var recordedPath = dcs.Path{Namespace: "/patroni", Scope: "pg-cluster"}

func parseRecorded(file string) ([]dcs.KeyValue, int64, error) {
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		return nil, 0, err
	}
	var r recorded
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, 0, err
	}
	var kvs []dcs.KeyValue
	for _, kv := range r.KVs {
		k, err := base64.StdEncoding.DecodeString(kv.Key)
		if err != nil {
			return nil, 0, err
		}
		v, err := base64.StdEncoding.DecodeString(kv.Value)
		if err != nil {
			return nil, 0, err
		}
		rel, ok := recordedPath.Relative(string(k))
		if !ok {
			return nil, 0, fmt.Errorf("key %s is not under %s", k, recordedPath.Prefix())
		}
		kvs = append(kvs, dcs.KeyValue{Key: rel, Value: v, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Lease: kv.Lease})
	}
	return kvs, r.Header.Revision, nil
}

func loadRecorded(t *testing.T, file string) ([]dcs.KeyValue, int64) {
	t.Helper()
	kvs, rev, err := parseRecorded(file)
	require.NoError(t, err)
	return kvs, rev
}

func TestRecordedPatroniClusterDecodes(t *testing.T) {
	kvs, rev := loadRecorded(t, "patroni_long_history_raw.json")
	c := dcs.BuildCluster(kvs, rev)
	require.Empty(t, c.DecodeErrors)
	require.Equal(t, "node3", c.LeaderName())
	require.Equal(t, dcs.RoleMaster, c.Leader.Member.Data.Role)
	require.True(t, dcs.IsPrimaryRole(c.Leader.Member.Data.Role))
	require.NotZero(t, c.Leader.Lease)
	require.Len(t, c.Members, 3)
	require.Equal(t, c.Leader.Lease, c.Leader.Member.Lease, "leader key and its member key share the lease")
	require.Equal(t, "7712301182879798290", c.Initialize.SysID)
	require.True(t, c.Failover.IsEmpty())
	require.Equal(t, int64(238599072), c.Status.Optime)
	require.Len(t, c.History.Lines, 46)
	require.Equal(t, int64(47), c.Timeline(), "timeline = last history line + 1")
	require.Equal(t, c.Timeline(), c.Leader.Member.Data.Timeline)
	d := c.Config.Dynamic()
	require.Empty(t, d.Warnings)
	require.Equal(t, 30*time.Second, d.TTL)
	require.Equal(t, 10*time.Second, d.LoopWait)
	require.Equal(t, int64(1048576), d.MaximumLagOnFailover)
	require.True(t, d.UsePgRewind)
	require.True(t, d.UseSlots)
	require.Equal(t, "128MB", d.Parameters["wal_keep_size"])
	m, _ := c.Member("node1")
	require.Equal(t, "postgres://127.0.0.1:5432/postgres", m.Data.ConnURL)
	require.Equal(t, "http://127.0.0.1:8008/patroni", m.Data.APIURL)
	require.Equal(t, int64(238599072), m.Data.Position())
}

// Re-encoding what Patroni wrote gives back the same bytes: pgha writes what
// Patroni writes.
func TestEncodingMatchesPatroniBytes(t *testing.T) {
	for _, file := range []string{"patroni_long_history_raw.json", "patroni_fresh_raw.json"} {
		t.Run(file, func(t *testing.T) {
			kvs, rev := loadRecorded(t, file)
			c := dcs.BuildCluster(kvs, rev)
			for _, kv := range kvs {
				var got []byte
				var err error
				switch {
				case strings.HasPrefix(kv.Key, dcs.KeyMembers):
					m, _ := c.Member(strings.TrimPrefix(kv.Key, dcs.KeyMembers))
					got, err = dcs.EncodeMember(m.Data)
				case kv.Key == dcs.KeyStatus:
					got = dcs.EncodeStatus(c.Status)
				case kv.Key == dcs.KeyHistory:
					got, err = dcs.EncodeHistory(c.History.Lines)
				case kv.Key == dcs.KeyFailover:
					got = dcs.EncodeFailover(*c.Failover)
				case kv.Key == dcs.KeyLeader:
					got = []byte(c.LeaderName())
				case kv.Key == dcs.KeyInitialize:
					got = []byte(c.Initialize.SysID)
				case kv.Key == dcs.KeyConfig:
					// Patroni 3.0.2 wrote /config with spaces; compare as JSON.
					got, err = dcs.EncodeConfig(c.Config.Data)
					require.NoError(t, err)
					require.JSONEq(t, string(kv.Value), string(got))
					continue
				default:
					t.Fatalf("unexpected key %s", kv.Key)
				}
				require.NoError(t, err)
				require.Equal(t, string(kv.Value), string(got), "key %s", kv.Key)
			}
		})
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		ns, scope, base string
	}{
		{"", "pg", "/service/pg"},
		{"/service", "pg", "/service/pg"},
		{"service/", "pg", "/service/pg"},
		{"/patroni", "pg-cluster", "/patroni/pg-cluster"},
		{"//a//b/", "c", "/a/b/c"},
		{"/", "x", "/service/x"},
	} {
		p := dcs.Path{Namespace: tc.ns, Scope: tc.scope}
		require.Equal(t, tc.base, p.Base(), "%+v", tc)
		require.Equal(t, tc.base+"/leader", p.Key(dcs.KeyLeader))
		require.Equal(t, tc.base+"/members/n1", p.MemberKey("n1"))
		rel, ok := p.Relative(tc.base + "/members/n1")
		require.True(t, ok)
		require.Equal(t, "members/n1", rel)
	}
	require.Error(t, dcs.Path{}.Validate())
	require.Error(t, dcs.Path{Scope: "/"}.Validate())
	require.NoError(t, dcs.Path{Scope: "x"}.Validate())
}

func TestFailoverCodec(t *testing.T) {
	require.Equal(t, "{}", string(dcs.EncodeFailover(dcs.Failover{})))
	require.Equal(t, `{"member":"b"}`, string(dcs.EncodeFailover(dcs.Failover{Candidate: "b"})))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))
	b := dcs.EncodeFailover(dcs.Failover{Leader: "a", Candidate: "b", ScheduledAt: at})
	require.Equal(t, `{"leader":"a","member":"b","scheduled_at":"2026-01-02T03:04:05+01:00"}`, string(b))
	f, err := dcs.DecodeFailover(b)
	require.NoError(t, err)
	require.True(t, at.Equal(f.ScheduledAt))

	for in, want := range map[string]dcs.Failover{
		`{}`:                    {},
		`[]`:                    {},
		`"x"`:                   {},
		`null`:                  {},
		``:                      {},
		`a:b`:                   {Leader: "a", Candidate: "b"},
		`{"leader":"a"}`:        {Leader: "a"},
		`{"member":7}`:          {},
		`{"scheduled_at":null}`: {},
	} {
		got, err := dcs.DecodeFailover([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err = dcs.DecodeFailover([]byte(`{"leader":"a","scheduled_at":"tomorrow"}`))
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
	_, err = dcs.DecodeFailover([]byte(`{bad`))
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
}

func TestSyncCodec(t *testing.T) {
	require.Equal(t, `{"leader":"a","quorum":1,"sync_standby":"b,c"}`,
		string(dcs.EncodeSync(dcs.SyncState{Leader: "a", Quorum: 1, Standbys: []string{"c", "b"}})))
	require.Equal(t, `{"leader":"a","quorum":0,"sync_standby":null}`, string(dcs.EncodeSync(dcs.SyncState{Leader: "a"})))
	s, err := dcs.DecodeSync([]byte(`{"leader":"A","quorum":2,"sync_standby":" x , y,,"}`))
	require.NoError(t, err)
	require.Equal(t, []string{"x", "y"}, s.Standbys)
	require.Equal(t, 2, s.Quorum)
	require.True(t, s.Matches("a"))
	require.True(t, s.IsStandby("X"))
	require.False(t, s.IsStandby("a"))
	s, err = dcs.DecodeSync([]byte(`{"quorum":2,"sync_standby":"x"}`))
	require.NoError(t, err)
	require.True(t, s.IsEmpty(), "no leader: empty state")
	require.Zero(t, s.Quorum)
	s, err = dcs.DecodeSync([]byte(`[]`))
	require.NoError(t, err)
	require.True(t, s.IsEmpty())
}

func TestStatusCodec(t *testing.T) {
	for in, want := range map[string]dcs.Status{
		`{"optime":5}`: {Optime: 5},
		`12`:           {Optime: 12},
		`{"optime":5,"slots":{"a":3},"retain_slots":["a"]}`:         {Optime: 5, Slots: map[string]int64{"a": 3}, RetainSlots: []string{"a"}},
		`{"optime":5,"slots":"{\"a\":3}","retain_slots":"[\"a\"]"}`: {Optime: 5, Slots: map[string]int64{"a": 3}, RetainSlots: []string{"a"}},
		`{"optime":null}`: {},
	} {
		got, err := dcs.DecodeStatus([]byte(in))
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{`{"optime":"x"}`, `[1]`, `{"slots":[1]}`, `{"slots":{"a":"b"}}`, `{"retain_slots":[1]}`, `nope`} {
		got, err := dcs.DecodeStatus([]byte(in))
		require.ErrorIs(t, err, dcs.ErrInvalidValue, in)
		require.Equal(t, dcs.Status{}, got, "unparsable status is empty: %s", in)
	}
	require.Equal(t, `{"optime":1,"slots":{"a":2},"retain_slots":["a"]}`,
		string(dcs.EncodeStatus(dcs.Status{Optime: 1, Slots: map[string]int64{"a": 2}, RetainSlots: []string{"a"}})))
}

func TestHistoryCodec(t *testing.T) {
	h, err := dcs.DecodeHistory([]byte(`[]`))
	require.NoError(t, err)
	c := &dcs.Cluster{History: &h}
	require.Equal(t, int64(1), c.Timeline(), "empty history means timeline 1")
	for _, in := range []string{`[[1]]`, `[["a",1]]`, `[1,2]`, `{}`} {
		_, err := dcs.DecodeHistory([]byte(in))
		require.ErrorIs(t, err, dcs.ErrInvalidValue, in)
	}
	require.Equal(t, int64(0), (&dcs.Cluster{}).Timeline())
}

func TestMemberCodec(t *testing.T) {
	d, err := dcs.DecodeMember([]byte(`{"conn_url":"postgres://h:5432/postgres","api_url":"http://h:8008/patroni","state":"running",
		"role":"replica","version":"4.1.4","tags":{"nofailover":"true","clonefrom":true,"failover_priority":3},
		"receive_lsn":10,"replay_lsn":9,"replication_state":"streaming","xlog_location":10,"timeline":4,
		"pending_restart":true,"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}},
		"checkpoint_after_promote":false,"pause":true,"unknown_field":[1,2]}`))
	require.NoError(t, err)
	require.True(t, d.Tags.NoFailover())
	require.Equal(t, int64(0), d.Tags.FailoverPriority())
	require.True(t, d.Tags.CloneFrom())
	require.False(t, d.Tags.NoLoadBalance())
	require.Equal(t, int64(9), *d.ReplayLSN)
	require.Equal(t, "streaming", d.ReplicationState)
	require.Equal(t, "200", d.PendingRestartReason["max_connections"].NewValue)
	require.NotNil(t, d.CheckpointAfterPromote)
	require.False(t, *d.CheckpointAfterPromote)
	require.True(t, d.Pause)

	tags := dcs.Tags{"failover_priority": json.Number("0")}
	require.True(t, tags.NoFailover())
	tags = dcs.Tags{"failover_priority": json.Number("5"), "nosync": "yes", "replicatefrom": "n2"}
	require.False(t, tags.NoFailover())
	require.Equal(t, int64(5), tags.FailoverPriority())
	require.True(t, tags.NoSync())
	require.Equal(t, "n2", tags.ReplicateFrom())
	require.Equal(t, int64(1), dcs.Tags(nil).FailoverPriority())

	_, err = dcs.DecodeMember([]byte(`[]`))
	require.ErrorIs(t, err, dcs.ErrInvalidValue)
	d, err = dcs.DecodeMember([]byte(`{"conn_kwargs":{"host":"h","port":5433,"dbname":"db"},"api_url":"x"}`))
	require.NoError(t, err)
	require.Equal(t, "postgres://h:5433/db", d.ConnURL)
}

func TestTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-26T02:28:20.246384+00:00", "2026-11-26 02:28:20.246384+00:00", "2026-11-26T02:28:20Z",
		"2026-11-26T02:28:20+0000", "2026-11-26T02:28:20",
	} {
		tm, err := dcs.ParseTime(s)
		require.NoError(t, err, s)
		require.Equal(t, 2026, tm.Year())
	}
	_, err := dcs.ParseTime("yesterday")
	require.Error(t, err)
	tm := time.Date(2026, 11, 26, 2, 28, 20, 246384000, time.UTC)
	require.Equal(t, "2026-11-26T02:28:20.246384+00:00", dcs.FormatTime(tm))
}

func TestIsTransient(t *testing.T) {
	require.True(t, dcs.IsTransient(dcs.ErrUnavailable))
	require.True(t, dcs.IsTransient(errorsJoin("x", dcs.ErrUnavailable)))
	require.False(t, dcs.IsTransient(nil))
	require.False(t, dcs.IsTransient(dcs.ErrNotLeader))
	require.False(t, dcs.IsTransient(dcs.ErrConflict))
	require.False(t, dcs.IsTransient(errorsJoin("x", dcs.ErrNotLeader, dcs.ErrUnavailable)), "a lost leadership is never retried")
}

type joined struct {
	msg  string
	errs []error
}

func (j joined) Error() string   { return j.msg }
func (j joined) Unwrap() []error { return j.errs }

func errorsJoin(msg string, errs ...error) error { return joined{msg, errs} }

// FuzzBuildCluster feeds arbitrary bytes to every key; decoding must never
// panic and every failure must be reported as ErrInvalidValue.
func FuzzBuildCluster(f *testing.F) {
	kvs, _, err := parseRecorded("patroni_fresh_raw.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, kv := range kvs {
		f.Add(kv.Key, kv.Value)
	}
	f.Add("status", []byte(`{"optime":1e400}`))
	f.Add("history", []byte(`[[1e30,2]]`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		for _, k := range []string{key, "config", "failover", "sync", "history", "status", "failsafe", "initialize", "members/x", "leader", "optime/leader"} {
			c := dcs.BuildCluster([]dcs.KeyValue{{Key: k, Value: value, ModRevision: 1}}, 1)
			for _, err := range c.DecodeErrors {
				require.ErrorIs(t, err, dcs.ErrInvalidValue)
			}
			_ = c.Timeline()
			_ = c.Config.Dynamic()
		}
	})
}

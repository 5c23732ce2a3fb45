package etcddcs_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
	"github.com/pgha/pgha/internal/faultproxy"
)

// goldenKV is one key of a recorded Patroni cluster or of ours.
type goldenKV struct {
	value []byte
	lease int64
}

// loadGoldenPrefix reads a recorded `etcdctl get --prefix -w json` response,
// keyed by absolute key.
func loadGoldenPrefix(t *testing.T, file string) map[string]goldenKV {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "patroni", file))
	require.NoError(t, err)
	var resp struct {
		Kvs []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
			Lease int64  `json:"lease"`
		} `json:"kvs"`
	}
	require.NoError(t, json.Unmarshal(b, &resp))
	out := map[string]goldenKV{}
	for _, kv := range resp.Kvs {
		k, err := base64.StdEncoding.DecodeString(kv.Key)
		require.NoError(t, err)
		v, err := base64.StdEncoding.DecodeString(kv.Value)
		require.NoError(t, err)
		out[string(k)] = goldenKV{value: v, lease: kv.Lease}
	}
	require.NotEmpty(t, out)
	return out
}

var leaseLine = regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL\((\d+)s\), remaining\(\d+s\), attached keys\(\[([^\]]*)\]\)`)

// loadGoldenLeases reads `etcdctl lease timetolive --keys` output: the sorted
// keys attached to each lease, as sorted groups, and the granted TTLs.
func loadGoldenLeases(t *testing.T, file string) (groups []string, ttls []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "patroni", file))
	require.NoError(t, err)
	for _, m := range leaseLine.FindAllStringSubmatch(string(b), -1) {
		keys := strings.Fields(m[3])
		sort.Strings(keys)
		groups = append(groups, strings.Join(keys, " "))
		ttls = append(ttls, m[2])
	}
	sort.Strings(groups)
	require.NotEmpty(t, groups)
	return groups, ttls
}

// jsonShape describes a JSON value's structure: field names and JSON types
// (integers told apart from other numbers), lists by their element shape,
// tuples element by element. Values are not part of it.
func jsonShape(t *testing.T, what string, b []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v), "%s is not JSON: %q", what, b)
	return shapeOf(t, what, v)
}

func shapeOf(t *testing.T, what string, v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case string:
		return "string"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "int"
		}
		return "number"
	case []any:
		// A list of one shape is "[shape]"; a tuple such as a history line
		// ([timeline, lsn, reason, timestamp, leader]) is "(s1,s2,...)".
		elems := make([]string, len(x))
		for i, e := range x {
			elems[i] = shapeOf(t, what, e)
		}
		if len(slices.Compact(slices.Clone(elems))) <= 1 {
			if len(elems) == 0 {
				return "[]"
			}
			return "[" + elems[0] + "]"
		}
		return "(" + strings.Join(elems, ",") + ")"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + shapeOf(t, what+"."+k, x[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	require.Failf(t, "unexpected JSON value", "%s: %T", what, v)
	return ""
}

// topLevelFieldOrder returns an object's field names in the order written.
func topLevelFieldOrder(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

// TestPatroniLayout writes a cluster with etcddcs under Patroni's recorded
// namespace and scope and compares every key with what Patroni 3.0.2 wrote:
// the same key paths, the same JSON field names and types, the leader key a
// plain name, and leases on exactly the leader key and the member keys (the
// leader's member key sharing the leader key's lease).
func TestPatroniLayout(t *testing.T) {
	t.Parallel()
	path := dcs.Path{Namespace: "/patroni", Scope: "pg-cluster"}
	require.Equal(t, "/patroni/pg-cluster/", path.Prefix())
	ctx := testCtx(t)
	_, err := admin.Delete(ctx, path.Prefix(), clientv3.WithPrefix())
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Delete(testCtx(t), path.Prefix(), clientv3.WithPrefix()) })

	fresh := loadGoldenPrefix(t, "fresh_cluster_etcd_get_prefix.json")
	aged := loadGoldenPrefix(t, "etcd_get_prefix.json")
	golden := map[string]goldenKV{}
	for k, v := range aged {
		golden[k] = v
	}
	for k, v := range fresh {
		golden[k] = v // the fresh cluster's leader is node1, like ours
	}

	// The cluster, written the way the HA loop would: three members, node1
	// bootstraps and leads.
	stores := map[string]*etcddcs.Store{}
	for i, name := range []string{"node1", "node2", "node3"} {
		p, err := faultproxy.New(etcdAddr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		s, err := etcddcs.New(ctx, etcddcs.Config{Endpoints: []string{"http://" + p.Addr()}, Path: path, Name: name, Logger: testLogger(t, name)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		stores[name] = s
		_, err = s.KeepAlive(ctx, 30*time.Second)
		require.NoError(t, err)
		role := dcs.RoleReplica
		if name == "node1" {
			role = dcs.RoleMaster // what 3.0.2 wrote; 4.x writes "primary", same type
		}
		lsn, tl := int64(67301152), int64(1)
		require.NoError(t, s.PutMember(ctx, dcs.MemberData{
			ConnURL: "postgres://127.0.0.1:" + []string{"5432", "5433", "5434"}[i] + "/postgres",
			APIURL:  "http://127.0.0.1:" + []string{"8008", "8009", "8010"}[i] + "/patroni",
			State:   "running", Role: role, Version: "3.0.2", XLogLocation: &lsn, Timeline: tl,
		}))
	}
	leader := stores["node1"]
	require.NoError(t, leader.InitializeRace(ctx, ""))
	require.NoError(t, leader.SetInitialize(ctx, "7712311896889841141"))
	var cfg map[string]any
	dec := json.NewDecoder(bytes.NewReader(golden["/patroni/pg-cluster/config"].value))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&cfg))
	_, err = leader.SetConfig(ctx, cfg, dcs.IfAbsent())
	require.NoError(t, err)
	_, err = leader.AcquireLeader(ctx)
	require.NoError(t, err)
	require.NoError(t, leader.SetStatus(ctx, dcs.Status{Optime: 67301152}))
	require.NoError(t, leader.SetHistory(ctx, []dcs.HistoryLine{
		{Timeline: 1, LSN: 67305096, Reason: "no recovery target specified", Timestamp: "2026-11-26T02:28:20.246384+00:00", NewLeader: "node1"},
		{Timeline: 2, LSN: 67338448, Reason: "no recovery target specified", Timestamp: "2026-11-26T02:29:11.806382+00:00", NewLeader: "node2"},
	}))
	_, err = leader.SetFailover(ctx, dcs.Failover{}, dcs.Unconditional)
	require.NoError(t, err)

	resp, err := admin.Get(ctx, path.Prefix(), clientv3.WithPrefix())
	require.NoError(t, err)
	ours := map[string]goldenKV{}
	for _, kv := range resp.Kvs {
		ours[string(kv.Key)] = goldenKV{value: kv.Value, lease: kv.Lease}
	}

	// Same key paths.
	require.Equal(t, sortedKeys(golden), sortedKeys(ours))

	for key, g := range golden {
		o := ours[key]
		rel := strings.TrimPrefix(key, path.Prefix())
		switch rel {
		case dcs.KeyLeader:
			// A plain member name, not JSON.
			require.Equal(t, "node1", string(o.value))
			require.False(t, json.Valid(g.value), "golden leader is a plain string")
			require.False(t, json.Valid(o.value))
		case dcs.KeyInitialize:
			require.Regexp(t, `^[0-9]+$`, string(g.value))
			require.Regexp(t, `^[0-9]+$`, string(o.value))
		default:
			require.Equal(t, jsonShape(t, "golden "+rel, g.value), jsonShape(t, rel, o.value), "%s: field names and JSON types", rel)
			if strings.HasPrefix(rel, dcs.KeyMembers) {
				require.Equal(t, topLevelFieldOrder(t, g.value), topLevelFieldOrder(t, o.value), "%s: field order", rel)
			}
		}
		// Which keys carry a lease.
		require.Equal(t, g.lease != 0, o.lease != 0, "%s: lease presence (golden %x, ours %x)", rel, g.lease, o.lease)
	}
	// Compact JSON, as Patroni writes these two.
	require.Equal(t, "{}", string(ours["/patroni/pg-cluster/failover"].value))
	require.Equal(t, string(golden["/patroni/pg-cluster/failover"].value), string(ours["/patroni/pg-cluster/failover"].value))
	require.Equal(t, `{"optime":67301152}`, string(ours["/patroni/pg-cluster/status"].value))

	// Lease grouping: the leader key shares node1's lease; every other member
	// has its own; each lease has Patroni's TTL.
	wantGroups, wantTTLs := loadGoldenLeases(t, "fresh_cluster_etcd_leases.txt")
	byLease := map[int64][]string{}
	for k, kv := range ours {
		if kv.lease != 0 {
			byLease[kv.lease] = append(byLease[kv.lease], k)
		}
	}
	var groups []string
	for id, keys := range byLease {
		sort.Strings(keys)
		groups = append(groups, strings.Join(keys, " "))
		ttl, err := admin.TimeToLive(ctx, clientv3.LeaseID(id))
		require.NoError(t, err)
		require.Contains(t, wantTTLs, strconv.FormatInt(ttl.GrantedTTL, 10))
	}
	sort.Strings(groups)
	require.Equal(t, wantGroups, groups)

	// The aged recording (leader node3) follows the same rule: one group
	// holds the leader key and the leader's member key, the rest one member.
	agedGroups, _ := loadGoldenLeases(t, "etcd_leases.txt")
	leaderName := string(aged["/patroni/pg-cluster/leader"].value)
	require.Contains(t, agedGroups, "/patroni/pg-cluster/leader /patroni/pg-cluster/members/"+leaderName)
	require.Equal(t, aged["/patroni/pg-cluster/leader"].lease, aged["/patroni/pg-cluster/members/"+leaderName].lease)
}

func sortedKeys(m map[string]goldenKV) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package etcddcs_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/dcs/etcddcs"
)

// benchStore is a store connected straight to the embedded etcd (no proxy).
func benchStore(b *testing.B, name string) *etcddcs.Store {
	b.Helper()
	s, err := etcddcs.New(b.Context(), etcddcs.Config{
		Endpoints: []string{"http://" + etcdAddr},
		Path:      dcs.Path{Namespace: "pgha-bench", Scope: b.Name()},
		Name:      name,
	})
	require.NoError(b, err)
	b.Cleanup(func() {
		_ = s.DeleteCluster(b.Context())
		_ = s.Close()
	})
	return s
}

// reportLatency adds median and 99th-percentile latency to the result.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRefreshLeader: one KeepAliveOnce plus one guarded txn.
func BenchmarkRefreshLeader(b *testing.B) {
	s := benchStore(b, "a")
	_, err := s.AcquireLeader(b.Context())
	require.NoError(b, err)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := s.RefreshLeader(b.Context()); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// BenchmarkAcquireLeader: KeepAliveOnce, the create-if-absent txn and the
// wait for the watch to apply it (release not timed).
func BenchmarkAcquireLeader(b *testing.B) {
	s := benchStore(b, "a")
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := s.AcquireLeader(b.Context()); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err := s.ReleaseLeader(b.Context(), nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
}

// BenchmarkSetStatus: a leader-fenced put plus the wait for the watch.
func BenchmarkSetStatus(b *testing.B) {
	s := benchStore(b, "a")
	_, err := s.AcquireLeader(b.Context())
	require.NoError(b, err)
	lat := make([]time.Duration, 0, b.N)
	i := int64(0)
	for b.Loop() {
		i++
		start := time.Now()
		if err := s.SetStatus(b.Context(), dcs.Status{Optime: i}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

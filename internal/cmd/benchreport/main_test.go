package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The table: each system's median and maximum, and the ratio of the
// medians.
func Example_printTable() {
	all := map[string]results{
		"pgha":    {figNodeLoss: {5.9, 6.1, 5.8}, figRSS: {28, 29, 28.5}},
		"patroni": {figNodeLoss: {6.3, 7.0, 6.4}, figRSS: {60, 60.4, 59.7}},
	}
	printTable(os.Stdout, []figure{{figNodeLoss, "s"}, {figRSS, "MiB"}, {figEtcd, "/s"}}, []string{"pgha", "patroni"}, all)
	// Output:
	// figure                                                                     | pgha median | pgha max | patroni median | patroni max | pgha/patroni
	// -------------------------------------------------------------------------------------------------------------------------------------------------
	// node-loss failover: SIGKILL agent+postmaster -> first write on new primary |      5.90 s |   6.10 s |         6.40 s |      7.00 s |         0.92
	// agent RSS per node                                                         |    28.5 MiB | 29.0 MiB |       60.0 MiB |    60.4 MiB |         0.47
	// etcd requests/s per node at idle (gRPC messages received)                  |           - |        - |              - |           - |            -
}

func TestStats(t *testing.T) {
	_, _, ok := stats(nil)
	require.False(t, ok)
	med, mx, ok := stats([]float64{3, 1, 2})
	require.True(t, ok)
	require.Equal(t, 2.0, med)
	require.Equal(t, 3.0, mx)
	med, _, _ = stats([]float64{4, 1, 2, 3})
	require.Equal(t, 2.5, med)
}

func TestProcReading(t *testing.T) {
	st, err := readStat(os.Getpid())
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.ppid)
	require.Positive(t, rssKiB(os.Getpid()))
	require.Contains(t, procTree(os.Getpid()), os.Getpid())
	_, err = readStat(-1)
	require.Error(t, err)
}

func TestEtcdMessages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 12
grpc_server_msg_received_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 30
grpc_server_handled_total{grpc_code="OK",grpc_method="Range"} 12`)
	}))
	defer srv.Close()
	n, err := etcdMessages(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	require.Equal(t, 42.0, n)

	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer empty.Close()
	_, err = etcdMessages(context.Background(), strings.TrimPrefix(empty.URL, "http://"))
	require.Error(t, err)
}

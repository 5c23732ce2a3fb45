package cluster_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
)

func w(node string, tl int64, invoke, complete time.Duration) cluster.Write {
	return cluster.Write{Node: node, Timeline: tl, Invoke: invoke * time.Millisecond, Complete: complete * time.Millisecond}
}

func TestCheckHistory(t *testing.T) {
	cases := []struct {
		name   string
		writes []cluster.Write
		want   int
	}{
		{"empty", nil, 0},
		{"one primary", []cluster.Write{w("a", 1, 0, 5), w("a", 1, 10, 15), w("a", 1, 20, 25)}, 0},
		{"clean failover: old writes end before the new timeline's first ack",
			[]cluster.Write{w("a", 1, 0, 5), w("a", 1, 10, 15), w("b", 2, 30, 35), w("b", 2, 40, 45)}, 0},
		{"old write in flight when the new one acked (sent before): not witnessed",
			[]cluster.Write{w("a", 1, 30, 50), w("b", 2, 32, 35)}, 0},
		{"old timeline acknowledges a write sent after the new timeline acked one",
			[]cluster.Write{w("a", 1, 0, 5), w("b", 2, 30, 35), w("a", 1, 40, 45)}, 1},
		{"two nodes on one timeline", []cluster.Write{w("a", 1, 0, 5), w("b", 1, 10, 15)}, 1},
		{"crash restart in place keeps node and timeline", []cluster.Write{w("a", 1, 0, 5), w("a", 1, 500, 505)}, 0},
		{"three timelines, old one keeps writing", []cluster.Write{
			w("a", 1, 0, 5), w("b", 2, 10, 15), w("c", 3, 20, 25), w("a", 1, 30, 35)}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := cluster.CheckHistory(tc.writes)
			require.Len(t, got, tc.want, "%v", got)
		})
	}
}

package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/cluster"
)

// TestEvery: the loop gets increasing tick times, ends when the body
// breaks, and yields nothing more once the context ended.
func TestEvery(t *testing.T) {
	var got []time.Time
	for now := range cluster.Every(context.Background(), time.Millisecond) {
		got = append(got, now)
		if len(got) == 3 {
			break
		}
	}
	require.Len(t, got, 3)
	require.True(t, got[0].Before(got[1]) && got[1].Before(got[2]), "tick times %v", got)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	for range cluster.Every(ctx, time.Millisecond) {
		n++
		if n == 2 {
			cancel()
		}
	}
	require.Equal(t, 2, n, "ticks after the context ended")

	n = 0
	for range cluster.Every(ctx, time.Millisecond) { // already ended: no tick
		n++
	}
	require.Zero(t, n)
}

package clock_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/internal/clock"
)

func TestRealClockInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := clock.Real
		start := c.Now()
		tm := c.NewTimer(time.Hour)
		fired := make(chan struct{})
		af := c.AfterFunc(30*time.Minute, func() { close(fired) })
		<-fired
		require.Equal(t, 30*time.Minute, c.Since(start))
		<-tm.C()
		require.Equal(t, time.Hour, c.Since(start))
		require.False(t, af.Stop())
		require.False(t, tm.Reset(time.Second))
		<-tm.C()
	})
}

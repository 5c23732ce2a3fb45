package cluster_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/ha/watchdog"
	"github.com/pgha/pgha/internal/cluster"
	"github.com/pgha/pgha/internal/cluster/noderun"
	"github.com/pgha/pgha/internal/pgtest"
)

// startFencer starts a Fencer on a new pipe whose reset counts its calls,
// and stops it at cleanup.
func startFencer(t *testing.T, def time.Duration) (*cluster.Fencer, *atomic.Int32) {
	t.Helper()
	var resets atomic.Int32
	f, err := cluster.NewFencer(cluster.FencerConfig{Path: filepath.Join(t.TempDir(), "watchdog"), DefaultTimeout: def,
		Reset: func() error { resets.Add(1); return nil }, Logger: pgtest.Logger(t, "fencer")})
	require.NoError(t, err)
	require.NoError(t, f.Start())
	t.Cleanup(func() { require.NoError(t, f.Stop()) })
	return f, &resets
}

// requiredWatchdog is what a harness node runs: ha/watchdog in required
// mode on the emulated device.
func requiredWatchdog(t *testing.T, path string) *watchdog.Watchdog {
	t.Helper()
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Device: path, SafetyMargin: time.Second,
		Driver: noderun.WatchdogDriver{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Disable() })
	return w
}

// A required watchdog arms the emulated device with ttl - safety margin
// (whole seconds) and keeps it alive; when the keepalives stop the Fencer
// fires once, no earlier than that timeout after the last one, and
// disarms.
func TestFencerFiresWhenKeepalivesStop(t *testing.T) {
	f, resets := startFencer(t, 0)
	w := requiredWatchdog(t, f.Path())
	require.NoError(t, w.Check(3*time.Second, 500*time.Millisecond), "the emulated device passes the required mode's check")
	require.NoError(t, w.Activate(3*time.Second, 500*time.Millisecond))
	require.Equal(t, 2*time.Second, w.Timeout(), "the node believes the device is armed with ttl - safety margin")
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if !f.Armed() || f.Keepalives() < 1 {
			return errors.New("not armed yet")
		}
		return nil
	}))
	require.Equal(t, 2*time.Second, f.Timeout())
	require.Equal(t, []time.Duration{2 * time.Second}, f.TimeoutsSet())
	var lastSent time.Time
	for range 5 {
		lastSent = time.Now()
		require.NoError(t, w.Keepalive())
		time.Sleep(100 * time.Millisecond) // the pace of renewals, not a wait for a condition
	}
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if f.Keepalives() < 6 {
			return errors.New("keepalives not all read yet")
		}
		return nil
	}))
	require.Empty(t, f.Fires(), "kept alive well within its timeout")
	fire, err := f.WaitFire(within(t, 30*time.Second), time.Time{})
	require.NoError(t, err)
	require.NoError(t, fire.Err)
	require.Equal(t, 2*time.Second, fire.Timeout)
	require.GreaterOrEqual(t, fire.Gap, fire.Timeout, "never before the timeout")
	require.False(t, fire.At.Before(lastSent.Add(fire.Timeout)), "fired %s after the last keepalive was sent", fire.At.Sub(lastSent))
	require.False(t, fire.Done.Before(fire.At))
	require.EqualValues(t, 1, resets.Load())
	require.False(t, f.Armed(), "a reset host's device is disarmed")
	require.Len(t, f.Fires(), 1)
}

// The magic close disarms the device: it does not fire.
func TestFencerMagicCloseDisarms(t *testing.T) {
	f, resets := startFencer(t, 0)
	w := requiredWatchdog(t, f.Path())
	require.NoError(t, w.Activate(2*time.Second, 200*time.Millisecond))
	require.NoError(t, w.Disable())
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if f.MagicCloses() != 1 || f.Armed() {
			return errors.New("magic close not seen yet")
		}
		return nil
	}))
	time.Sleep(2 * f.Timeout()) // past the countdown it would have had
	require.Empty(t, f.Fires())
	require.Zero(t, resets.Load())
}

// A host crash (Disarm, what Node.Kill does) disarms it too; Stop ends it
// and removes the pipe, and it can be started again.
func TestFencerDisarmStopStart(t *testing.T) {
	f, resets := startFencer(t, 0)
	w := requiredWatchdog(t, f.Path())
	require.NoError(t, w.Activate(2*time.Second, 200*time.Millisecond))
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if !f.Armed() {
			return errors.New("not armed yet")
		}
		return nil
	}))
	f.Disarm()
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if f.Armed() {
			return errors.New("still armed")
		}
		return nil
	}))
	time.Sleep(2 * f.Timeout())
	require.Empty(t, f.Fires())
	require.Zero(t, resets.Load())
	require.NoError(t, w.Disable())

	require.NoError(t, f.Stop())
	_, err := os.Stat(f.Path())
	require.ErrorIs(t, err, os.ErrNotExist, "Stop removes the pipe")
	f.Disarm() // stopped: nothing to do
	require.NoError(t, f.Stop())
	require.NoError(t, f.Start())
	w2 := requiredWatchdog(t, f.Path())
	require.NoError(t, w2.Activate(2*time.Second, 200*time.Millisecond))
	_, err = f.WaitFire(within(t, 30*time.Second), time.Time{})
	require.NoError(t, err, "armed again after a restart, and fires")
	require.EqualValues(t, 1, resets.Load())
}

// A device whose timeout cannot be set (watchdog.FileDriver on the pipe:
// the ioctl fails) runs in automatic mode with the device's own timeout,
// which the Fencer keeps (its default); required mode refuses the pipe
// with FileDriver, which is why harness nodes use noderun.WatchdogDriver.
func TestFencerFileDriverKeepsTheDeviceTimeout(t *testing.T) {
	f, resets := startFencer(t, time.Second)
	req, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Device: f.Path(), SafetyMargin: time.Second})
	require.NoError(t, err)
	require.ErrorIs(t, req.Check(3*time.Second, 500*time.Millisecond), watchdog.ErrNotActivated, "FileDriver insists on a character device")

	auto, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, Device: f.Path(), SafetyMargin: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = auto.Disable() })
	require.NoError(t, auto.Activate(5*time.Second, 500*time.Millisecond))
	require.True(t, auto.Active())
	require.Zero(t, auto.Timeout(), "the ioctl is unsupported on a pipe: the timeout is unknown")
	fire, err := f.WaitFire(within(t, 30*time.Second), time.Time{})
	require.NoError(t, err)
	require.Equal(t, time.Second, fire.Timeout, "the device's own timeout")
	require.Empty(t, f.TimeoutsSet())
	require.EqualValues(t, 1, resets.Load())
}

// Timeout records may arrive in pieces; a bad one is ignored; any other
// byte is a keepalive, as on a real device.
func TestFencerParsesSplitRecords(t *testing.T) {
	f, resets := startFencer(t, 0)
	pipe, err := os.OpenFile(f.Path(), os.O_WRONLY, 0)
	require.NoError(t, err)
	defer pipe.Close()
	for _, part := range []string{"T", "x\n", "T3", "\n", "z"} {
		_, err := pipe.WriteString(part)
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond) // separate reads, not a wait for a condition
	}
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if f.Keepalives() != 1 || len(f.TimeoutsSet()) != 1 {
			return errors.New("records not read yet")
		}
		return nil
	}))
	require.Equal(t, []time.Duration{3 * time.Second}, f.TimeoutsSet())
	require.True(t, f.Armed())
	_, err = pipe.WriteString("V")
	require.NoError(t, err)
	require.NoError(t, cluster.Eventually(within(t, 10*time.Second), func(context.Context) error {
		if f.Armed() {
			return errors.New("still armed")
		}
		return nil
	}))
	require.Zero(t, resets.Load())
}

// The emulated driver refuses what is not the harness's pipe, and fails at
// once when nobody reads the pipe instead of hanging the node.
func TestWatchdogDriverChecks(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, nil, 0o600))
	require.Error(t, noderun.WatchdogDriver{}.Check(regular))
	require.Error(t, noderun.WatchdogDriver{}.Check(filepath.Join(dir, "missing")))
	pipe := filepath.Join(dir, "pipe")
	require.NoError(t, unix.Mkfifo(pipe, 0o600))
	require.NoError(t, noderun.WatchdogDriver{}.Check(pipe))
	_, err := noderun.WatchdogDriver{}.Open(pipe)
	require.ErrorIs(t, err, unix.ENXIO, "no reader")

	_, err = cluster.NewFencer(cluster.FencerConfig{Path: pipe})
	require.Error(t, err, "a Reset is required")
	f, err := cluster.NewFencer(cluster.FencerConfig{Path: regular, Reset: func() error { return nil }})
	require.NoError(t, err)
	require.Error(t, f.Start(), "not a pipe")
}

// The emulated reset kills a node process: in-process nodes cannot have
// it.
func TestWatchdogOptionNeedsProcesses(t *testing.T) {
	_, err := cluster.New(within(t, 10*time.Second), cluster.Options{Mode: cluster.InProcess, Watchdog: &cluster.WatchdogOptions{}})
	require.ErrorContains(t, err, "Options.Watchdog needs Processes")
}

package watchdog_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/ha/watchdog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseModeAcceptsPatronisSpellings(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]watchdog.Mode{
		"": watchdog.ModeOff, "off": watchdog.ModeOff, "disable": watchdog.ModeOff, "Disabled": watchdog.ModeOff,
		"false": watchdog.ModeOff, "automatic": watchdog.ModeAutomatic, "auto": watchdog.ModeAutomatic,
		"AUTO": watchdog.ModeAutomatic, "required": watchdog.ModeRequired, "require": watchdog.ModeRequired,
	} {
		got, err := watchdog.ParseMode(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := watchdog.ParseMode("sometimes")
	require.ErrorContains(t, err, `not "sometimes"`)
	require.Equal(t, "required", watchdog.ModeRequired.String())
}

// fakeDriver records what the watchdog does to its device.
type fakeDriver struct {
	mu         sync.Mutex
	checkErr   error
	openErr    error
	timeoutErr error
	actual     time.Duration // the timeout the device settles on; 0: what was asked
	log        []string
	timeouts   []time.Duration
	keepalives int
	open       bool
}

func (d *fakeDriver) Check(string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkErr
}

func (d *fakeDriver) Open(string) (watchdog.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.openErr != nil {
		return nil, d.openErr
	}
	d.open = true
	d.log = append(d.log, "open")
	return (*fakeDevice)(d), nil
}

type fakeDevice fakeDriver

func (f *fakeDevice) Keepalive() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepalives++
	f.log = append(f.log, "keepalive")
	return nil
}

func (f *fakeDevice) SetTimeout(d time.Duration) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "timeout "+d.String())
	if f.timeoutErr != nil {
		return 0, f.timeoutErr
	}
	f.timeouts = append(f.timeouts, d)
	if f.actual != 0 {
		return f.actual, nil
	}
	return d, nil
}

func (f *fakeDevice) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open = false
	f.log = append(f.log, "close")
	return nil
}

func (d *fakeDriver) events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.log...)
}

const (
	ttl   = 30 * time.Second
	renew = 7500 * time.Millisecond
)

func TestActivateSetsTimeoutKeepsAliveAndDisables(t *testing.T) {
	t.Parallel()
	d := &fakeDriver{}
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Driver: d})
	require.NoError(t, err)
	require.NoError(t, w.Check(ttl, renew))
	require.NoError(t, w.Keepalive(), "no-op while inactive")
	require.Empty(t, d.events())

	require.NoError(t, w.Activate(ttl, renew))
	require.True(t, w.Active())
	require.Equal(t, 25*time.Second, w.Timeout(), "ttl - the default safety margin")
	require.NoError(t, w.Activate(ttl, renew), "again: nothing to change, no keepalive")
	require.NoError(t, w.Keepalive())
	// The TTL changed: the timeout follows.
	require.NoError(t, w.Activate(40*time.Second, 10*time.Second))
	require.Equal(t, 35*time.Second, w.Timeout())
	require.NoError(t, w.Disable())
	require.NoError(t, w.Disable(), "idempotent")
	require.False(t, w.Active())
	require.Equal(t, []string{"open", "timeout 25s", "keepalive", "keepalive", "timeout 35s", "close"}, d.events())
}

func TestSafetyMarginMinusOneIsHalfTheTTL(t *testing.T) {
	t.Parallel()
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, SafetyMargin: -time.Second, Driver: &fakeDriver{}})
	require.NoError(t, err)
	require.Equal(t, 15*time.Second, w.TimeoutFor(ttl))
	w2, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, SafetyMargin: 2 * time.Second, Driver: &fakeDriver{}})
	require.NoError(t, err)
	require.Equal(t, 28*time.Second, w2.TimeoutFor(ttl))
}

func TestRequiredRefusesAnUnsafeDevice(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]*fakeDriver{
		"unusable":       {checkErr: errors.New("no such device")},
		"open fails":     {openErr: errors.New("device busy")},
		"no timeout":     {timeoutErr: watchdog.ErrUnsupported},
		"timeout longer": {actual: time.Minute},
		"timeout tiny":   {actual: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Driver: d})
			require.NoError(t, err)
			err = w.Activate(ttl, renew)
			require.ErrorIs(t, err, watchdog.ErrNotActivated)
			require.False(t, w.Active(), "closed again")
			require.ErrorIs(t, w.Check(ttl, renew), watchdog.ErrNotActivated, "remembered")
			d.mu.Lock()
			d.checkErr, d.openErr, d.timeoutErr, d.actual = nil, nil, nil, 0
			d.mu.Unlock()
			require.Error(t, w.Check(ttl, renew), "until Reset")
			w.Reset()
			require.NoError(t, w.Check(ttl, renew))
			require.NoError(t, w.Activate(ttl, renew))
			require.True(t, w.Active())
			require.NoError(t, w.Disable())
		})
	}
}

func TestRequiredRefusesATimeoutShorterThanTheKeepaliveInterval(t *testing.T) {
	t.Parallel()
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Driver: &fakeDriver{}})
	require.NoError(t, err)
	// ttl 6s - 5s margin = 1s, less than a renewal every 1.5s.
	require.ErrorIs(t, w.Check(6*time.Second, 1500*time.Millisecond), watchdog.ErrNotActivated)
	require.ErrorIs(t, w.Activate(6*time.Second, 1500*time.Millisecond), watchdog.ErrNotActivated)
}

func TestAutomaticRunsWithWhatItHas(t *testing.T) {
	t.Parallel()
	d := &fakeDriver{timeoutErr: watchdog.ErrUnsupported}
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, Driver: d})
	require.NoError(t, err)
	require.NoError(t, w.Activate(ttl, renew))
	require.True(t, w.Active(), "kept: it still resets the host, with its own timeout")
	require.NoError(t, w.Check(ttl, renew), "automatic never blocks a promotion")
	require.NoError(t, w.Disable())

	missing, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, Device: filepath.Join(t.TempDir(), "none")})
	require.NoError(t, err)
	require.NoError(t, missing.Activate(ttl, renew))
	require.False(t, missing.Active())
}

func TestOffOpensNothing(t *testing.T) {
	t.Parallel()
	d := &fakeDriver{}
	w, err := watchdog.New(watchdog.Config{Driver: d})
	require.NoError(t, err)
	require.Equal(t, watchdog.ModeOff, w.Mode())
	require.NoError(t, w.Activate(ttl, renew))
	require.NoError(t, w.Check(time.Second, time.Minute))
	require.False(t, w.Active())
	require.Empty(t, d.events())
}

// The real driver on a regular file: the ioctl fails (ENOTTY) with
// ErrUnsupported, the keepalives and the magic close land in the file.
func TestFileDriverOnARegularFile(t *testing.T) {
	t.Parallel()
	dev := filepath.Join(t.TempDir(), "watchdog")
	require.NoError(t, os.WriteFile(dev, nil, 0o600))
	var fd watchdog.FileDriver
	require.ErrorContains(t, fd.Check(dev), "not a character device")
	d, err := fd.Open(dev)
	require.NoError(t, err)
	_, err = d.SetTimeout(25 * time.Second)
	require.ErrorIs(t, err, watchdog.ErrUnsupported)
	require.NoError(t, d.Keepalive())
	require.NoError(t, d.Close())
	b, err := os.ReadFile(dev)
	require.NoError(t, err)
	require.Equal(t, "1V", string(b))

	// Required mode never opens it.
	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Device: dev})
	require.NoError(t, err)
	require.ErrorIs(t, w.Activate(ttl, renew), watchdog.ErrNotActivated)
	b, _ = os.ReadFile(dev)
	require.Equal(t, "1V", string(b))
	// /dev/null is a writable character device, but not a watchdog.
	if _, err := os.Stat("/dev/null"); err == nil {
		require.NoError(t, fd.Check("/dev/null"))
		d, err := fd.Open("/dev/null")
		require.NoError(t, err)
		_, err = d.SetTimeout(time.Second)
		require.ErrorIs(t, err, watchdog.ErrUnsupported)
		require.NoError(t, d.Close())
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := watchdog.New(watchdog.Config{Mode: watchdog.Mode(7)})
	require.ErrorContains(t, err, "unknown mode")
	_, err = watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, Device: "  "})
	require.ErrorContains(t, err, "blank")
}

package watchdog

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Errors the package returns.
var (
	// ErrUnsupported: the device cannot set (or report) its timeout, as a
	// regular file or a device without WDIOC_SETTIMEOUT cannot.
	ErrUnsupported = errors.New("watchdog: the device does not support setting its timeout")
	// ErrNotActivated: the mode is required and the watchdog could not be
	// activated with a safe timeout. The node must not be primary.
	ErrNotActivated = errors.New("watchdog: required but could not be activated")
)

// Mode is how the node uses the watchdog (watchdog.mode).
type Mode int

const (
	// ModeOff never opens the device (the zero value).
	ModeOff Mode = iota
	// ModeAutomatic uses the device when it works and runs without it
	// otherwise (Patroni's default).
	ModeAutomatic
	// ModeRequired refuses to let the node be primary without a watchdog
	// that is armed with a safe timeout.
	ModeRequired
)

// String returns Patroni's name of the mode.
func (m Mode) String() string {
	switch m {
	case ModeOff:
		return "off"
	case ModeAutomatic:
		return "automatic"
	case ModeRequired:
		return "required"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode reads watchdog.mode with Patroni's spellings: off, disable,
// disabled, false (and "") are ModeOff; automatic, auto and true are
// ModeAutomatic; required and require are ModeRequired. Case does not
// matter. Anything else is an error (Patroni logs a warning and turns the
// watchdog off).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "off", "disable", "disabled", "false":
		return ModeOff, nil
	case "automatic", "auto", "true":
		return ModeAutomatic, nil
	case "required", "require":
		return ModeRequired, nil
	}
	return ModeOff, fmt.Errorf("watchdog: mode must be off, automatic or required, not %q", s)
}

// DefaultDevice is the device Patroni opens by default.
const DefaultDevice = "/dev/watchdog"

// DefaultSafetyMargin is Patroni's default watchdog.safety_margin.
const DefaultSafetyMargin = 5 * time.Second

// Device is an open watchdog device. Implementations need not be safe for
// concurrent use: Watchdog serialises its calls.
type Device interface {
	// Keepalive restarts the device's countdown.
	Keepalive() error
	// SetTimeout asks for a countdown of d (whole seconds, rounded up) and
	// returns the timeout in force afterwards, which may differ. A device
	// that cannot set it returns an error wrapping ErrUnsupported.
	SetTimeout(d time.Duration) (time.Duration, error)
	// Close disables the countdown (the magic close: 'V' written just
	// before closing) and closes the device.
	Close() error
}

// Driver finds and opens watchdog devices. FileDriver is the real one; a
// test may provide its own to observe keepalives and timeouts.
type Driver interface {
	// Check reports whether the device at path looks usable, without
	// opening it (opening a watchdog arms it).
	Check(path string) error
	// Open opens the device at path, which arms it.
	Open(path string) (Device, error)
}

// Config configures a Watchdog. The zero value is a watchdog that is off.
type Config struct {
	// Mode is off (default), automatic or required.
	Mode Mode
	// Device is the device path (watchdog.device). Default /dev/watchdog.
	Device string
	// SafetyMargin is how long before the leader key would expire the
	// watchdog fires when it was not kept alive (watchdog.safety_margin):
	// the timeout is ttl - SafetyMargin. Zero means the default, 5s; a
	// negative value sets the timeout to half the TTL (Patroni's -1).
	SafetyMargin time.Duration
	// Driver opens the device. Default FileDriver{}.
	Driver Driver
	// Logger receives the watchdog's logs. nil means no logging.
	Logger hclog.Logger
}

// Validate reports a configuration that cannot be used.
func (c Config) Validate() error {
	switch c.Mode {
	case ModeOff, ModeAutomatic, ModeRequired:
	default:
		return fmt.Errorf("watchdog: unknown mode %d", int(c.Mode))
	}
	if c.Device != "" && strings.TrimSpace(c.Device) == "" {
		return errors.New("watchdog: Device is blank")
	}
	return nil
}

// Watchdog arms, keeps alive and disables one watchdog device for a node
// that may become primary. It is safe for concurrent use. In ModeOff every
// method does nothing.
type Watchdog struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	dev     Device
	timeout time.Duration // in force while dev is open; 0 when unknown
	want    time.Duration // the timeout asked for
	failed  error         // the last activation failure in required mode
	warned  string        // the last warning logged, to log each once
}

// New validates cfg and returns a Watchdog. It opens nothing.
func New(cfg Config) (*Watchdog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Device == "" {
		cfg.Device = DefaultDevice
	}
	if cfg.SafetyMargin == 0 {
		cfg.SafetyMargin = DefaultSafetyMargin
	}
	if cfg.Driver == nil {
		cfg.Driver = FileDriver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Watchdog{cfg: cfg, log: cfg.Logger.Named("watchdog").With("device", cfg.Device)}, nil
}

// Mode returns the configured mode.
func (w *Watchdog) Mode() Mode { return w.cfg.Mode }

// TimeoutFor is the timeout the watchdog asks for under lease ttl:
// ttl - SafetyMargin, or ttl/2 with a negative SafetyMargin.
func (w *Watchdog) TimeoutFor(ttl time.Duration) time.Duration {
	if w.cfg.SafetyMargin < 0 {
		return ttl / 2
	}
	return ttl - w.cfg.SafetyMargin
}

// Check reports why a required watchdog cannot protect a primary under
// lease ttl with keepalives every interval; nil when it can, and always
// nil in the other modes. It does not open the device. A failed
// activation in required mode is remembered and reported until Reset.
func (w *Watchdog) Check(ttl, interval time.Duration) error {
	if w.cfg.Mode != ModeRequired {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed != nil {
		return w.failed
	}
	if w.dev != nil {
		return nil
	}
	return w.checkLocked(ttl, interval)
}

func (w *Watchdog) checkLocked(ttl, interval time.Duration) error {
	if t := w.TimeoutFor(ttl); t <= interval {
		return fmt.Errorf("%w: timeout %s (ttl %s, safety margin %s) leaves no room for keepalives every %s",
			ErrNotActivated, t, ttl, w.cfg.SafetyMargin, interval)
	}
	if err := w.cfg.Driver.Check(w.cfg.Device); err != nil {
		return fmt.Errorf("%w: %w", ErrNotActivated, err)
	}
	return nil
}

// Activate arms the watchdog for a primary under lease ttl, kept alive
// every interval: it opens the device if it is not open, sets its timeout
// to TimeoutFor(ttl) (again when ttl changed) and, when it opened it, keeps
// it alive once. On an armed watchdog it sends no keepalive: only
// Keepalive, after a renewal of the leader key, does.
// In automatic mode a failure is logged and Activate returns nil (the node
// runs without, or with a device whose timeout it could not set). In
// required mode it returns an error wrapping ErrNotActivated, closes the
// device, and Check reports that error until Reset.
func (w *Watchdog) Activate(ttl, interval time.Duration) error {
	if w.cfg.Mode == ModeOff {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.activateLocked(ttl, interval)
	if err == nil {
		return nil
	}
	if w.cfg.Mode == ModeRequired {
		w.closeLocked()
		err = fmt.Errorf("%w: %w", ErrNotActivated, err)
		w.failed = err
		w.log.Error("the watchdog is required but could not be activated; this node will not be primary", "error", err)
		return err
	}
	w.warnOnce("running without a usable watchdog (mode automatic)", err)
	return nil
}

func (w *Watchdog) activateLocked(ttl, interval time.Duration) error {
	want := w.TimeoutFor(ttl)
	if want <= interval {
		if w.dev != nil && w.cfg.Mode != ModeRequired {
			w.closeLocked()
		}
		return fmt.Errorf("timeout %s (ttl %s, safety margin %s) leaves no room for keepalives every %s",
			want, ttl, w.cfg.SafetyMargin, interval)
	}
	if w.cfg.Mode == ModeRequired && w.failed != nil {
		return w.failed
	}
	opened := false
	if w.dev == nil {
		if w.cfg.Mode == ModeRequired {
			if err := w.cfg.Driver.Check(w.cfg.Device); err != nil {
				return err
			}
		}
		dev, err := w.cfg.Driver.Open(w.cfg.Device)
		if err != nil {
			return err
		}
		w.dev, w.timeout, w.want, opened = dev, 0, 0, true
	}
	if w.want != want {
		w.want = want
		got, err := w.dev.SetTimeout(want)
		switch {
		case err != nil && w.cfg.Mode == ModeRequired:
			return fmt.Errorf("setting the timeout to %s: %w", want, err)
		case err != nil:
			w.timeout = 0
			w.warnOnce("could not set the watchdog timeout; keeping the device's own", err)
		case got > want && w.cfg.Mode == ModeRequired:
			return fmt.Errorf("the device's timeout is %s, longer than the safe %s", got, want)
		case got > want:
			w.timeout = got
			w.warnOnce(fmt.Sprintf("the device's timeout %s is longer than the safe %s", got, want), nil)
		case got <= interval:
			w.timeout = got
			if w.cfg.Mode == ModeRequired {
				return fmt.Errorf("the device's timeout %s is too short for keepalives every %s", got, interval)
			}
			w.warnOnce(fmt.Sprintf("the device's timeout %s is too short for keepalives every %s", got, interval), nil)
		default:
			w.timeout = got
		}
	}
	if !opened {
		// Only renewals of the leader key keep an armed watchdog alive.
		return nil
	}
	if err := w.dev.Keepalive(); err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	w.log.Info("watchdog activated", "timeout", w.timeout, "asked", want, "mode", w.cfg.Mode.String())
	return nil
}

// Keepalive restarts the countdown of an active watchdog; it does nothing
// when the watchdog is not active.
func (w *Watchdog) Keepalive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dev == nil {
		return nil
	}
	if err := w.dev.Keepalive(); err != nil {
		w.log.Error("watchdog keepalive failed", "error", err)
		return fmt.Errorf("watchdog: keepalive: %w", err)
	}
	return nil
}

// Disable stops an active watchdog with the magic close; it does nothing
// when the watchdog is not active.
func (w *Watchdog) Disable() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dev == nil {
		return nil
	}
	err := w.closeLocked()
	if err != nil {
		w.log.Error("disabling the watchdog failed", "error", err)
		return fmt.Errorf("watchdog: disable: %w", err)
	}
	w.log.Info("watchdog disabled")
	return nil
}

func (w *Watchdog) closeLocked() error {
	if w.dev == nil {
		return nil
	}
	err := w.dev.Close()
	w.dev, w.timeout, w.want = nil, 0, 0
	return err
}

// Active reports whether the device is open (armed).
func (w *Watchdog) Active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dev != nil
}

// Timeout returns the timeout in force while active (0 when not active or
// when the device could not report it).
func (w *Watchdog) Timeout() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.timeout
}

// Reset forgets a failed activation, so Check and Activate try the device
// again.
func (w *Watchdog) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failed = nil
	w.warned = ""
}

func (w *Watchdog) warnOnce(msg string, err error) {
	key := msg
	if err != nil {
		key += ": " + err.Error()
	}
	if key == w.warned {
		return
	}
	w.warned = key
	if err != nil {
		w.log.Warn(msg, "error", err)
	} else {
		w.log.Warn(msg)
	}
}

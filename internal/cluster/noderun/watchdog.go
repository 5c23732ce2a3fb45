package noderun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgha/pgha/ha/watchdog"
)

// The bytes a node writes to an emulated watchdog device (a named pipe the
// test harness reads, see cluster.Fencer). The first two are what
// watchdog.FileDriver writes to a real device.
const (
	// WatchdogKeepalive restarts the countdown.
	WatchdogKeepalive byte = '1'
	// WatchdogMagicClose is written just before the device is closed: it
	// disarms the countdown.
	WatchdogMagicClose byte = 'V'
	// WatchdogSetTimeout starts a record "T<seconds>\n", the emulated
	// WDIOC_SETTIMEOUT ioctl: the countdown becomes that many seconds and,
	// as the kernel's ioctl does, restarts.
	WatchdogSetTimeout byte = 'T'
)

// WatchdogDriver is the watchdog.Driver of a harness node whose watchdog
// device is emulated by the test harness: the device is a named pipe that
// the harness reads (cluster.Fencer), and the harness, not the kernel,
// resets the "host" (kills the node's agent and Postgres) when the
// keepalives stop. It behaves like watchdog.FileDriver on a real device,
// except that setting the timeout, which a pipe cannot do by ioctl, is
// written to the pipe as a record (WatchdogSetTimeout) that the harness
// obeys, so a node can run with watchdog.ModeRequired. Like a real device
// it takes whole seconds, rounded up.
//
// It is test support: ha/watchdog and real devices are not affected.
type WatchdogDriver struct{}

var _ watchdog.Driver = WatchdogDriver{}

// Check reports whether path is a writable named pipe.
func (WatchdogDriver) Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is not a named pipe (the harness's emulated watchdog)", path)
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("%s is not writable: %w", path, err)
	}
	return nil
}

// Open opens the pipe for writing, which arms the emulated device. It
// fails at once, rather than waiting, when the harness is not reading the
// pipe.
func (WatchdogDriver) Open(path string) (watchdog.Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return nil, fmt.Errorf("%s: nobody emulates this watchdog (no reader on the pipe): %w", path, err)
		}
		return nil, err
	}
	return &pipeDevice{f: f}, nil
}

type pipeDevice struct {
	f *os.File
}

func (d *pipeDevice) Keepalive() error {
	_, err := d.f.Write([]byte{WatchdogKeepalive})
	return err
}

func (d *pipeDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	if t <= 0 {
		return 0, fmt.Errorf("watchdog timeout %s is not positive", t)
	}
	secs := int64((t + time.Second - 1) / time.Second)
	if _, err := fmt.Fprintf(d.f, "%c%d\n", WatchdogSetTimeout, secs); err != nil {
		return 0, err
	}
	return time.Duration(secs) * time.Second, nil
}

func (d *pipeDevice) Close() error {
	_, werr := d.f.Write([]byte{WatchdogMagicClose})
	return errors.Join(werr, d.f.Close())
}

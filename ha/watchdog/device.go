package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// FileDriver is the real driver: Open opens the path write-only, Keepalive
// writes a byte to it, SetTimeout uses the WDIOC_SETTIMEOUT and
// WDIOC_GETTIMEOUT ioctls (Linux), and Close writes the magic 'V' before
// closing, so that a driver built with nowayout unset disarms.
//
// Any writable file can be opened, which is how tests observe keepalives:
// a regular file collects the bytes written ("1" per keepalive, "V" on
// close), and SetTimeout fails on it with ErrUnsupported because the ioctl
// does (ENOTTY). Check, which only required mode consults, insists on a
// character device.
type FileDriver struct{}

var _ Driver = FileDriver{}

// Check reports whether path is a writable character device.
func (FileDriver) Check(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a character device", path)
	}
	if err := writable(path); err != nil {
		return fmt.Errorf("%s is not writable: %w", path, err)
	}
	return nil
}

// Open opens the device, which arms it.
func (FileDriver) Open(path string) (Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	return &fileDevice{f: f}, nil
}

type fileDevice struct {
	f *os.File
}

func (d *fileDevice) Keepalive() error {
	_, err := d.f.Write([]byte{'1'})
	return err
}

func (d *fileDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	secs := int((t + time.Second - 1) / time.Second)
	got, err := setTimeout(d.f, secs)
	if err != nil {
		return 0, err
	}
	return time.Duration(got) * time.Second, nil
}

func (d *fileDevice) Close() error {
	_, werr := d.f.Write([]byte{'V'})
	return errors.Join(werr, d.f.Close())
}

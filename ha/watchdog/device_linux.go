package watchdog

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func setTimeout(f *os.File, secs int) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var ierr error
	err = rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.WDIOC_SETTIMEOUT, secs); ierr != nil {
			return
		}
		got, ierr = unix.IoctlGetInt(int(fd), unix.WDIOC_GETTIMEOUT)
	})
	if err == nil {
		err = ierr
	}
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return 0, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return got, err
}

func writable(path string) error { return unix.Access(path, unix.W_OK) }

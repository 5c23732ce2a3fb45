package watchdog_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgha/pgha/ha/watchdog"
)

// A regular file stands in for /dev/watchdog: in automatic mode the
// watchdog uses it although its timeout cannot be set, and the file shows
// the keepalives and the magic close.
func Example() {
	dir, _ := os.MkdirTemp("", "watchdog")
	defer os.RemoveAll(dir)
	dev := filepath.Join(dir, "watchdog")
	_ = os.WriteFile(dev, nil, 0o600)

	w, _ := watchdog.New(watchdog.Config{Mode: watchdog.ModeAutomatic, Device: dev})
	fmt.Println(w.Activate(30*time.Second, 7500*time.Millisecond), w.Active())
	_ = w.Keepalive()
	_ = w.Keepalive()
	_ = w.Disable()
	b, _ := os.ReadFile(dev)
	fmt.Printf("%s %v\n", b, w.Active())

	req, _ := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired, Device: dev})
	err := req.Check(30*time.Second, 7500*time.Millisecond)
	fmt.Println(errors.Is(err, watchdog.ErrNotActivated), strings.Replace(err.Error(), dir, "DIR", 1))
	// Output:
	// <nil> true
	// 111V false
	// true watchdog: required but could not be activated: DIR/watchdog is not a character device
}

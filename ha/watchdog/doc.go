// Package watchdog drives a Linux watchdog device (/dev/watchdog, softdog
// or a hardware timer) for a node that may become primary, the way
// Patroni's watchdog support does (SPEC.md 3.17): if the agent stops
// keeping the device alive, the kernel resets the host before the leader
// key can expire, so a frozen agent's Postgres cannot go on accepting
// writes after another member was promoted.
//
// # Usage
//
// ha.Node owns a Watchdog built from ha.Config.Watchdog; other callers use
// it directly:
//
//	w, err := watchdog.New(watchdog.Config{Mode: watchdog.ModeRequired})
//	if err := w.Check(ttl, renew); err != nil { /* must not race for the leader key */ }
//	if err := w.Activate(ttl, renew); err != nil { /* must not promote */ }
//	// after every successful renewal of the leader key:
//	w.Keepalive()
//	// after Postgres stopped being a primary (demote, stop, pause):
//	w.Disable()
//
// The timeout asked of the device is ttl - SafetyMargin (default 5s), or
// ttl/2 with a negative SafetyMargin (Patroni's safety_margin: -1), set
// with the WDIOC_SETTIMEOUT ioctl. Disable writes the magic 'V' before
// closing, which stops the countdown unless the driver was built with
// nowayout.
//
// # Modes
//
//   - [ModeOff]: nothing is opened (the zero value).
//   - [ModeAutomatic]: Activate uses the device if it can and logs a
//     warning otherwise: a missing device, one whose timeout cannot be set
//     or is longer than the safe one. The node runs anyway.
//   - [ModeRequired]: Check fails when the device is not a writable
//     character device or the timeout leaves no room for keepalives, and
//     Activate fails unless the device is armed with a timeout no longer
//     than the safe one. A failed activation is remembered (Check reports
//     it) until Reset, as Patroni stops trying until its configuration
//     changes. ha.Node then neither races for nor keeps the leader key and
//     publishes watchdog_failed.
//
// # Testing
//
// [Driver] is the seam: [FileDriver] opens any writable file, so a
// regular file records the keepalives ("1") and the magic close ("V"),
// while its ioctl fails with [ErrUnsupported]; a test driver can record
// the timeouts set and make any step fail.
//
// # Errors
//
//   - [ErrNotActivated]: required mode, and the device is unusable or
//     could not be armed safely.
//   - [ErrUnsupported]: the device cannot set its timeout.
package watchdog

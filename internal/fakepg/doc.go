// Package fakepg is a scripted, in-memory PostgreSQL instance that implements
// the ha package's Postgres interface, for multi-node tests of the HA loop
// without processes, sockets or binaries.
//
// Test support; not covered by compatibility promises.
//
// # Usage
//
// A World holds the instances of one test and lets replicas stream from the
// instance they are configured to follow, found by host:port. Each Instance
// models one data directory and its postmaster:
//
//	w := fakepg.NewWorld()
//	p, _ := w.NewInstance(fakepg.Config{Name: "node1"}) // node1:5432
//	r, _ := w.NewInstance(fakepg.Config{Name: "node2"}) // node2:5432
//	_ = p.Initdb(ctx, pg.InitdbOptions{})
//	_ = p.Start(ctx)                                     // a writable primary on timeline 1
//	_ = r.Clone(ctx, pg.Upstream{Host: "node1", Port: 5432}, nil)
//	_ = r.Start(ctx)                                     // a replica streaming from node1
//	lsn, _ := p.Write(1 << 20)                           // WAL on the primary reaches
//	fmt.Println(r.Info().LSN == lsn)                     // the replica at once: true
//
// # What is modelled
//
// An instance has an empty or initialized data directory (system identifier,
// timeline, timeline history, end of WAL, last checkpoint, the
// "Database cluster state" of pg_control, standby.signal and its upstream,
// backup_label) and a postmaster that is stopped, starting (during a delayed
// Start) or running as a primary or a replica.
//
//   - WAL moves only when the test calls Instance.Write on a primary (and by the
//     small records that checkpoints, shutdown checkpoints and promotions
//     write). Streaming is immediate: after every change, each running replica
//     whose upstream runs and whose history is compatible with the upstream's
//     takes the upstream's end of WAL, timeline and history, so cascades and
//     timeline switches propagate as with recovery_target_timeline = 'latest'.
//     Instance.PauseStreaming holds a replica back to make it lag.
//   - Histories are checked as PostgreSQL checks them: a replica on a timeline
//     the upstream left before the replica's end of WAL, or on a newer
//     timeline, or of another system, does not stream (its WAL receiver is
//     absent) until it is rewound or re-cloned.
//   - Stop(fast|smart) writes a shutdown checkpoint, which the replicas
//     receive, and leaves "shut down" ("shut down in recovery" on a replica);
//     Stop(immediate) and Crash leave "in production" ("in archive recovery"
//     on a replica). Crash also reports a pg.ExitEvent on Exits.
//   - Promote moves to the next timeline with a history entry at the switch
//     point; Clone copies the upstream's system identifier, timeline, history
//     and position (and leaves a backup_label and standby.signal); Rewind
//     takes the source's history when the histories diverged and reports
//     whether it had to; CrashRecovery turns an unclean shutdown into a clean
//     one and refuses a crashed replica, as pg does.
//
// With Config.DataDir set, the instance mirrors the files the ha package
// looks at on disk (PG_VERSION, standby.signal, backup_label) in that
// directory, and treats a directory removed behind its back (a
// reinitialization) as empty. Without it nothing touches the disk.
//
// # Scripting failures
//
// FailNext and DelayNext script the next calls of one operation, the way
// pgx's pgmock scripts a server: inst.FailNext(fakepg.OpPromote, err) makes
// the next Promote return err without acting; inst.DelayNext(fakepg.OpStart,
// d) makes the next Start wait d first (on the clock, so instantly inside a
// testing/synctest bubble), ending early with the context. A delayed Start
// shows a postmaster that runs but does not accept connections yet, as a real
// one does while it starts, and a Stop in the meantime aborts it. A delayed
// Stop is a slow shutdown: the server refuses connections and writes at once
// and exits d later, even if the caller's context ends first (a later
// Stop(immediate) ends it at once). A failed Stop is a signal that could not
// be sent: the server runs on. Calls counts every call of an operation,
// failed or not.
//
// # Checking safety
//
// World.Events is the ordered log of every state change (start, stop, crash,
// promote, clone, rewind, ...), each with the set of instances writable right
// after it; World.MaxWritable is the largest such set ever seen, so
// require.Equal(t, 1, w.MaxWritable()) proves there never were two writable
// primaries at once, and the log shows whether the old primary stopped before
// the new one was promoted. Instance.Writable and World.Writable give the
// state now.
//
// # Differences from pg.Instance
//
// Operations take effect at once unless delayed, and a Start whose context
// ends during a delay gives up (a real one leaves Postgres starting).
// Replay is never behind receipt. There are no parameters, slots, roles or
// files other than the markers above; EnsureRoles and Checkpoint only check
// that the server runs (a checkpoint on a primary also writes its WAL
// record).
//
// The compile-time check that *Instance implements ha.Postgres lives in this
// package's tests, so that fakepg does not import ha and the ha package's own
// internal tests may use it.
package fakepg

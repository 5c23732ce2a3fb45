// Package history is the workload and history checker of RELIABILITY.md
// section 4: it decides from acknowledged writes, never from role labels,
// whether a cluster lost acknowledged writes, let two primaries accept
// writes, showed values that later vanished, or failed to converge.
//
// # Workload
//
// [Workload] runs writer and reader clients against a cluster. Each write
// is one explicit transaction inserting a unique id; the server stamps the
// row in the INSERT itself with its port, its timeline (from the current WAL
// file name) and pg_current_wal_lsn(), and returns the stamp. Every
// operation is recorded in a [History] with its invoke and complete times
// on one monotonic clock and a result:
//
//   - [OK]: COMMIT succeeded with no "canceling wait for synchronous
//     replication" warning;
//   - [Fail]: certainly not applied (the error came before COMMIT was sent,
//     or the server rolled back);
//   - [Info]: indeterminate (an error or lost connection during COMMIT, or
//     the sync-wait warning). The client then continues as a new process.
//
// After healing, [ReadFinal] reads every node: the primary first, then each
// replica once it replayed the primary's position.
//
// # Checks
//
// [Check] is a pure function of the operations and the final state. It
// reports, each as a [Violation] with the op ids and a one-line reason:
// lost acknowledged writes ([CheckLost]), failed or never-attempted values
// that appear ([CheckUnexpected]), values seen and later gone
// ([CheckDisappeared]), replica reads of values not in the final set
// ([CheckPhantom]), two writers from the server stamps ([CheckTwoWriters]:
// two nodes on one timeline, an older timeline acknowledging a write sent
// after a newer one acknowledged one, a process going back in timelines),
// and non-convergence ([CheckConvergence]). Which checks must be empty
// depends on the replication mode; the caller decides.
//
// Test support; not covered by compatibility promises.
package history

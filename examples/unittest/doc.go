// Package unittest shows how an application tests its data layer against a
// fake DCS (dcs/memdcs) instead of a real HA cluster: no etcd, no agents, and
// no Postgres role change. The tests point fake members at ordinary test
// databases, then move the leader key, announce a switchover, or cut a
// member off the DCS, and check that the data layer follows.
//
// It has three parts, each meant to be copied into your own code:
//
//   - [Orders], a data layer written against [routing.Router]: writes
//     through Router.Write, reads through Router.Read with the
//     read-your-writes token the write returned;
//   - [FakeCluster], the test helper: a memdcs server with one client per
//     member, a read-only client for the router, and methods to move the
//     leader ([FakeCluster.Lead]), announce a planned switchover
//     ([FakeCluster.AnnounceSwitchover]), partition a member and let its lease
//     run out ([FakeCluster.Partition], [FakeCluster.Advance]);
//   - orders_test.go, the tests themselves, against two standalone
//     PostgreSQL servers started for the test.
//
// Moving the leader key in the fake DCS changes no Postgres role: both test
// databases stay writable. That is the point. The router decides from the
// DCS alone (with Config.ProbeInterval -1 it does not probe the servers), so
// a test sees exactly where the application's writes and reads would go
// after a failover, in milliseconds, and can check that the rows landed
// there.
package unittest

// Package memdcs is an in-memory dcs.Store with a controllable clock and
// fault hooks, for unit tests of code that uses pgha (your service, the
// router, the HA loop) without etcd.
//
// # Usage
//
// A Server holds the state; each node gets its own client from
// Server.Client, which implements dcs.Store with the same semantics as the
// etcd store (both pass dcs/dcstest): a global revision, create-if-absent and
// revision-guarded writes, one lease per node shared by its member and leader
// keys, leader-fenced writes, an ordered watch.
//
//	srv := memdcs.NewServer(memdcs.Options{Clock: memdcs.NewFakeClock(start)})
//	node1, _ := srv.Client(memdcs.ClientConfig{Path: dcs.Path{Scope: "demo"}, Name: "node1"})
//
// # Time
//
// Leases expire when the server's Clock passes their deadline. With the
// default real clock that is wall time, which inside a testing/synctest
// bubble is virtual, so a 30 s TTL passes instantly. With a FakeClock, time
// moves only when the test calls Advance, and expiries (with their watch
// events) happen inside that call.
//
// # Faults
//
// Partition and Heal cut one node off the store (calls fail with
// dcs.ErrUnavailable; its watch holds its events and delivers them in order
// after Heal; its lease keeps running down). ExpireLease and ExpireLeaseID
// expire a lease now. FailNext fails the next N calls of a node without
// touching the store; DelayNext makes them wait on the clock first. Put and
// Get read and write raw keys as an outside tool would, to test how your code
// copes with values it did not write.
//
// # Lifecycle
//
// Client.Close ends the client's watches and waits for their goroutines; it
// leaves the lease to expire (Resign revokes it). A Server needs no closing.
package memdcs

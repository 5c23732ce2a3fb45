// Command webapp is a small JSON service backed by a pgha (or Patroni)
// cluster through package routing: the example an application developer
// copies. It serves the notes API (package notes): writes through
// Router.Write to the current primary, reads from replicas within a lag
// bound, read-your-writes through the LSN token each write returns in a
// header and a cookie, and a graceful shutdown.
//
//	webapp -dcs-url etcd3://127.0.0.1:2379/service -scope demo -db 'user=postgres password=demo dbname=postgres'
//	webapp -hosts 10.0.0.1:5432,10.0.0.2:5432 -db '...'     (no DCS: the router probes the hosts)
//
// On SIGINT or SIGTERM it stops in this order: /readyz answers 503 (load
// balancers stop sending requests), the HTTP server stops accepting and
// waits for the requests in flight (up to -shutdown-timeout), then the
// router closes its pools and the DCS client closes.
//
// The load generator that shows it staying up across a switchover is
// ./load (package loadgen). See README.md.
package main

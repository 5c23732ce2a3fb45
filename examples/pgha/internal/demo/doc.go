// Package demo is `pgha demo`: an embedded etcd and a cluster of pgha nodes
// (each a `pgha run` process with its own patroni.yml) on loopback, on free
// ports, with everything under one directory; a live `list` table and the
// connection strings on the screen; and, on Ctrl-C, every node stopped (each
// stops its Postgres and releases the leader key), etcd stopped and the
// directory removed unless --keep.
//
// It finds the PostgreSQL binaries as package pg does and, when they are
// missing, says what to install for the machine's distribution.
//
// The reference daemon's internals; not covered by compatibility promises.
package demo

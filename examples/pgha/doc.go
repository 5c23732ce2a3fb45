// Command pgha is the reference daemon and command-line tool built from the
// pgha packages: a Patroni replacement that a Patroni user can start with
// their patroni.yml, operate with patronictl's commands, and put behind the
// same HAProxy configuration.
//
//	pgha run CONFIG.yml                  run a node (SIGTERM/SIGINT: clean stop; SIGHUP: reload)
//	pgha --validate-config CONFIG.yml    print every problem of a configuration with its key path
//	pgha demo [--dir DIR] [--keep]       etcd and a 3-node cluster on this machine
//	pgha [-c CONFIG] [--dcs-url etcd3://host:port/namespace] COMMAND ...
//
// Commands: list (-e, -f json|yaml|tsv, -W, -w N), topology, switchover
// (--leader, --candidate, --scheduled, --force), failover (--candidate,
// --force), restart, reload, reinit (--from-leader, --wait), pause and
// resume (--wait), history, show-config, edit-config (--set k=v, --pg k=v,
// --apply, --replace, --force), remove, version.
//
// Exit codes: 0 done; 1 the operation failed, was refused or not
// confirmed; 2 a bad command line or configuration; 3 the DCS could not be
// reached or the cluster is not in it.
//
// See the config, daemon, ctl and demo packages under internal/ for the
// details.
package main

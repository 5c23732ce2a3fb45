// Package ctl is pgha's patronictl: the CLI subcommands that read the
// cluster from etcd and act through the members' REST API, as patronictl
// does, with the same prompts, output formats and confirmations.
//
// # Usage
//
//	code := ctl.Run(ctx, "list", []string{"-c", "/etc/patroni/patroni.yml", "-e"}, ctl.IO{Stdout: os.Stdout, ...})
//
// Commands: list, topology, switchover, failover, restart, reload, reinit,
// pause, resume, history, show-config, edit-config, remove, version. Reads
// use a read-only etcd client (dcs/etcddcs with no member name);
// switchover, failover, restart, reload, reinit and pause/resume call the
// REST API of the leader (or the member named); switchover and failover
// fall back to writing /failover in the DCS when the REST API does not
// answer, and pause/resume to a compare-and-swap of /config; edit-config
// writes /config with a compare-and-swap on the version it read.
//
// # Errors
//
// Run returns an exit code: ExitOK, ExitFailed (refused, failed or not
// confirmed), ExitUsage (command line or configuration), ExitDCS (etcd
// unreachable, or the cluster is not there). Messages go to standard error
// as "Error: ...".
//
// The reference daemon's internals; not covered by compatibility promises.
package ctl

// Package config reads the configuration of a pgha node from a
// patroni.yml-shaped YAML file and PATRONI_* / PGHA_* environment variables,
// checks it, and maps it onto the library's configurations (pg.Config,
// etcddcs.Config, ha.Config).
//
// A user with a working patroni.yml for etcd can start pgha with it. Every
// key Patroni knows is either honoured, or reported with its key path as a
// warning that says what pgha does instead ("not implemented yet", "ignored:
// ..."); keys Patroni does not know are warned about by name. Only what
// cannot work is an error: a missing name, scope, listen address, data
// directory or replication role, a DCS other than etcd, a value of the wrong
// type, an unknown watchdog mode, a callback command with an unbalanced
// quote.
//
// # Usage
//
//	c, err := config.Load("/etc/patroni/patroni.yml")
//	var inv *config.InvalidError
//	if errors.As(err, &inv) { // every problem, with its key path
//		for _, p := range inv.Problems { fmt.Println(p) }
//	}
//	for _, w := range c.Warnings() { log.Warn(w.String()) }
//	pgCfg, notes := c.PGConfig(dynamic) // dynamic: the DCS /config, or bootstrap.dcs
//	haCfg := c.HAConfig()
//	etcdCfg := c.EtcdConfig(retryTimeout)
//
// # Rules
//
// Patroni's precedence applies (SPEC.md 6.1): environment variables override
// the file (PGHA_X wins over PATRONI_X); local postgresql.parameters override
// the dynamic configuration's, except the protected parameters (wal_level,
// max_wal_senders, ...), which only the dynamic configuration sets. A
// directory path merges its *.yml files in alphabetical order.
//
// Test support and the reference daemon's internals; not covered by
// compatibility promises.
package config

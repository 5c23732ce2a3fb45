package config_test

import (
	"fmt"

	"github.com/pgha/pgha/examples/pgha/internal/config"
)

func ExampleParse() {
	yml := `
scope: shop
name: node1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
  username: admin
  password: secret
etcd3:
  hosts: 127.0.0.1:2379
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /var/lib/pgha/node1
  authentication:
    superuser: {username: postgres, password: su}
    replication: {username: replicator, password: repl}
  parameters:
    wal_level: logical
  unknown_thing: 1
watchdog:
  mode: automatic
`
	c, err := config.Parse([]byte(yml), "patroni.yml", []string{"PATRONI_RESTAPI_LISTEN=0.0.0.0:8008"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Name, c.RestAPI.Listen, c.APIURL(), c.Etcd.Endpoints)
	for _, p := range c.Problems {
		fmt.Println(p)
	}
	_, notes := c.PGConfig(nil)
	fmt.Println(notes)
	// Output:
	// node1 0.0.0.0:8008 http://127.0.0.1:8008/patroni [http://127.0.0.1:2379]
	// patroni.yml:7: restapi.username: Patroni reads this from restapi.authentication.username; pgha uses it for Basic auth on the unsafe endpoints
	// patroni.yml:8: restapi.password: Patroni reads this from restapi.authentication.password; pgha uses it for Basic auth on the unsafe endpoints
	// patroni.yml:20: postgresql.unknown_thing: unknown key, ignored (not a Patroni setting in this section)
	// [postgresql.parameters.wal_level: "logical" is ignored: this parameter comes only from the dynamic configuration (bootstrap.dcs.postgresql.parameters, or edit-config --pg), as in Patroni]
}

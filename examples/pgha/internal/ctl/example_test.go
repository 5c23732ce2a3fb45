package ctl_test

import (
	"os"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/examples/pgha/internal/ctl"
)

// RenderList prints what `pgha list` prints, from a cluster snapshot (here
// built from raw keys, as a store holds them).
func ExampleRenderList() {
	c := dcs.BuildCluster([]dcs.KeyValue{
		{Key: "initialize", Value: []byte("7712311896889841141"), ModRevision: 2},
		{Key: "leader", Value: []byte("node1"), ModRevision: 9},
		{Key: "status", Value: []byte(`{"optime":67108864}`), ModRevision: 10},
		{Key: "members/node1", ModRevision: 7, Value: []byte(`{"conn_url":"postgres://10.0.0.1:5432/postgres",` +
			`"api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","version":"0.1.0-pgha",` +
			`"xlog_location":67108864,"timeline":2}`)},
		{Key: "members/node2", ModRevision: 8, Value: []byte(`{"conn_url":"postgres://10.0.0.2:5432/postgres",` +
			`"api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","version":"0.1.0-pgha",` +
			`"xlog_location":50331648,"replication_state":"streaming","timeline":2,"tags":{"nofailover":true}}`)},
		{Key: "config", Value: []byte(`{"pause":true}`), ModRevision: 3},
	}, 10)
	ctl.RenderList(os.Stdout, c, "shop", ctl.ListOptions{})
	// Output:
	// + Cluster: shop ----+---------+-----------+----+-----------+------------------+
	// | Member | Host     | Role    | State     | TL | Lag in MB | Tags             |
	// +--------+----------+---------+-----------+----+-----------+------------------+
	// | node1  | 10.0.0.1 | Leader  | running   |  2 |           |                  |
	// | node2  | 10.0.0.2 | Replica | streaming |  2 |        16 | nofailover: true |
	// +--------+----------+---------+-----------+----+-----------+------------------+
	//  Maintenance mode: on
}

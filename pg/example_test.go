package pg_test

import (
	"context"
	"fmt"
	"log"

	"github.com/pgha/pgha/pg"
)

// Slot names follow Patroni's rule, so slots made by pgha and by Patroni
// for the same member agree.
func ExampleSlotName() {
	fmt.Println(pg.SlotName("pg-node-1.example.com"))
	fmt.Println(pg.SlotName("Node A"))
	// Output:
	// pg_node_1_example_com
	// nodeu0032a
}

// Protected parameters are validated; an invalid value falls back to
// Patroni's default, with the reason.
func ExampleResolveParameters() {
	p := pg.ResolveParameters(map[string]string{
		"max_wal_senders": "2",
		"wal_level":       "logical",
		"port":            "6543",
		"work_mem":        "16MB",
	})
	fmt.Println("wal_level:", p.Protected["wal_level"])
	fmt.Println("max_wal_senders:", p.Protected["max_wal_senders"])
	fmt.Println("in pgha.conf:", p.File)
	for _, a := range p.Adjusted {
		fmt.Println(a)
	}
	// Output:
	// wal_level: logical
	// max_wal_senders: 10
	// in pgha.conf: map[work_mem:16MB]
	// max_wal_senders="2" replaced by "10": must be at least 3
	// port="6543" ignored: set from Config.Port
}

func ExampleParseLSN() {
	l, err := pg.ParseLSN("16/B374D848")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(int64(l), l)
	fmt.Println("bytes behind:", int64(l-pg.LSN(0x16B374D000)))
	// Output:
	// 97500059720 16/B374D848
	// bytes behind: 2120
}

// The lifecycle of a primary and a replica. This example needs PostgreSQL
// and root or a postgres account, so it is compiled but not run.
func Example_lifecycle() {
	ctx := context.Background()
	primary, err := pg.New(ctx, pg.Config{
		Name:        "node1",
		DataDir:     "/var/lib/pgha/node1",
		Port:        5432,
		Superuser:   pg.Credentials{Username: "postgres", Password: "secret"},
		Replication: pg.Credentials{Username: "replicator", Password: "secret2"},
		HBA: []string{
			"local all all trust",
			"host all all 127.0.0.1/32 scram-sha-256",
			"host replication replicator 127.0.0.1/32 scram-sha-256",
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()
	if err := primary.Initdb(ctx, pg.InitdbOptions{DataChecksums: true}); err != nil {
		log.Fatal(err)
	}
	if err := primary.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := primary.EnsureRoles(ctx); err != nil {
		log.Fatal(err)
	}

	replica, err := pg.New(ctx, pg.Config{
		Name:        "node2",
		DataDir:     "/var/lib/pgha/node2",
		Port:        5433,
		Replication: pg.Credentials{Username: "replicator", Password: "secret2"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer replica.Close()
	up := pg.Upstream{Host: "127.0.0.1", Port: 5432}
	if err := replica.Clone(ctx, up, func(p pg.CloneProgress) { log.Printf("clone: %d%%", p.Percent) }); err != nil {
		log.Fatal(err)
	}
	if err := replica.Start(ctx); err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			select {
			case ev := <-replica.Exits():
				log.Printf("replica crashed: %v\n%s", ev, ev.LogTail)
			case <-ctx.Done():
				return
			}
		}
	}()

	// Failover: promote the replica, then rejoin the old primary.
	if err := replica.Promote(ctx); err != nil {
		log.Fatal(err)
	}
	if err := replica.Checkpoint(ctx); err != nil {
		log.Fatal(err)
	}
	if err := primary.Stop(ctx, pg.StopFast); err != nil {
		log.Fatal(err)
	}
	if _, err := primary.Rewind(ctx, pg.Upstream{Host: "127.0.0.1", Port: 5433}); err != nil {
		log.Fatal(err)
	}
	if err := primary.ConfigureStandby(ctx, pg.Upstream{Host: "127.0.0.1", Port: 5433, SlotName: pg.SlotName("node1")}); err != nil {
		log.Fatal(err)
	}
	if err := primary.Start(ctx); err != nil {
		log.Fatal(err)
	}
	st, err := primary.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Role, st.Timeline, st.ReplayLSN)
}

package unittest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/pgha/pgha/examples/unittest"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/pg"
	"github.com/pgha/pgha/routing"
)

// These tests are the example: how an application tests its data layer
// (Orders) against a fake DCS. The members point at two standalone
// PostgreSQL servers, db1 and db2, started once for the whole test (in
// your application: whatever test databases you already use). Neither is a
// replica of the other and both stay writable; the fake DCS alone says who
// leads, and each test checks on which server the rows land.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is one test database.
type server struct {
	name, addr string
	inst       *pg.Instance
}

func (s server) connString() string {
	return fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable", pgtest.SuperuserPassword, s.addr)
}

// items returns the items of order id on s ("" when absent).
func (s server) item(t *testing.T, id int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.connString())
	require.NoError(t, err)
	defer c.Close(context.Background())
	var item string
	err = c.QueryRow(ctx, "SELECT item FROM orders WHERE id = $1", id).Scan(&item)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return item
}

func (s server) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.connString())
	require.NoError(t, err)
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// fixture is one test's fake cluster over the two databases, and the data
// layer on a router that follows it.
type fixture struct {
	f       *unittest.FakeCluster
	router  *routing.Router
	orders  *unittest.Orders
	leaders chan string // each leader the router switched to ("" for none)
}

func newFixture(t *testing.T, scope string, db1, db2 server) *fixture {
	t.Helper()
	ctx := context.Background()
	f, err := unittest.NewFakeCluster(scope)
	require.NoError(t, err)
	t.Cleanup(f.Close)
	require.NoError(t, f.AddMember(ctx, db1.name, db1.addr))
	require.NoError(t, f.AddMember(ctx, db2.name, db2.addr))
	require.NoError(t, f.Lead(ctx, db1.name))

	fx := &fixture{f: f, leaders: make(chan string, 16)}
	fx.router, err = routing.New(ctx, routing.Config{
		Source:             routing.FromDCS(f.Reader()),
		ConnString:         "user=postgres dbname=postgres sslmode=disable password=" + pgtest.SuperuserPassword,
		ProbeInterval:      -1, // roles and lag from the DCS alone: the servers are not a real cluster
		ReadYourWritesWait: 20 * time.Millisecond,
		Hooks:              routing.Hooks{OnLeaderChange: func(_, e routing.Epoch) { fx.leaders <- e.Leader }},
	})
	require.NoError(t, err)
	t.Cleanup(fx.router.Close)
	fx.orders = unittest.NewOrders(fx.router)
	fx.awaitLeader(t, db1.name)
	return fx
}

// awaitLeader waits until the router has switched to leader.
func (fx *fixture) awaitLeader(t *testing.T, leader string) {
	t.Helper()
	for {
		select {
		case l := <-fx.leaders:
			if l == leader {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the router never followed the leader key to %q", leader)
		}
	}
}

func TestOrdersFollowTheFakeCluster(t *testing.T) {
	db1 := server{name: "db1", inst: pgtest.Init(t, pgtest.Config(t, "db1"))}
	db2 := server{name: "db2", inst: pgtest.Init(t, pgtest.Config(t, "db2"))}
	db1.addr = fmt.Sprintf("127.0.0.1:%d", db1.inst.Config().Port)
	db2.addr = fmt.Sprintf("127.0.0.1:%d", db2.inst.Config().Port)
	// The schema, and one order seeded differently on each server so that
	// a read shows where it went.
	for _, s := range []server{db1, db2} {
		s.exec(t, "CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
		s.exec(t, "INSERT INTO orders VALUES (100, $1)", "seeded on "+s.name)
	}
	ctx := context.Background()

	t.Run("writes follow the leader key, reads go to the replica", func(t *testing.T) {
		fx := newFixture(t, "follow", db1, db2)
		_, err := fx.orders.Place(ctx, 1, "book")
		require.NoError(t, err)
		require.Equal(t, "book", db1.item(t, 1))
		require.Empty(t, db2.item(t, 1))
		o, err := fx.orders.Get(ctx, 100, 0)
		require.NoError(t, err)
		require.Equal(t, "seeded on db2", o.Item, "a plain read goes to the replica")

		require.NoError(t, fx.f.Lead(ctx, "db2")) // a failover, as the DCS shows it
		fx.awaitLeader(t, "db2")
		_, err = fx.orders.Place(ctx, 2, "pen")
		require.NoError(t, err)
		require.Equal(t, "pen", db2.item(t, 2))
		require.Empty(t, db1.item(t, 2))
		o, err = fx.orders.Get(ctx, 100, 0)
		require.NoError(t, err)
		require.Equal(t, "seeded on db1", o.Item, "the old primary is the replica now")
	})

	t.Run("a read with the write's token sees the write", func(t *testing.T) {
		fx := newFixture(t, "ryw", db1, db2)
		token, err := fx.orders.Place(ctx, 3, "lamp")
		require.NoError(t, err)
		require.NotZero(t, token)
		// Without the token the read goes to the replica, which has not got
		// the order (here it never will: it is not a real replica).
		_, err = fx.orders.Get(ctx, 3, 0)
		require.ErrorIs(t, err, unittest.ErrNotFound)
		// With it, the router finds no replica that replayed it and reads
		// from the primary.
		o, err := fx.orders.Get(ctx, 3, token)
		require.NoError(t, err)
		require.Equal(t, "lamp", o.Item)
		require.Equal(t, db1.addr, o.Server)
	})

	t.Run("writes during a planned switchover wait for the new primary", func(t *testing.T) {
		fx := newFixture(t, "switchover", db1, db2)
		require.NoError(t, fx.f.AnnounceSwitchover(ctx, "db1", "db2"))
		require.NoError(t, routingEventually(func() bool { return fx.router.Stats().Holding }),
			"the router never held writes for the switchover")
		done := make(chan error, 1)
		go func() {
			_, err := fx.orders.Place(ctx, 4, "chair")
			done <- err
		}()
		// Held, the write has not gone to db1. Move the key: it goes to db2.
		require.NoError(t, fx.f.Lead(ctx, "db2"))
		require.NoError(t, <-done)
		require.Equal(t, "chair", db2.item(t, 4))
		require.Empty(t, db1.item(t, 4), "a write held for the switchover went to the old primary")
	})

	t.Run("a partitioned leader's lease runs out; writes wait, then go to the new leader", func(t *testing.T) {
		fx := newFixture(t, "partition", db1, db2)
		fx.f.Partition("db1")
		fx.f.Advance(ctx, fx.f.TTL+time.Second) // db2 keeps its lease, db1's expires
		fx.awaitLeader(t, "")
		members, err := fx.f.Members(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"db2"}, members)

		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err = fx.orders.Place(short, 5, "desk")
		cancel()
		require.ErrorIs(t, err, routing.ErrNoPrimary, "with no leader a write must wait, not go anywhere")
		require.Empty(t, db1.item(t, 5))
		require.Empty(t, db2.item(t, 5))

		require.NoError(t, fx.f.Lead(ctx, "db2"))
		fx.awaitLeader(t, "db2")
		_, err = fx.orders.Place(ctx, 5, "desk")
		require.NoError(t, err)
		require.Equal(t, "desk", db2.item(t, 5))

		fx.f.Heal("db1")
		require.NoError(t, fx.f.Rejoin(ctx, "db1"))
		require.NoError(t, routingEventually(func() bool {
			r, err := fx.router.WaitForNode(ctx, routing.Standby)
			return err == nil && r.Name == "db1"
		}), "db1 never came back as a replica")
		o, err := fx.orders.Get(ctx, 100, 0)
		require.NoError(t, err)
		require.Equal(t, "seeded on db1", o.Item)
	})
}

// routingEventually polls cond (the router learns of DCS changes through a
// watch, asynchronously) for up to 30 s.
func routingEventually(cond func() bool) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return errors.New("condition not met within 30s")
}

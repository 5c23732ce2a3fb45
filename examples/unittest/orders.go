package unittest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgha/pgha/routing"
)

// Order is one row of the orders table.
type Order struct {
	// ID identifies the order.
	ID int64
	// Item is what was ordered.
	Item string
	// Server is the address (host:port) of the server the order was read
	// from.
	Server string
}

// ErrNotFound: no order has that id.
var ErrNotFound = errors.New("unittest: order not found")

// Orders is an application's data layer over a routing.Router: every write
// goes to the current primary, reads go to replicas within the router's lag
// bound, or to a node that has replayed the caller's own write.
type Orders struct {
	router *routing.Router
}

// NewOrders returns the data layer on router.
func NewOrders(router *routing.Router) *Orders { return &Orders{router: router} }

// Migrate creates the table on the primary if it does not exist.
func (o *Orders) Migrate(ctx context.Context) error {
	_, err := o.router.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, item text NOT NULL)`)
		return err
	})
	return err
}

// Place stores an order and returns the read-your-writes token of its
// commit, to pass to Get. Placing the same id twice is not an error (the
// second is ignored), so a caller may retry after
// routing.ErrAmbiguousCommit.
func (o *Orders) Place(ctx context.Context, id int64, item string) (routing.LSN, error) {
	lsn, err := o.router.Write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orders (id, item) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, item)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("placing order %d: %w", id, err)
	}
	return lsn, nil
}

// Get reads an order. after is a token from Place (0: none): the read then
// goes to a node that has replayed that write.
func (o *Orders) Get(ctx context.Context, id int64, after routing.LSN) (Order, error) {
	var ord Order
	err := o.router.Read(ctx, routing.ReadOptions{After: after}, func(tx pgx.Tx) error {
		cfg := tx.Conn().Config()
		ord = Order{Server: fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
		return tx.QueryRow(ctx, `SELECT id, item FROM orders WHERE id = $1`, id).Scan(&ord.ID, &ord.Item)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("reading order %d: %w", id, err)
	}
	return ord, nil
}

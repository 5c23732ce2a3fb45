package ha

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/failover"
	"github.com/pgha/pgha/pg"
)

// opRequest is an operator's request the loop carries out between cycles,
// so it never races the loop's own actions.
type opRequest struct {
	kind  string // "restart", "reinitialize"
	force bool
	done  chan error
}

// Restart restarts Postgres in place (stop fast, start with the same role),
// the way POST /restart does. It returns when Postgres is up again.
func (n *Node) Restart(ctx context.Context) error { return n.operator(ctx, opRequest{kind: "restart"}) }

// Reinitialize wipes this replica's data directory and clones it again from
// the leader (POST /reinitialize). force cancels an action in progress.
// It returns once the re-clone started.
func (n *Node) Reinitialize(ctx context.Context, force bool) error {
	return n.operator(ctx, opRequest{kind: "reinitialize", force: force})
}

// Reload makes Postgres re-read its configuration files (POST /reload).
func (n *Node) Reload(ctx context.Context) error {
	if _, running := n.pg.Running(); !running {
		return pg.ErrNotRunning
	}
	if err := n.pg.Reload(ctx); err != nil {
		return err
	}
	n.event(ActionOnReload, n.roleNow())
	return nil
}

func (n *Node) operator(ctx context.Context, op opRequest) error {
	if !n.running.Load() {
		return errors.New("the node is not running")
	}
	op.done = make(chan error, 1)
	select {
	case n.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runOp carries out an operator request on the loop goroutine.
func (n *Node) runOp(ctx context.Context, op opRequest) {
	c := n.lastCluster
	switch op.kind {
	case "restart":
		if n.async != failover.ActionNone {
			op.done <- fmt.Errorf("%s already in progress", n.async)
			return
		}
		if _, running := n.pg.Running(); !running {
			op.done <- errors.New("postgres is not running")
			return
		}
		action := failover.ActionStartAsReplica
		if n.role == dcs.RolePrimary {
			action = failover.ActionRestartPrimary
		}
		n.startAsync(ctx, action, failover.StateRestarting, func(ctx context.Context) error {
			err := n.restartPostgres(ctx)
			if err != nil {
				err = fmt.Errorf("restart failed: %w", err)
			}
			op.done <- err
			return err
		})
	case "reinitialize":
		switch {
		case c == nil || !c.IsLocked():
			op.done <- errors.New("Cluster has no leader, can not reinitialize")
			return
		case c.LeaderName() == n.cfg.Name:
			op.done <- errors.New("I am the leader, can not reinitialize")
			return
		case n.async != failover.ActionNone && !op.force:
			op.done <- fmt.Errorf("%s already in progress", n.async)
			return
		}
		n.cancelAsync()
		n.execute(ctx, failover.Decision{Action: failover.ActionReinitialize, Target: c.LeaderName(),
			Reason: "reinitialize requested by an operator"}, c, failover.Local{})
		op.done <- nil
	default:
		op.done <- fmt.Errorf("unknown operation %q", op.kind)
	}
}

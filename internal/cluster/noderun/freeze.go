package noderun

import (
	"context"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
	"github.com/pgha/pgha/pg"
)

// Kinds of synchronous-mode steps a node process can be frozen after (see
// Spec.FreezeArmFile).
const (
	// FreezeAfterSyncNames freezes the node right after it changed
	// synchronous_standby_names.
	FreezeAfterSyncNames = "names"
	// FreezeAfterSyncKey freezes the node right after it wrote /sync.
	FreezeAfterSyncKey = "sync"
)

// freezeIfArmed stops the whole node process (SIGSTOP to itself) when the
// arm file holds kind, removing the file first so a thawed node runs on.
// Only node processes are armed (a harness refuses to arm an in-process
// node: the signal would stop the test binary).
func freezeIfArmed(path, kind string, log hclog.Logger) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != kind {
		return
	}
	if os.Remove(path) != nil {
		return
	}
	log.Warn("fault injection: freezing the node process", "after", kind)
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
}

// freezePG freezes the node after a change of synchronous_standby_names.
type freezePG struct {
	*pg.Instance
	arm string
	log hclog.Logger
}

func (p freezePG) SetSynchronousStandbyNames(ctx context.Context, value string) error {
	err := p.Instance.SetSynchronousStandbyNames(ctx, value)
	if err == nil {
		freezeIfArmed(p.arm, FreezeAfterSyncNames, p.log)
	}
	return err
}

// freezeStore freezes the node after a /sync write.
type freezeStore struct {
	dcs.Store
	arm string
	log hclog.Logger
}

func (s freezeStore) SetSync(ctx context.Context, st dcs.SyncState, cond dcs.Precondition) (int64, error) {
	rev, err := s.Store.SetSync(ctx, st, cond)
	if err == nil {
		freezeIfArmed(s.arm, FreezeAfterSyncKey, s.log)
	}
	return rev, err
}

var (
	_ ha.Postgres     = freezePG{}
	_ ha.SyncPostgres = freezePG{}
)

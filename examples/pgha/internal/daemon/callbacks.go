package daemon

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// callbacks runs postgresql.callbacks.on_role_change as Patroni does
// (SPEC.md 7): "<command> on_role_change <role> <scope>", asynchronously;
// a new call kills a previous one that still runs, with its children.
type callbacks struct {
	log   hclog.Logger
	scope string
	mu    sync.Mutex
	cmd   string
	cur   *exec.Cmd
	done  chan struct{} // closed when cur has exited
	wg    sync.WaitGroup
}

func newCallbacks(log hclog.Logger, scope string) *callbacks {
	return &callbacks{log: log.Named("callback"), scope: scope}
}

func (c *callbacks) set(cmd string) {
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
}

// roleChanged is ha.Hooks.OnRoleChange.
func (c *callbacks) roleChanged(role string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == "" {
		return
	}
	if role == "promoted" {
		role = "primary"
	}
	if c.cur != nil {
		select {
		case <-c.done:
		default:
			_ = syscall.Kill(-c.cur.Process.Pid, syscall.SIGKILL)
		}
	}
	args := append(strings.Fields(c.cmd), "on_role_change", role, c.scope)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.log.Error("on_role_change", "command", c.cmd, "error", err)
		return
	}
	done := make(chan struct{})
	c.cur, c.done = cmd, done
	c.wg.Go(func() {
		err := cmd.Wait()
		close(done)
		if err != nil {
			c.log.Warn("on_role_change exited", "command", c.cmd, "role", role, "error", err)
		}
	})
}

// close waits for a running callback.
func (c *callbacks) close() { c.wg.Wait() }

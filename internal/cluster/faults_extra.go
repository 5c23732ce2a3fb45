package cluster

import (
	"errors"
	"fmt"
	"syscall"
)

// FreezeWhole SIGSTOPs the whole node, as a VM pause does (RELIABILITY.md
// C3): the node process, then its postmaster and every process the
// postmaster forked, by pid (PostgreSQL's children each call setsid(), so
// signalling the postmaster's group would not reach them). The postmaster
// is stopped first so it cannot fork while its children are found. It
// returns the Postgres pids it stopped; ThawWhole resumes them. Process
// nodes only.
func (n *Node) FreezeWhole() ([]int, error) {
	if err := n.Freeze(); err != nil {
		return nil, err
	}
	pm, err := n.PostmasterPID()
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("cluster: %s: SIGSTOP postmaster %d: %w", n.Name, pm, err)
	}
	pids := []int{pm}
	for _, c := range childrenOf(pm) {
		if err := syscall.Kill(c, syscall.SIGSTOP); err == nil {
			pids = append(pids, c)
		}
	}
	n.log.Warn("froze the whole node", "postgres_pids", len(pids))
	return pids, nil
}

// ThawWhole SIGCONTs what FreezeWhole stopped: the Postgres pids given (the
// children first, the postmaster last) and then the node process.
func (n *Node) ThawWhole(pids []int) error {
	var err error
	for i := len(pids) - 1; i >= 0; i-- {
		if e := syscall.Kill(pids[i], syscall.SIGCONT); e != nil && !errors.Is(e, syscall.ESRCH) {
			err = errors.Join(err, fmt.Errorf("cluster: %s: SIGCONT %d: %w", n.Name, pids[i], e))
		}
	}
	n.log.Warn("thawed the whole node")
	return errors.Join(err, n.Thaw())
}

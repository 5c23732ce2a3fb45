package cluster

import "github.com/pgha/pgha/internal/cluster/noderun"

// PostmasterPIDOf returns the pid of the live postmaster on dataDir (from
// postmaster.pid, checked against /proc), or ErrNoPostmaster. It serves
// programs that run PostgreSQL outside a Cluster (a Patroni cluster in the
// benchmark report) with the harness's own logic.
func PostmasterPIDOf(dataDir string) (int, error) {
	return detached(dataDir).PostmasterPID()
}

// KillPostgresTree SIGKILLs the postmaster on dataDir and every process it
// forked, as Node.Kill does for a node's Postgres, and waits until they are
// gone. It returns ErrNoPostmaster (wrapped) when none runs.
func KillPostgresTree(dataDir string) error {
	return detached(dataDir).killPostgres()
}

// detached is a Node value carrying only a data directory: enough for the
// postmaster helpers, which read nothing else.
func detached(dataDir string) *Node {
	return &Node{Name: dataDir, spec: noderun.Spec{DataDir: dataDir}}
}

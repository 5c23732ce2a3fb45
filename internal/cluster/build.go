package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// NodeProcEnv names an environment variable that, when set, points at a
// prebuilt nodeproc binary for BuildNodeProc to return instead of building.
const NodeProcEnv = "PGHA_NODEPROC"

// NodeProcPackage is the import path of the nodeproc program.
const NodeProcPackage = "github.com/pgha/pgha/internal/cluster/nodeproc"

// BuildNodeProc builds the nodeproc program into dir with `go build` (the go
// command from PATH; the working directory must be inside the module, as it
// is for tests and `go run`) and returns the binary's path. When
// PGHA_NODEPROC is set it returns that path instead.
func BuildNodeProc(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv(NodeProcEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("cluster: %s=%s: %w", NodeProcEnv, p, err)
		}
		return p, nil
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("cluster: building nodeproc needs the go command: %w", err)
	}
	out := filepath.Join(dir, "nodeproc")
	cmd := exec.CommandContext(ctx, gocmd, "build", "-o", out, NodeProcPackage)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: go build %s: %w\n%s", NodeProcPackage, err, b)
	}
	return out, nil
}

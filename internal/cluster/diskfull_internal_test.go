package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// TestNodeDiskFillFree mounts a node disk (an 8 MiB tmpfs), fills it to
// 1 MiB free, checks that a 2 MiB write then fails with ENOSPC, frees it,
// and checks that unmountNodeDisks leaves no mount behind.
func TestNodeDiskFillFree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount)")
	}
	const size, leave = 8 << 20, 1 << 20
	c := &Cluster{opts: Options{NodeTmpfsSize: size}, dir: t.TempDir(), log: hclog.NewNullLogger()}
	t.Cleanup(func() { _ = c.unmountNodeDisks() })
	dir := filepath.Join(c.dir, "node1")
	require.NoError(t, os.MkdirAll(dir, 0o711))
	data, err := c.mountNodeDisk(dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "disk", "data"), data)
	require.True(t, isMountPoint(filepath.Join(dir, "disk")))
	st, err := os.Stat(filepath.Join(dir, "disk"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o711), st.Mode().Perm(), "the postgres OS user must traverse the mount root")

	n := &Node{c: c, Name: "node1", dir: dir, log: hclog.NewNullLogger()}
	free, err := n.DiskFree()
	require.NoError(t, err)
	require.Greater(t, free, int64(size-leave))
	require.LessOrEqual(t, free, int64(size))

	require.NoError(t, n.FillDisk(leave))
	free, err = n.DiskFree()
	require.NoError(t, err)
	require.LessOrEqual(t, free, int64(leave))
	err = os.WriteFile(filepath.Join(dir, "disk", "more"), make([]byte, 2*leave), 0o600)
	require.True(t, errors.Is(err, syscall.ENOSPC), "a write beyond the space left: %v", err)
	require.NoError(t, os.Remove(filepath.Join(dir, "disk", "more")))

	require.NoError(t, n.FreeDisk())
	free, err = n.DiskFree()
	require.NoError(t, err)
	require.Greater(t, free, int64(size-leave))
	require.NoError(t, n.FreeDisk(), "no filler: no error")
	require.ErrorContains(t, n.FillDisk(-1), "negative")

	// A second mount on the same place (a leftover) is replaced, not stacked.
	_, err = c.mountNodeDisk(dir)
	require.NoError(t, err)
	require.Len(t, mountsUnder(c.dir), 1)

	require.NoError(t, c.unmountNodeDisks())
	require.Empty(t, mountsUnder(c.dir))

	off := &Node{c: &Cluster{}, Name: "node2", dir: dir}
	require.ErrorIs(t, off.FillDisk(0), ErrNoNodeDisk)
	require.ErrorIs(t, off.FreeDisk(), ErrNoNodeDisk)
}

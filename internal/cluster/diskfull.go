package cluster

// Disk-full faults (RELIABILITY.md I1, I2): with Options.NodeTmpfsSize, each
// node's data directory lives on a size-limited tmpfs of its own, mounted
// at <node dir>/disk (the data directory is <node dir>/disk/data, so pgha
// may remove and re-create it), and FillDisk eats the free space.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoNodeDisk: the node has no disk of its own (Options.NodeTmpfsSize is
// 0).
var ErrNoNodeDisk = errors.New("cluster: the node has no tmpfs of its own (Options.NodeTmpfsSize)")

// fillerName is the file FillDisk writes at the root of a node's tmpfs.
const fillerName = "filler"

// mountNodeDisk mounts a tmpfs of Options.NodeTmpfsSize bytes at
// dir/disk (mode 0711: root-owned, traversable by the postgres OS user,
// who owns the data directory pg creates inside) and returns the data
// directory's path on it. A mount left there by an earlier run on the same
// Options.Dir is detached first.
func (c *Cluster) mountNodeDisk(dir string) (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("cluster: Options.NodeTmpfsSize needs root (mount)")
	}
	mnt := filepath.Join(dir, "disk")
	if isMountPoint(mnt) {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	if err := os.MkdirAll(mnt, 0o711); err != nil {
		return "", err
	}
	opts := fmt.Sprintf("size=%d,mode=0711", c.opts.NodeTmpfsSize)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("cluster: mount tmpfs (%s) on %s: %w", opts, mnt, err)
	}
	c.log.Info("node disk mounted", "dir", mnt, "size", c.opts.NodeTmpfsSize)
	return filepath.Join(mnt, "data"), nil
}

// unmountNodeDisks unmounts every mount under the cluster's directory,
// deepest first (Close calls it once every process is gone; a process
// still holding a file open only delays the release: the mount is
// detached).
func (c *Cluster) unmountNodeDisks() error {
	if c.dir == "" {
		return nil
	}
	var errs error
	for _, m := range mountsUnder(c.dir) {
		if err := syscall.Unmount(m, 0); err != nil {
			if err2 := syscall.Unmount(m, syscall.MNT_DETACH); err2 != nil {
				errs = errors.Join(errs, fmt.Errorf("cluster: unmount %s: %w", m, err2))
				continue
			}
		}
		c.log.Info("node disk unmounted", "dir", m)
	}
	return errs
}

// mountsUnder returns the mount points strictly under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		m := unescapeMount(fields[1])
		if strings.HasPrefix(m, prefix) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of a path in
// /proc/self/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountPoint reports whether path is listed in /proc/self/mounts.
func isMountPoint(path string) bool {
	for _, m := range mountsUnder(filepath.Dir(path)) {
		if m == filepath.Clean(path) {
			return true
		}
	}
	return false
}

// diskDir returns the root of the node's tmpfs.
func (n *Node) diskDir() (string, error) {
	if n.c.opts.NodeTmpfsSize <= 0 {
		return "", fmt.Errorf("%w: %s", ErrNoNodeDisk, n.Name)
	}
	return filepath.Join(n.dir, "disk"), nil
}

// DiskFree returns the bytes free on the node's tmpfs (ErrNoNodeDisk
// without Options.NodeTmpfsSize).
func (n *Node) DiskFree() (int64, error) {
	dir, err := n.diskDir()
	if err != nil {
		return 0, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("cluster: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// FillDisk appends to a filler file at the root of the node's tmpfs until
// at most leave bytes remain free, or the filesystem is full (ENOSPC is the
// goal, not an error: Postgres writing at the same time may get there
// first). Calling it again fills again. FreeDisk removes the filler.
func (n *Node) FillDisk(leave int64) error {
	if leave < 0 {
		return fmt.Errorf("cluster: FillDisk: negative leave %d", leave)
	}
	dir, err := n.diskDir()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, fillerName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: FillDisk %s: %w", n.Name, err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 0xa5 // any bytes: a tmpfs allocates a page for each one written
	}
	for {
		free, err := n.DiskFree()
		if err != nil {
			_ = f.Close()
			return err
		}
		want := free - leave
		if want <= 0 {
			break
		}
		chunk := buf
		if want < int64(len(chunk)) {
			chunk = chunk[:want]
		}
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			_ = f.Close()
			return fmt.Errorf("cluster: FillDisk %s: %w", n.Name, err)
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("cluster: FillDisk %s: %w", n.Name, err)
	}
	free, _ := n.DiskFree()
	n.log.Warn("disk filled", "dir", dir, "free", free)
	return nil
}

// FreeDisk removes FillDisk's filler file (no error when there is none).
func (n *Node) FreeDisk() error {
	dir, err := n.diskDir()
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, fillerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster: FreeDisk %s: %w", n.Name, err)
	}
	free, _ := n.DiskFree()
	n.log.Warn("disk freed", "dir", dir, "free", free)
	return nil
}

// CanMountTmpfs reports whether this process can mount a tmpfs (root with
// CAP_SYS_ADMIN, not in a restricted container), by mounting and
// unmounting one in a temporary directory; the error says why not.
func CanMountTmpfs() error {
	dir, err := os.MkdirTemp("", "pgha-tmpfs-probe-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	return syscall.Unmount(dir, 0)
}

package pg

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// tailSize is how much of a program's output (or the server log) pgha keeps
// for error messages.
const tailSize = 8 << 10

// tailBuffer keeps the last tailSize bytes written to it and calls onLine
// for every complete line ('\n' or '\r' terminated, as pg_basebackup
// --progress writes them).
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	partial []byte
	onLine  func(string)
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailSize {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailSize:]...)
	}
	if t.onLine != nil {
		for _, c := range p {
			if c == '\n' || c == '\r' {
				if len(t.partial) > 0 {
					t.onLine(string(t.partial))
					t.partial = t.partial[:0]
				}
				continue
			}
			if len(t.partial) < 4096 {
				t.partial = append(t.partial, c)
			}
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.ReplaceAll(b, []byte("\r"), []byte("\n")))
}

// command describes one run of a PostgreSQL program.
type command struct {
	op      string        // Instance method, for errors
	name    string        // program name in BinDir
	args    []string      // arguments
	env     []string      // extra environment
	stdin   io.Reader     // nil means /dev/null
	onLine  func(string)  // called for each output line (stderr and stdout)
	timeout time.Duration // 0: only ctx
	// stdoutLimit bounds the captured stdout (0 means 1 MiB).
	stdoutLimit int
}

// limitedBuffer captures up to limit bytes.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.limit - l.Len(); room > 0 {
		if len(p) > room {
			l.Buffer.Write(p[:room])
		} else {
			l.Buffer.Write(p)
		}
	}
	return len(p), nil
}

// run executes the command as the OS user in its own process group and
// waits for it. It returns stdout. Failures are *CommandError (or
// *MissingBinaryError when the program does not exist).
func (i *Instance) run(ctx context.Context, c command) (string, error) {
	path, err := i.program(c.name)
	if err != nil {
		return "", err
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	argv := append([]string{path}, c.args...)
	if err := ctx.Err(); err != nil {
		return "", &CommandError{Op: c.op, Command: argv, ExitCode: -1, Cause: ctxCause(err), Err: err}
	}
	cmd := exec.CommandContext(ctx, path, c.args...)
	cmd.Dir = i.workDir()
	cmd.Env = i.id.childEnv(c.env...)
	cmd.SysProcAttr = i.id.sysProcAttr()
	cmd.Stdin = c.stdin
	limit := c.stdoutLimit
	if limit == 0 {
		limit = 1 << 20
	}
	out := &limitedBuffer{limit: limit}
	tail := &tailBuffer{onLine: c.onLine}
	cmd.Stdout = io.MultiWriter(out, tail)
	cmd.Stderr = tail
	// Kill the whole process group on cancellation: pg_basebackup forks a
	// WAL-streaming child that would otherwise outlive it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	i.log.Debug("running", "op", c.op, "command", shortCommand(argv))
	err = cmd.Run()
	if err == nil {
		return out.String(), nil
	}
	ce := &CommandError{Op: c.op, Command: argv, ExitCode: -1, Stderr: tail.String(), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		ce.ExitCode = ee.ExitCode()
		ce.Err = nil
	}
	if ctx.Err() != nil {
		ce.Cause = ctxCause(ctx.Err())
		ce.Err = ctx.Err()
	}
	return out.String(), ce
}

// ctxCause maps a context error to ErrTimeout for deadlines.
func ctxCause(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return nil
}

// workDir is the directory programs start in: "/", which every account
// can reach (unlike, say, /root, the cwd of a root daemon); pgha passes only
// absolute paths.
func (i *Instance) workDir() string { return "/" }

// withTimeout bounds ctx by d when d > 0.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

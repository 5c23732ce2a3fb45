package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// TimelineSwitch is one line of a timeline history file: the server left
// Timeline at LSN (the switch point) for Reason.
type TimelineSwitch struct {
	Timeline int
	LSN      LSN
	Reason   string
}

// TimelineHistory reads the history file of timeline tl
// (pg_wal/<tl>.history) from the running server: every timeline switch
// that led to tl, oldest first. Timeline 1 has no history (nil, nil).
func (i *Instance) TimelineHistory(ctx context.Context, tl int) ([]TimelineSwitch, error) {
	const op = "timeline history"
	if tl <= 1 {
		return nil, nil
	}
	if i.current() == nil {
		return nil, fmt.Errorf("pg: %s: %w", op, ErrNotRunning)
	}
	ctx, cancel := withTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	conn, err := i.Connect(ctx)
	if err != nil {
		return nil, &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err())}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var text string
	name := fmt.Sprintf("pg_wal/%08X.history", tl)
	if err := conn.QueryRow(ctx, "SELECT pg_read_file($1)", name).Scan(&text); err != nil {
		return nil, &CommandError{Op: op, ExitCode: -1, Err: err, Cause: ctxCause(ctx.Err()), Detail: name}
	}
	return ParseTimelineHistory(text)
}

// ParseTimelineHistory parses the text of a timeline history file: lines of
// "<timeline>\t<X/X>\t<reason>", with blank lines and # comments ignored.
func ParseTimelineHistory(text string) ([]TimelineSwitch, error) {
	var out []TimelineSwitch
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 2 {
			return nil, fmt.Errorf("pg: timeline history line %d: %q is not <timeline> <lsn> <reason>", n+1, line)
		}
		tl, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil {
			return nil, fmt.Errorf("pg: timeline history line %d: bad timeline %q", n+1, f[0])
		}
		lsn, err := ParseLSN(strings.TrimSpace(f[1]))
		if err != nil {
			return nil, fmt.Errorf("pg: timeline history line %d: %v", n+1, err)
		}
		sw := TimelineSwitch{Timeline: tl, LSN: lsn}
		if len(f) == 3 {
			sw.Reason = strings.TrimSpace(f[2])
		}
		out = append(out, sw)
	}
	return out, nil
}

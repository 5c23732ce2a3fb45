package history

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Result is how one operation ended, as far as its client can know.
type Result int

const (
	// OK: the operation was acknowledged (a COMMIT returned success with no
	// notice that the synchronous-replication wait was cancelled, or a read
	// returned its rows).
	OK Result = iota + 1
	// Fail: the operation certainly had no effect (the error came before
	// COMMIT was sent, or the server rolled the transaction back).
	Fail
	// Info: indeterminate; the operation may or may not have taken effect
	// (an error during COMMIT, a connection lost after COMMIT was sent, a
	// COMMIT that carried the "canceling wait for synchronous replication"
	// warning).
	Info
)

// String returns "ok", "fail" or "info".
func (r Result) String() string {
	switch r {
	case OK:
		return "ok"
	case Fail:
		return "fail"
	case Info:
		return "info"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// MarshalText encodes the result as its String.
func (r Result) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Kind is what an operation did.
type Kind int

const (
	// Write inserts one row with a unique id.
	Write Kind = iota + 1
	// PrimaryRead reads the whole set from a server that said, in the same
	// statement, that it was not in recovery.
	PrimaryRead
	// ReplicaRead reads the whole set from a server in recovery.
	ReplicaRead
)

// String returns "write", "primary-read" or "replica-read".
func (k Kind) String() string {
	switch k {
	case Write:
		return "write"
	case PrimaryRead:
		return "primary-read"
	case ReplicaRead:
		return "replica-read"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// MarshalText encodes the kind as its String.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Stamp is what the server wrote into a row in the INSERT itself and
// returned: which node took the write, on which timeline, at which WAL
// position. It comes from the server, never from what a node reports about
// its role.
type Stamp struct {
	// Node is the node's name (mapped from Port by the workload; "port N"
	// when the port is unknown).
	Node string `json:"node,omitempty"`
	// Port is inet_server_port().
	Port int `json:"port,omitempty"`
	// Timeline is the timeline of the WAL file the insert went to (the
	// first 8 hex digits of pg_walfile_name(pg_current_wal_lsn())).
	Timeline int64 `json:"timeline,omitempty"`
	// LSN is pg_current_wal_lsn() during the insert.
	LSN uint64 `json:"lsn,omitempty"`
}

// Op is one operation of the history.
type Op struct {
	// ID numbers the operations in invoke order, from 1.
	ID int `json:"id"`
	// Process is the client process that ran the operation. A client that
	// got an indeterminate result, or lost its connection, continues as a
	// new process, so each process's operations are sequential.
	Process int `json:"process"`
	// Kind is a write or a read.
	Kind Kind `json:"kind"`
	// Value is the id a write inserted.
	Value int64 `json:"value,omitempty"`
	// Values are the ids an OK read returned, ascending.
	Values []int64 `json:"values,omitempty"`
	// Invoke and Complete bound the operation, as durations since the
	// history started on Go's monotonic clock: it was sent after Invoke and
	// its result known at Complete.
	Invoke   time.Duration `json:"invoke"`
	Complete time.Duration `json:"complete"`
	// Result is ok, fail or info.
	Result Result `json:"result"`
	// Stamp is the server's stamp of an OK or Info write whose INSERT
	// answered, and of the server a read ran on (Node and Port only).
	Stamp Stamp `json:"stamp,omitzero"`
	// Err is the error text of a failed or indeterminate operation.
	Err string `json:"err,omitempty"`
}

// History records operations, safely from many goroutines. Times are taken
// from one monotonic clock started by NewHistory.
type History struct {
	start time.Time

	mu      sync.Mutex
	ops     []Op
	process int
}

// NewHistory starts an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Since returns the time elapsed on the history's clock.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// NewProcess returns a fresh process id.
func (h *History) NewProcess() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.process++
	return h.process
}

// Add appends a completed operation, numbers it and returns its ID.
func (h *History) Add(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops) + 1
	h.ops = append(h.ops, op)
	return op.ID
}

// Ops returns a copy of the operations, sorted by Invoke (IDs are
// renumbered in that order).
func (h *History) Ops() []Op {
	h.mu.Lock()
	ops := slices.Clone(h.ops)
	h.mu.Unlock()
	slices.SortStableFunc(ops, func(a, b Op) int { return int(a.Invoke - b.Invoke) })
	for i := range ops {
		ops[i].ID = i + 1
	}
	return ops
}

// WriteJSON writes ops as JSON lines, one operation a line (the artifact a
// failing test keeps).
func WriteJSON(w io.Writer, ops []Op) error {
	enc := json.NewEncoder(w)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			return err
		}
	}
	return nil
}

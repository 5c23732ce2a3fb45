package pg

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Offsets in global/pg_control (ControlFileData): system_identifier
// (uint64), pg_control_version (uint32), catalog_version_no (uint32),
// state (DBState, int32), padding, time (int64), checkPoint (XLogRecPtr).
// This head of the struct has not changed since PostgreSQL 9.3.
const (
	controlVersionOffset    = 8
	controlStateOffset      = 16
	controlCheckpointOffset = 32
	controlHeadSize         = 40
	// dbShutdowned is DBState's DB_SHUTDOWNED: the shutdown checkpoint is
	// written.
	dbShutdowned = 1
	// dbInProduction is the highest DBState value.
	dbInProduction = 6
	// minControlVersion is pg_control_version of PostgreSQL 9.3 (937).
	minControlVersion = 937
)

// ShutdownCheckpoint reads the head of the control file and reports
// whether the server's shutdown checkpoint is written (state "shut down"),
// with its location. During a fast or smart shutdown that is the moment
// the server has written its last WAL record and accepts no connection:
// the rest (WAL senders waiting for their standbys' confirmation, the
// postmaster's exit) can take as long again, and a switchover need not
// wait for it. It reads the file directly (a few bytes, no pg_controldata
// process), so it can be polled while a stop is under way.
func (i *Instance) ShutdownCheckpoint() (LSN, bool, error) {
	f, err := os.Open(filepath.Join(i.cfg.DataDir, "global", "pg_control"))
	if err != nil {
		return 0, false, fmt.Errorf("pg: shutdown checkpoint: %w", err)
	}
	defer f.Close()
	var head [controlHeadSize]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return 0, false, fmt.Errorf("pg: shutdown checkpoint: reading pg_control: %w", err)
	}
	return parseControlHead(head[:])
}

// parseControlHead reads the state and the checkpoint location from the
// head of pg_control (host byte order, as PostgreSQL writes it).
func parseControlHead(head []byte) (LSN, bool, error) {
	if len(head) < controlHeadSize {
		return 0, false, fmt.Errorf("pg: pg_control too short: %d bytes", len(head))
	}
	version := binary.NativeEndian.Uint32(head[controlVersionOffset:])
	state := int32(binary.NativeEndian.Uint32(head[controlStateOffset:]))
	if version < minControlVersion || version > 9999 || state < 0 || state > dbInProduction {
		return 0, false, fmt.Errorf("pg: pg_control not understood (version %d, state %d)", version, state)
	}
	return LSN(binary.NativeEndian.Uint64(head[controlCheckpointOffset:])), state == dbShutdowned, nil
}

package pg

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseControlHead(t *testing.T) {
	head := make([]byte, controlHeadSize)
	binary.NativeEndian.PutUint32(head[controlVersionOffset:], 1300)
	binary.NativeEndian.PutUint32(head[controlStateOffset:], 6) // in production
	binary.NativeEndian.PutUint64(head[controlCheckpointOffset:], 0x5002000)
	lsn, done, err := parseControlHead(head)
	require.NoError(t, err)
	require.False(t, done)
	require.Equal(t, LSN(0x5002000), lsn)

	binary.NativeEndian.PutUint32(head[controlStateOffset:], 1) // shut down
	lsn, done, err = parseControlHead(head)
	require.NoError(t, err)
	require.True(t, done)
	require.Equal(t, LSN(0x5002000), lsn)

	_, _, err = parseControlHead(head[:20])
	require.ErrorContains(t, err, "too short")
	binary.NativeEndian.PutUint32(head[controlStateOffset:], 42)
	_, _, err = parseControlHead(head)
	require.ErrorContains(t, err, "not understood")
	binary.NativeEndian.PutUint32(head[controlStateOffset:], 1)
	binary.NativeEndian.PutUint32(head[controlVersionOffset:], 12)
	_, _, err = parseControlHead(head)
	require.ErrorContains(t, err, "not understood")
}

package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/pgha/pgha/internal/freeport"
	"github.com/stretchr/testify/require"
)

func TestGetReturnsDistinctBindablePorts(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := freeport.MustGet(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		require.NoError(t, err)
		require.NoError(t, l.Close())
	}
}

package pg_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/pg"
)

// TestSlotName checks SPEC 8.1; the expected values are what Patroni's
// slot_name_from_member_name returns for the same input.
func TestSlotName(t *testing.T) {
	for _, tc := range []struct{ member, slot string }{
		{"node1", "node1"},
		{"Node_A", "node_a"},
		{"node-1.example.com", "node_1_example_com"},
		{"pg-0", "pg_0"},
		{"a b", "au0032b"},
		{"é", "u0233"},
		{"пример", "u1087u1088u1080u1084u1077u1088"},
		{"😀x", "u128512x"},
		{"a@b", "au0064b"},
		{"ǅ", "u0454"}, // titlecase letter lowercases to U+01C6
		{"İstanbul", "iu0775stanbul"},
		{"Σ", "u0963"},
		{"ΑΣ", "u0945u0962"},   // final sigma
		{"ΑΣ.", "u0945u0962_"}, // still final before punctuation
		{"aΣb", "au0963b"},
		{"AΣ'B", "au0963u0039b"}, // apostrophe is case-ignorable: not final
		{"AΣ'", "au0962u0039"},
		{"", ""},
		{strings.Repeat("x", 70), strings.Repeat("x", 63)},
		{strings.Repeat("é", 20), strings.Repeat("u0233", 12) + "u02"},
	} {
		t.Run(tc.member, func(t *testing.T) {
			got := pg.SlotName(tc.member)
			require.Equal(t, tc.slot, got)
			require.LessOrEqual(t, len(got), pg.MaxSlotNameLen)
		})
	}
}

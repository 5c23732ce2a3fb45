package ctl

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/dcs"
)

func TestDumpYAMLMatchesPatronictlShowConfig(t *testing.T) {
	golden, err := os.ReadFile("../../testdata/golden/patronictl_show-config.txt")
	require.NoError(t, err)
	want := strings.SplitN(string(golden), "\n", 2)[1]
	raw, err := os.ReadFile("../../testdata/golden/rest_leader/GET_config.json")
	require.NoError(t, err)
	cfg, err := dcs.DecodeConfig(raw)
	require.NoError(t, err)
	require.Equal(t, strings.TrimRight(want, "\n"), strings.TrimRight(dumpYAML(cfg), "\n"))
	var v any
	require.NoError(t, json.Unmarshal([]byte(`{"a":"on","b":"10","c":"x y","d":["1",2],"e":{}}`), &v))
	require.Equal(t, "a: 'on'\nb: '10'\nc: x y\nd:\n- '1'\n- 2.0\ne: {}\n", dumpYAML(v))
}

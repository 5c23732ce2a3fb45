package ha_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgha/pgha/ha"
)

// golden is one recorded Patroni request and answer.
type golden struct {
	file, method, path, body string
	code                     int
	text                     string // a text/html body
	json                     any    // the .json body, nil when none
}

// loadGolden reads testdata/golden/<dir>: METHOD_path(__query).http files
// with the status line, and .json bodies.
func loadGolden(t *testing.T, dir string) []golden {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", dir, "*.http"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out []golden
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".http")
		method, rest, _ := strings.Cut(base, "_")
		path, query, _ := strings.Cut(rest, "__")
		if method == http.MethodPost || method == http.MethodDelete {
			// POST_switchover_unknown_candidate: the path, then what the case is.
			path, _, _ = strings.Cut(rest, "_")
		}
		if path == "root" {
			path = ""
		}
		g := golden{file: base, method: method, path: "/" + path}
		if query != "" {
			k, v, _ := strings.Cut(query, "-")
			g.path += "?" + k + "=" + v
		}
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		inBody := false
		var body []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "# request body: "):
				g.body = strings.TrimPrefix(line, "# request body: ")
			case strings.HasPrefix(line, "HTTP/"):
				f := strings.Fields(line)
				g.code, _ = strconv.Atoi(f[1])
			case !inBody && line == "":
				inBody = true
			case inBody:
				body = append(body, line)
			}
		}
		g.text = strings.TrimSpace(strings.Join(body, "\n"))
		if j, err := os.ReadFile(strings.TrimSuffix(f, ".http") + ".json"); err == nil {
			require.NoError(t, json.Unmarshal(j, &g.json), f)
		}
		out = append(out, g)
	}
	return out
}

// sameShape reports where got lacks a key of want or has another JSON type.
func sameShape(path string, want, got any) []string {
	if want == nil {
		return nil
	}
	if got == nil {
		if strings.HasSuffix(path, ".replayed_timestamp") {
			return nil // str|null in Patroni: null until a transaction was replayed
		}
		return []string{path + ": missing"}
	}
	if reflect.TypeOf(want) != reflect.TypeOf(got) {
		return []string{fmt.Sprintf("%s: %T, Patroni has %T", path, got, want)}
	}
	var diffs []string
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			diffs = append(diffs, sameShape(path+"."+k, w[k], g[k])...)
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			diffs = append(diffs, sameShape(path+"[0]", w[0], g[0])...)
		}
	}
	return diffs
}

// checkAgainstGolden asks h every recorded request of dir and compares the
// status code, the JSON shape (field names and types) or the text answer.
func checkAgainstGolden(t *testing.T, h http.Handler, dir string) {
	for _, g := range loadGolden(t, dir) {
		t.Run(dir+"/"+g.file, func(t *testing.T) {
			var body *strings.Reader
			if g.body != "" && g.body != "null" {
				body = strings.NewReader(g.body)
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(g.method, g.path, body)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, g.code, rec.Code, "%s %s: %s", g.method, g.path, rec.Body.String())
			switch {
			case g.method == http.MethodHead || g.method == http.MethodOptions:
				assert.Empty(t, rec.Body.String(), "HEAD/OPTIONS answer with the status only")
			case g.json != nil && g.path == "/config":
				// The content is the cluster's own; only the shape of an object.
				var got map[string]any
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			case g.json != nil:
				var got any
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got), "%s: %s", g.path, rec.Body.String())
				assert.Empty(t, sameShape("$", g.json, got), "%s: %s", g.path, rec.Body.String())
			case g.code != http.StatusOK && !strings.HasPrefix(g.text, "<!DOCTYPE") && g.text != "":
				assert.Equal(t, g.text, strings.TrimSpace(rec.Body.String()))
			}
		})
	}
}

var _ = ha.Version

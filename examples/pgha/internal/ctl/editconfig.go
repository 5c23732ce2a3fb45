package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pgha/pgha/dcs"
	"github.com/pgha/pgha/ha"
)

// cmdEditConfig is patronictl edit-config: change /config by --set, --pg,
// --apply, --replace or in $EDITOR, show the diff, confirm, and write it
// with a compare-and-swap on the version read.
func cmdEditConfig(c *cli, o *opts, pos []string) error {
	scope, rest, err := c.scopeOf(pos, false)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usage("unexpected arguments: %s", strings.Join(rest, " "))
	}
	cl, err := c.existingCluster(scope)
	if err != nil {
		return err
	}
	if cl.Config == nil {
		return dcsErr("cluster %s has no /config", scope)
	}
	before := dumpYAML(cl.Config.Data)
	changed := cl.Config.Data
	requested := false
	if o.replace != "" {
		m, err := c.readYAMLFile(o.replace)
		if err != nil {
			return err
		}
		changed, requested = ha.MergeConfig(map[string]any{}, m), true
	}
	if o.apply != "" {
		m, err := c.readYAMLFile(o.apply)
		if err != nil {
			return err
		}
		changed, requested = ha.MergeConfig(changed, m), true
	}
	if len(o.set) > 0 || len(o.pg) > 0 {
		pairs := append([]string{}, o.set...)
		for _, p := range o.pg {
			pairs = append(pairs, "postgresql.parameters."+strings.TrimSpace(p))
		}
		if changed, err = applyPairs(changed, pairs); err != nil {
			return err
		}
		requested = true
	}
	after := dumpYAML(changed)
	if !requested {
		if after, changed, err = c.editor(before, scope); err != nil {
			return err
		}
	}
	if sameJSON(cl.Config.Data, changed) {
		if !o.quiet {
			c.out("Not changed")
		}
		return nil
	}
	if !o.quiet {
		fmt.Fprint(c.io.Stdout, unifiedDiff(before, after))
	}
	if (o.apply == "-" || o.replace == "-") && !o.force {
		return fail("Use --force option to apply changes")
	}
	if !o.force && !c.confirm("Apply these changes?") {
		return fail("Aborted: configuration not changed")
	}
	s, err := c.store(scope)
	if err != nil {
		return err
	}
	if _, err := s.SetConfig(c.ctx, changed, dcs.IfRevision(cl.Config.ModRevision)); err != nil {
		if errors.Is(err, dcs.ErrConflict) {
			return fail("Config modification aborted due to concurrent changes")
		}
		return dcsErr("writing /config: %v", err)
	}
	c.out("Configuration changed")
	return nil
}

func sameJSON(a, b map[string]any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

func (c *cli) readYAMLFile(name string) (map[string]any, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(c.in)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, usage("%v", err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, usage("%s: %v", name, err)
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := normalizeYAML(v).(map[string]any)
	if !ok {
		return nil, usage("%s: the configuration must be a YAML mapping", name)
	}
	return m, nil
}

func normalizeYAML(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalizeYAML(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalizeYAML(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = normalizeYAML(x)
		}
	}
	return v
}

// applyPairs applies key.path=value pairs (values parsed as YAML, null
// removes the key). Below postgresql.parameters the rest of the path is one
// name, as PostgreSQL parameters may contain dots.
func applyPairs(data map[string]any, pairs []string) (map[string]any, error) {
	out := deepCopy(data).(map[string]any)
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usage("Invalid parameter setting %s", p)
		}
		var val any
		if err := yaml.Unmarshal([]byte(v), &val); err != nil {
			return nil, usage("Invalid value in %s: %v", p, err)
		}
		path := strings.Split(strings.TrimSpace(k), ".")
		if len(path) > 2 && path[0] == "postgresql" && path[1] == "parameters" {
			path = []string{"postgresql", "parameters", strings.Join(path[2:], ".")}
		}
		setPath(out, path, normalizeYAML(val))
	}
	return out, nil
}

func setPath(m map[string]any, path []string, v any) {
	if len(path) == 1 {
		if v == nil {
			delete(m, path[0])
		} else {
			m[path[0]] = v
		}
		return
	}
	next, ok := m[path[0]].(map[string]any)
	if !ok {
		next = map[string]any{}
	}
	setPath(next, path[1:], v)
	if len(next) == 0 {
		delete(m, path[0])
	} else {
		m[path[0]] = next
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, x := range t {
			l[i] = deepCopy(x)
		}
		return l
	}
	return v
}

// editor opens $EDITOR (else editor, else vi) on the configuration.
func (c *cli) editor(before, scope string) (string, map[string]any, error) {
	ed := c.io.Getenv("EDITOR")
	if ed == "" {
		for _, e := range []string{"editor", "vi"} {
			if p, err := exec.LookPath(e); err == nil {
				ed = p
				break
			}
		}
	}
	if ed == "" {
		return "", nil, usage("EDITOR environment variable is not set. editor or vi are not available")
	}
	f, err := os.CreateTemp("", scope+"-config-*.yaml")
	if err != nil {
		return "", nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(before); err != nil {
		return "", nil, err
	}
	_ = f.Close()
	args := append(strings.Fields(ed), f.Name())
	cmd := exec.CommandContext(c.ctx, args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", nil, fail("Editor exited with %v", err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return "", nil, err
	}
	m, err := c.readYAMLFile(f.Name())
	if err != nil {
		return "", nil, err
	}
	return string(b), m, nil
}

// unifiedDiff renders a line diff of a and b in unified format with three
// lines of context, as Python's difflib.unified_diff.
func unifiedDiff(a, b string) string {
	x := strings.Split(strings.TrimRight(a, "\n"), "\n")
	y := strings.Split(strings.TrimRight(b, "\n"), "\n")
	// Longest common subsequence table.
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte // ' ', '-', '+'
		line string
		ai   int
		bi   int
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			ops = append(ops, op{' ', x[i], i, j})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', x[i], i, j})
			i++
		default:
			ops = append(ops, op{'+', y[j], i, j})
			j++
		}
	}
	var out strings.Builder
	out.WriteString("--- \n+++ \n")
	const ctx = 3
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		start := max(k-ctx, 0)
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*ctx {
				end = min(end+ctx, len(ops))
				break
			}
			end = run
		}
		aStart, bStart, aLen, bLen := ops[start].ai, ops[start].bi, 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aLen++
			}
			if o.kind != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(aStart, aLen), hunkRange(bStart, bLen))
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.line)
			out.WriteByte('\n')
		}
		k = end
	}
	return out.String()
}

func hunkRange(start, length int) string {
	switch length {
	case 1:
		return fmt.Sprintf("%d", start+1)
	case 0:
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, length)
}

package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options say where a configuration comes from.
type Options struct {
	// Path is a YAML file, or a directory whose *.yml and *.yaml files are
	// merged in alphabetical order (as Patroni does). Empty means the
	// whole YAML document in the environment variable PATRONI_CONFIGURATION
	// (or PGHA_CONFIGURATION), else only environment variables.
	Path string
	// Env is the environment, as os.Environ returns it. PATRONI_* and PGHA_*
	// variables override the file (PGHA_ wins over PATRONI_ for the same
	// setting).
	Env []string
}

// Load reads the configuration at path with the process environment's
// overrides. See LoadWith.
func Load(path string) (*Config, error) {
	return LoadWith(Options{Path: path, Env: os.Environ()})
}

// LoadWith reads, merges and checks a configuration. It returns the Config
// with its warnings when it can be used, and an *InvalidError listing every
// problem (with its key path) when it cannot. Reading errors (a missing
// file, broken YAML) are returned as they are.
func LoadWith(opts Options) (*Config, error) {
	src := &sources{lines: map[string]string{}}
	raw := map[string]any{}
	name := "environment"
	switch {
	case opts.Path != "":
		name = opts.Path
		files, err := configFiles(opts.Path)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			m, err := parseYAML(b, filepath.Base(f), src)
			if err != nil {
				return nil, err
			}
			deepMerge(raw, m)
		}
	default:
		env := envMap(opts.Env)
		doc, ok := env["PGHA_CONFIGURATION"]
		if !ok {
			doc, ok = env["PATRONI_CONFIGURATION"]
		}
		if ok {
			name = "PATRONI_CONFIGURATION"
			m, err := parseYAML([]byte(doc), name, src)
			if err != nil {
				return nil, err
			}
			raw = m
		}
	}
	applyEnv(raw, opts.Env, src)
	c := decode(raw, src)
	c.Source = name
	if err := c.invalid(); err != nil {
		return c, err
	}
	return c, nil
}

// Parse reads a configuration from YAML text named name, with the given
// environment's overrides (nil for none). It is LoadWith for tests and
// tools that hold the text already.
func Parse(text []byte, name string, env []string) (*Config, error) {
	src := &sources{lines: map[string]string{}}
	raw, err := parseYAML(text, name, src)
	if err != nil {
		return nil, err
	}
	applyEnv(raw, env, src)
	c := decode(raw, src)
	c.Source = name
	if err := c.invalid(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) invalid() error {
	for _, p := range c.Problems {
		if p.Severity == Error {
			return &InvalidError{Problems: c.Problems}
		}
	}
	return nil
}

// configFiles lists the files a path stands for.
func configFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && (strings.HasSuffix(n, ".yml") || strings.HasSuffix(n, ".yaml")) {
			files = append(files, filepath.Join(path, n))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("configuration: no *.yml or *.yaml file in directory %s", path)
	}
	return files, nil
}

// sources remembers where each key path was set: "file:line" or the
// environment variable.
type sources struct {
	lines map[string]string
}

func (s *sources) of(path string) string { return s.lines[path] }

// parseYAML decodes one YAML document into plain maps (string keys) and
// records the line of every key.
func parseYAML(text []byte, name string, src *sources) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return map[string]any{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: the configuration must be a YAML mapping (key: value lines), not a %s", name, kindName(root))
	}
	indexLines(root, "", name, src)
	var v any
	if err := root.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, _ := normalize(v).(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document of another kind"
}

func indexLines(n *yaml.Node, prefix, file string, src *sources) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(prefix, k.Value)
			src.lines[p] = fmt.Sprintf("%s:%d", file, k.Line)
			indexLines(v, p, file, src)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			src.lines[p] = fmt.Sprintf("%s:%d", file, item.Line)
			indexLines(item, p, file, src)
		}
	case yaml.AliasNode:
		if n.Alias != nil {
			indexLines(n.Alias, prefix, file, src)
		}
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// normalize turns map[any]any (YAML mappings with non-string keys) into
// map[string]any, recursively.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = normalize(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	}
	return v
}

// deepMerge merges src into dst: maps are merged, anything else replaced.
func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// setPath sets a dotted path in a nested map, creating maps on the way.
func setPath(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

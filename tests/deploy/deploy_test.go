// Package deploy tests the ways people run the system (docs/deploy.md): the
// Helm chart rendered in both relay modes, the compose file read as data, and
// the no-Docker demo (make demo) driven end to end through its gateway.
package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the repository root; tests run in their package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// obj is a decoded YAML mapping with path helpers for the checks.
type obj map[string]any

// decodeAll decodes every document of a YAML stream, skipping empty ones.
func decodeAll(data []byte) ([]obj, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []obj
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, obj(m))
		}
	}
}

// get follows keys (strings for maps, ints for lists) and returns nil when
// a step is missing.
func (o obj) get(path ...any) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := asMap(cur)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		default:
			panic(fmt.Sprintf("bad path element %T", p))
		}
	}
	return cur
}

func (o obj) str(path ...any) string {
	v := o.get(path...)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func (o obj) list(path ...any) []any {
	l, _ := o.get(path...).([]any)
	return l
}

func (o obj) objs(path ...any) []obj {
	var out []obj
	for _, v := range o.list(path...) {
		if m, ok := asMap(v); ok {
			out = append(out, obj(m))
		}
	}
	return out
}

func (o obj) strMap(path ...any) map[string]string {
	m, ok := asMap(o.get(path...))
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case obj:
		return m, true
	}
	return nil, false
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return string(b)
}

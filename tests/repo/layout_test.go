package repo

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestTestsLayout: every folder of tests/ is a suite or tests/helpers, and
// every helper package is in tests/README.md's tables, with unit tests of
// its own, so that a newcomer knows where a new test or helper goes.
func TestTestsLayout(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "tests", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (tests/[a-z0-9/]+) \|`).FindAllSubmatch(readme, -1) {
		listed[string(m[1])] = true
	}
	dirs := func(rel string) []string {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, rel+"/"+e.Name())
			}
		}
		return out
	}
	for _, d := range dirs("tests") {
		if d == "tests/helpers" {
			continue
		}
		if !listed[d] {
			t.Errorf("%s is in no table of tests/README.md: a suite goes in \"The suites\", a helper under tests/helpers/", d)
		}
	}
	for _, d := range dirs("tests/helpers") {
		if !listed[d] {
			t.Errorf("%s is not in tests/README.md's helpers table", d)
		}
		tests, _ := filepath.Glob(filepath.Join(root, d, "*_test.go"))
		if len(tests) == 0 {
			t.Errorf("helper %s has no tests of its own", d)
		}
	}
	for d := range listed {
		if _, err := os.Stat(filepath.Join(root, d)); err != nil {
			t.Errorf("tests/README.md names %s, which does not exist", d)
		}
	}
}

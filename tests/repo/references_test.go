// Package repo holds checks on the repository itself rather than on the
// code's behaviour.
package repo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outsideRef matches a reference to something the project's users never
// see: a design document outside the repository, the original demo called
// "the seed", or an issue tracker.
var outsideRef = regexp.MustCompile(`(?i)design §|design\.md|the seed|seed's|issue [0-9]|issues? #[0-9]|\.\./shared|/work/shared`)

// allowed are the files that may name those things: the page about where
// the demo comes from, and this test, which holds the pattern.
var allowed = map[string]bool{
	"docs/origin.md":                true,
	"tests/repo/references_test.go": true,
}

// TestNoOutsideReferences fails on any line of a tracked or new (not
// ignored) text file that cites the design document, "the seed" or an issue
// number. The project stands alone: cite docs/contracts.md by heading
// instead, and say "the original demo (docs/origin.md)" or describe the
// behaviour.
func TestNoOutsideReferences(t *testing.T) {
	root := repoRoot(t)
	files := listFiles(t, root)
	var found []string
	for _, rel := range files {
		if allowed[rel] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			t.Fatalf("read %s: %v", rel, err)
		}
		if binary(b) {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 64*1024), len(b)+1)
		for n := 1; sc.Scan(); n++ {
			if line := sc.Text(); outsideRef.MatchString(line) {
				found = append(found, fmt.Sprintf("%s:%d: %s", rel, n, strings.TrimSpace(line)))
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("read %s: %v", rel, err)
		}
	}
	if len(found) > 0 {
		t.Errorf("%d line(s) cite a design document, \"the seed\" or an issue number, which users of the project never see.\n"+
			"Cite docs/contracts.md by file and heading (docs/contracts.md, \"Message mapping\"), say \"the original demo (docs/origin.md)\" "+
			"or describe the behaviour, and drop issue numbers:\n\t%s",
			len(found), strings.Join(found, "\n\t"))
	}
}

// repoRoot walks up from the test's directory to the folder holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// listFiles returns the files git tracks plus the new ones it does not
// ignore, so that a file is checked before its first commit. Paths are
// slash-separated and relative to root.
func listFiles(t *testing.T, root string) []string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: cannot list the repository's files")
	}
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && bytes.Contains(exit.Stderr, []byte("not a git repository")) {
			t.Skipf("%s is not a git work tree: cannot list the repository's files", root)
		}
		t.Fatalf("git ls-files in %s: %v", root, err)
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" && !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	return files
}

// binary reports a file that holds a NUL byte in its first 8000 bytes, the
// test git itself uses.
func binary(b []byte) bool {
	return bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0
}

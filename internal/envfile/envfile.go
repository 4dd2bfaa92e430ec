// Package envfile reads a setting from VAR or from the file VAR_FILE names:
// the Docker and Kubernetes convention for secrets, which keeps a password
// out of the environment (and so out of `ps e`, /proc/<pid>/environ and
// `docker inspect`). The relay and the services read their URLs through it.
package envfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSize bounds what a secret file may hold: a URL, not a dump.
const maxSize = 64 << 10

// Lookup returns the value of name: getenv(name), or the content of the
// file getenv(name+"_FILE") names, without surrounding white space (a
// final newline, as editors and `kubectl create secret --from-file` leave).
// Setting both is an error, as is an unreadable, empty or oversized file.
// An error names the _FILE variable and never holds the file's content.
func Lookup(getenv func(string) string, name string) (string, error) {
	v, path := getenv(name), strings.TrimSpace(getenv(name+"_FILE"))
	if path == "" {
		return v, nil
	}
	if v != "" {
		return "", fmt.Errorf("%s_FILE: set either %s or %s_FILE, not both", name, name, name)
	}
	s, err := Read(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return s, nil
}

// Read returns the secret the file at path holds, without surrounding
// white space. An unreadable, empty or oversized file is an error that
// names the path and never holds the content.
func Read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, unwrapPath(err))
	}
	if len(b) > maxSize {
		return "", fmt.Errorf("%s is over %d KiB", path, maxSize>>10)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// unwrapPath drops the path from an *os.PathError: the message names it
// once already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

package envfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	url := file("url", "postgres://relay:s3cret@db/orders\n")
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "the variable", env: map[string]string{"X_URL": "amqp://a"}, want: "amqp://a"},
		{name: "neither", env: map[string]string{}, want: ""},
		{name: "the file, trimmed", env: map[string]string{"X_URL_FILE": url}, want: "postgres://relay:s3cret@db/orders"},
		{name: "both", env: map[string]string{"X_URL": "amqp://a", "X_URL_FILE": url},
			wantErr: "X_URL_FILE: set either X_URL or X_URL_FILE, not both"},
		{name: "no such file", env: map[string]string{"X_URL_FILE": filepath.Join(dir, "nope")},
			wantErr: "X_URL_FILE: read " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{name: "a directory", env: map[string]string{"X_URL_FILE": dir}, wantErr: "X_URL_FILE: read " + dir},
		{name: "empty", env: map[string]string{"X_URL_FILE": file("empty", " \n")}, wantErr: "is empty"},
		{name: "too large", env: map[string]string{"X_URL_FILE": file("big", strings.Repeat("x", maxSize+1))}, wantErr: "is over 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Lookup(func(k string) string { return tt.env[k] }, "X_URL")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "s3cret")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

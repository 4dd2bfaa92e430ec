package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRenderSortsRowsAndShowsTheFigures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figures.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(
		`{"order": 30, "fault": "broker restart", "setup": "stop_app", "Written": 100, "Duplicates": 3, "recovery_ns": 1500000000, "bound": "≤ 110"}`+"\n\n"+
			`{"order": 10, "fault": "SIGKILL", "setup": "kill -9", "Written": 50, "bound": "≤ 300", "note": "includes a process start"}`+"\n"), 0o644))
	var b strings.Builder
	require.NoError(t, run(path, &b, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)))
	out := b.String()
	assert.Contains(t, out, "on 2026-12-02")
	kill := strings.Index(out, "| SIGKILL | kill -9 | 50 | 0 | 0 | 0 (≤ 300) | – |")
	restart := strings.Index(out, "| broker restart | stop_app | 100 | 0 | 0 | 3 (≤ 110) | 1.5s |")
	require.Positive(t, kill, out)
	require.Positive(t, restart, out)
	assert.Less(t, kill, restart, "rows sorted by order")
	assert.Contains(t, out, "- *SIGKILL*: includes a process start.")

	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.ErrorContains(t, run(empty, &b, time.Now()), "holds no figures")
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{not json\n"), 0o644))
	require.ErrorContains(t, run(bad, &b, time.Now()), "bad.jsonl:1")
}

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

func TestRenderMergesAndSortsTheFigures(t *testing.T) {
	dir := t.TempDir()
	figures, fresh, out := filepath.Join(dir, "figures.jsonl"), filepath.Join(dir, "new.jsonl"), filepath.Join(dir, "page.md")
	require.NoError(t, os.WriteFile(figures, []byte(
		`{"order": 5, "fault": "old fault", "Written": 1, "bound": "0"}`+"\n"+
			`{"kind": "saga", "seed": 7, "orders": 3000, "scenarios": {"confirm": 1800}, "outcomes": {"payment_confirmed": 1700}, "faults": {"broker restart": 2}, "duplicates": {"stock": 4}, "settle_ns": 2000000000, "slowest_ns": 9000000000}`+"\n"), 0o644))
	require.NoError(t, os.WriteFile(fresh, []byte(
		`{"order": 30, "fault": "broker restart", "setup": "stop_app", "Written": 100, "Duplicates": 3, "recovery_ns": 1500000000, "bound": "≤ 110"}`+"\n\n"+
			`{"order": 10, "fault": "SIGKILL", "setup": "kill -9", "Written": 50, "bound": "≤ 300", "note": "includes a process start"}`+"\n"+
			`{"kind": "saga", "seed": 9, "orders": 300, "scenarios": {"confirm": 180, "denied": 60, "out_of_stock": 60}, "outcomes": {"not_reserved": 70}, "faults": {"SIGKILL relay": 3}}`+"\n"), 0o644))
	require.NoError(t, run(figures, fresh, out, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)))
	page, err := os.ReadFile(out)
	require.NoError(t, err)
	s := string(page)
	assert.Contains(t, s, "on 2026-12-02")
	assert.NotContains(t, s, "old fault", "the new run's faults replace the kept ones")
	kill := strings.Index(s, "| SIGKILL | kill -9 | 50 | 0 | 0 | 0 (≤ 300) | – |")
	restart := strings.Index(s, "| broker restart | stop_app | 100 | 0 | 0 | 3 (≤ 110) | 1.5s |")
	require.Positive(t, kill, s)
	require.Positive(t, restart, s)
	assert.Less(t, kill, restart, "rows sorted by order")
	assert.Contains(t, s, "- *SIGKILL*: includes a process start.")
	assert.Contains(t, s, "| 9 | 300 (180 / 60 / 60) | 0 / 0 / 70 | 3 |", "the short chaos run")
	assert.Contains(t, s, "| 7 | 3000 (1800 / 0 / 0) | 1700 / 0 / 0 | 2 | 0 / 4 / 0 | 2s | 9s | 0 |", "the long run kept: the new run was short")

	kept, err := os.ReadFile(figures)
	require.NoError(t, err)
	assert.Equal(t, 4, strings.Count(string(kept), "\n"), "the figures file keeps the long run and the new lines")

	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	require.ErrorContains(t, run(figures, empty, out, time.Now()), "holds no figures")
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte("{not json\n"), 0o644))
	require.ErrorContains(t, run(figures, bad, out, time.Now()), "bad.jsonl:1")
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every command the usage lists reaches its handler: -h prints that
// command's flags (exit 2, as flag's help does), never "unknown command".
func TestEveryCommandIsDispatched(t *testing.T) {
	tests := []struct {
		args []string
		flag string // one of the command's own flags, in its help
	}{
		{[]string{"run", "-h"}, "-max-in-flight"},
		{[]string{"slot", "list", "-h"}, "-database-url"},
		{[]string{"slot", "create", "-h"}, "-slot"},
		{[]string{"slot", "drop", "-h"}, "-force"},
		{[]string{"slot", "advance", "-h"}, "-to"},
		{[]string{"publication", "create", "-h"}, "-publication"},
		{[]string{"publication", "show", "-h"}, "-publication"},
		{[]string{"role", "create", "-h"}, "-password-file"},
		{[]string{"doctor", "-h"}, "-slot"},
		{[]string{"replay", "-h"}, "-since"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"cdc-relay"}, tt.args...), func(string) string { return "" }, &stdout, &stderr)
			assert.Error(t, err)
			assert.Equal(t, 2, exitCode(err))
			assert.NotContains(t, err.Error(), "unknown command")
			assert.Contains(t, stderr.String(), tt.flag)
		})
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"cdc-relay", "frobnicate"}, func(string) string { return "" }, &stdout, &stderr)
	assert.ErrorContains(t, err, `unknown command "frobnicate"`)
	assert.Equal(t, 2, exitCode(err))
	assert.Contains(t, stderr.String(), "role create --role NAME")
}

package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// A bad setting stops the gateway before it listens, naming the variable.
func TestRunRefusesBadSettings(t *testing.T) {
	for env, want := range map[string]string{
		"GATEWAY_JAEGER=127.0.0.1:16686": `GATEWAY_JAEGER: not an http:// or https:// URL`,
		"GATEWAY_CORS=maybe":             `GATEWAY_CORS: "maybe" is not a boolean`,
		"GATEWAY_DASHBOARD=2x":           `GATEWAY_DASHBOARD: "2x" is not a boolean`,
		"LOG_LEVEL=loud":                 `LOG_LEVEL: "loud" is not one of`,
	} {
		k, v, _ := strings.Cut(env, "=")
		getenv := func(name string) string {
			if name == k {
				return v
			}
			return ""
		}
		// Cancelled: a value wrongly accepted ends run at once instead of
		// serving forever.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := run(ctx, []string{"gateway", "-addr", "127.0.0.1:0"}, getenv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", env, err, want)
		}
	}
}

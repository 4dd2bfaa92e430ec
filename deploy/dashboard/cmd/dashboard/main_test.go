package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesThePageAndStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dashboard"}, func(k string) string {
			if k == "DASHBOARD_ADDR" {
				return addr
			}
			return ""
		}, &out)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	var resp *http.Response
	for i := 0; ; i++ {
		resp, err = client.Get("http://" + addr + "/dashboard/")
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("GET /dashboard/: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Saga dashboard") {
		t.Errorf("GET /dashboard/: %s %.80s", resp.Status, body)
	}
	resp, err = client.Get("http://" + addr + "/livez")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /livez: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunRejectsABadAddress(t *testing.T) {
	err := run(context.Background(), []string{"dashboard", "-addr", "nonsense"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen on nonsense") {
		t.Errorf("run = %v, want a listen error", err)
	}
}

package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready: slot busy", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	var calls atomic.Int32
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer late.Close()

	for _, tc := range []struct {
		name    string
		args    []string
		wantErr []string // substrings of the error; nil for success
		notErr  string   // a substring the error must not hold
	}{
		{"one ready URL", []string{ok.URL}, nil, ""},
		{"no URL", nil, []string{"no URL to probe", "usage: healthprobe"}, ""},
		{"an unknown flag", []string{"-retries", "3", ok.URL}, []string{"-retries"}, ""},
		{"503 with its body", []string{down.URL}, []string{down.URL, "503", "slot busy"}, ""},
		{"only the failing URL is named", []string{ok.URL, down.URL}, []string{down.URL}, ok.URL + ":"},
		{"not a URL", []string{"://nowhere"}, []string{"://nowhere"}, ""},
		{"ready after two tries with -wait", []string{"-wait", "5s", late.URL}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"healthprobe"}, tc.args...), io.Discard)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("err = nil")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err %q lacks %q", err, want)
				}
			}
			if tc.notErr != "" && strings.Contains(err.Error(), tc.notErr) {
				t.Errorf("err %q names %q", err, tc.notErr)
			}
		})
	}
}

// Without -wait, one failing answer is final: no retry.
func TestRunTriesOnceWithoutWait(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	began := time.Now()
	if err := run(context.Background(), []string{"healthprobe", srv.URL}, io.Discard); err == nil {
		t.Fatal("a 500 passed")
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests, want 1 (took %v)", n, time.Since(began))
	}
}

// This file is not part of any package in the repository: the benchmark
// harness adds it to cdc-relay's main package with `go build -overlay` to
// build a profiling variant of the binary (tests/bench, Build). It serves
// net/http/pprof on $CDC_RELAY_BENCH_PPROF_ADDR when that is set.
package main

import (
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("CDC_RELAY_BENCH_PPROF_ADDR")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic("CDC_RELAY_BENCH_PPROF_ADDR: " + err.Error())
	}
	go func() { _ = http.Serve(ln, nil) }()
}

// Command healthprobe checks HTTP health endpoints: it exits 0 when every URL
// answers 2xx, else 1 with one line per failure on stderr.
//
//	healthprobe [-timeout 2s] [-wait 0] URL...
//
// The images are distroless (no shell, no curl), so compose healthchecks run
// this binary, copied into every image: ["CMD", "/healthprobe",
// "http://127.0.0.1:8000/readyz"]. deploy/local/demo.sh uses -wait to wait
// for the processes it starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "healthprobe:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "time limit of one request")
	wait := fs.Duration("wait", 0, "keep trying for this long until every URL answers 2xx (0: try once)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no URL to probe (usage: healthprobe [-timeout 2s] [-wait 0] URL...)")
	}
	client := &http.Client{Timeout: *timeout}
	deadline := time.Now().Add(*wait)
	for {
		err := probeAll(ctx, client, fs.Args())
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func probeAll(ctx context.Context, client *http.Client, urls []string) error {
	var errs []error
	for _, u := range urls {
		if err := probe(ctx, client, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// listenerPID finds the process on this machine that listens on the TCP
// port of amqpURL (the broker's beam.smp), so its CPU time can be read
// from /proc. It returns errNoBroker when the URL's host is not this
// machine or no process of it listens there (a broker in a container of
// another user, a remote broker): the report then says the broker's CPU
// is unknown.
func listenerPID(amqpURL string) (int, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return 0, fmt.Errorf("broker URL: %w", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5672"
	}
	if !localHost(host) {
		return 0, errNoBroker
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("broker URL: port %q: %w", port, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(f, uint16(p), inodes); err != nil {
			return 0, err
		}
	}
	if len(inodes) == 0 {
		return 0, errNoBroker
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range dirs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // another user's process, or gone
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			if in, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(in, "]")] {
				return strconv.Atoi(filepath.Base(filepath.Dir(dir)))
			}
		}
	}
	return 0, errNoBroker
}

// localHost reports whether host names this machine.
func localHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ip := range ips {
		if ip.IsLoopback() {
			return true
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// listeningInodes adds the socket inodes of the listeners on port in a
// /proc/net/tcp{,6} table (state 0A is LISTEN).
func listeningInodes(path string, port uint16, into map[string]bool) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find the broker's process: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if strings.HasSuffix(f[1], want) && f[3] == "0A" {
			into[f[9]] = true
		}
	}
	return nil
}

// cpuOf is a process's utime+stime, or 0 when pid is 0.
func cpuOf(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	s, err := readProc(pid)
	if err != nil {
		return 0
	}
	return s.CPU
}

// quiesce waits until process pid used less than idleShare of a core over
// a window of quietWindow (the broker finishing what the last step left:
// deleting a queue of persistent messages, compacting its message store),
// or until within passes. With pid 0 it waits for nothing. It returns how
// long it waited.
func quiesce(ctx context.Context, pid int, within time.Duration) time.Duration {
	const (
		quietWindow = 500 * time.Millisecond
		idleShare   = 0.10
	)
	began := time.Now()
	if pid == 0 {
		return 0
	}
	for time.Since(began) < within {
		c0 := cpuOf(pid)
		if err := pause(ctx, quietWindow); err != nil {
			break
		}
		if used := cpuOf(pid) - c0; used.Seconds() < idleShare*quietWindow.Seconds() {
			break
		}
	}
	return time.Since(began)
}

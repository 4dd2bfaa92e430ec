// Package tcpproxy is a TCP proxy for fault tests: it sits between a client
// and a server on loopback and can drop every connection or stop forwarding,
// the way a network failure would.
package tcpproxy

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
)

// Proxy forwards connections from Addr to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	paused bool
	wake   chan struct{} // closed on Resume
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target. It is closed
// at the end of the test.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	return start(t, target, nil)
}

// StartTLS is Start with TLS on the proxy's side: it terminates TLS with
// cert and forwards the plain bytes, as a TLS-terminating load balancer in
// front of a broker does.
func StartTLS(t testing.TB, target string, cert tls.Certificate) *Proxy {
	t.Helper()
	return start(t, target, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}

func start(t testing.TB, target string, tlsConfig *tls.Config) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpproxy: listen: %v", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, wake: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c)
		go p.pipe(c, s)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer p.drop(dst, src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitUnpaused()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a dropped connection: close both sides
		}
	}
}

func (p *Proxy) waitUnpaused() {
	p.mu.Lock()
	paused, wake := p.paused, p.wake
	p.mu.Unlock()
	if paused {
		<-wake
	}
}

func (p *Proxy) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

// DropAll closes every open connection (both sides); new ones are accepted.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.drop(conns...)
}

// Pause stops forwarding bytes (connections stay open), like a stalled network.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused = true
		p.wake = make(chan struct{})
	}
}

// Resume forwards again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.wake)
	}
}

// Close stops listening and drops every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Resume()
	p.DropAll()
	p.wg.Wait()
}

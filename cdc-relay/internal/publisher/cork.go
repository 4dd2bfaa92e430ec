package publisher

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// corkDelay is the longest a frame waits in corkedConn before it is sent.
const corkDelay = 250 * time.Microsecond

// corkedConn gathers the broker connection's writes for up to corkDelay.
// amqp091 flushes its own buffer after every publish, so a drain at a few
// thousand messages a second paid one write(2) per message, the largest
// single item in the relay's CPU profile. Corked, a burst of publishes
// leaves in a few large writes, for at most corkDelay of added latency.
// A write that comes after a quiet spell of corkDelay goes out at once, so
// a trickle of messages (the common case) waits for nothing; heartbeats and
// the handshake go through the same rule.
type corkedConn struct {
	net.Conn

	mu    sync.Mutex
	w     *bufio.Writer
	timer *time.Timer
	armed bool
	last  time.Time // of the last write(2)
	err   error     // of a timer flush, returned by the next Write
	now   func() time.Time
}

func cork(c net.Conn) *corkedConn {
	cc := &corkedConn{Conn: c, w: bufio.NewWriterSize(c, 64<<10), now: time.Now}
	cc.timer = time.AfterFunc(time.Hour, cc.flushTimer)
	cc.timer.Stop()
	return cc
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p) // writes through once the buffer is full
	if err != nil {
		c.err = err
		return n, err
	}
	if now := c.now(); !c.armed && now.Sub(c.last) >= corkDelay {
		c.last = now
		if c.err = c.w.Flush(); c.err != nil {
			return n, c.err
		}
		return n, nil
	}
	if !c.armed && c.w.Buffered() > 0 {
		c.armed = true
		c.timer.Reset(corkDelay)
	}
	return n, nil
}

func (c *corkedConn) flushTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.last = c.now()
	if c.err == nil {
		c.err = c.w.Flush()
	}
}

// abort makes every pending and future read and write fail at once. It
// does not take c.mu, which a blocked Write holds.
func (c *corkedConn) abort() { _ = c.Conn.SetDeadline(time.Unix(1, 0)) }

// Close sends what is buffered, then closes. A write blocked for more than
// a second (a peer that stopped reading) is cut off first: Close must not
// wait on it.
func (c *corkedConn) Close() error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.mu.Lock()
	c.timer.Stop()
	if c.err == nil {
		c.err = c.w.Flush()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

package publisher

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// corkDelay is the longest a frame waits in corkedConn before it is sent.
const corkDelay = 250 * time.Microsecond

// corkedConn gathers the broker connection's writes until the relay goes
// back to the database for more WAL (flushNow, called before each read of
// the replication socket), or for up to corkDelay when nothing calls it.
// amqp091 flushes its own buffer after every publish, so a drain at a few
// thousand messages a second paid one write(2) per message, the largest
// single item in the relay's CPU profile. Corked, the messages decoded
// from one read of the replication socket leave in one write.
//
// The timer is only the fallback (heartbeats, the handshake, a publisher
// waiting for the window): a timer of under a millisecond fires a
// millisecond or more late in a process idle in epoll_wait, whose timeout
// is in milliseconds, and later still on a busy machine, so a message that
// waited for it paid that in commit-to-consumer latency. A write that comes
// after a quiet spell of corkDelay goes out at once.
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

// flushNow sends what is buffered. It does not wait for a Write or a timer
// flush that holds the buffer (one blocked by a broker that stopped
// reading): that one sends it.
func (c *corkedConn) flushNow() {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if c.err != nil || c.w.Buffered() == 0 {
		return
	}
	c.timer.Stop()
	c.armed = false
	c.last = c.now()
	c.err = c.w.Flush()
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

package publisher

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recConn records the writes that reach the socket.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
	closed bool
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recConn) Close() error                     { r.closed = true; return nil }
func (r *recConn) SetDeadline(time.Time) error      { return nil }
func (r *recConn) SetWriteDeadline(time.Time) error { return nil }

func (r *recConn) snapshot() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.writes...)
}

func TestCorkedConn(t *testing.T) {
	t.Run("a write after a quiet spell goes out at once", func(t *testing.T) {
		rc := &recConn{}
		c := cork(rc)
		_, err := c.Write([]byte("a"))
		require.NoError(t, err)
		assert.Equal(t, [][]byte{[]byte("a")}, rc.snapshot())
	})
	t.Run("a burst leaves in one write within the delay", func(t *testing.T) {
		rc := &recConn{}
		c := cork(rc)
		at := time.Now()
		c.now = func() time.Time { return at } // the whole burst at one instant, however slow the machine
		for _, s := range []string{"a", "b", "c", "d"} {
			_, err := c.Write([]byte(s))
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return len(rc.snapshot()) == 2 }, time.Second, time.Millisecond)
		assert.Equal(t, [][]byte{[]byte("a"), []byte("bcd")}, rc.snapshot())
	})
	t.Run("flushNow sends a burst at once, without the timer", func(t *testing.T) {
		rc := &recConn{}
		c := cork(rc)
		at := time.Now()
		c.now = func() time.Time { return at }
		for _, s := range []string{"a", "b", "c"} {
			_, err := c.Write([]byte(s))
			require.NoError(t, err)
		}
		c.flushNow()
		assert.Equal(t, [][]byte{[]byte("a"), []byte("bc")}, rc.snapshot(), "sent before flushNow returned")
		c.flushNow() // nothing buffered: no write
		assert.Len(t, rc.snapshot(), 2)
		_, err := c.Write([]byte("d")) // the timer was stopped and disarmed: d arms it again
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(rc.snapshot()) == 3 }, time.Second, time.Millisecond)
	})
	t.Run("a failed timer flush is returned by the next write", func(t *testing.T) {
		rc := &recConn{}
		c := cork(rc)
		_, _ = c.Write([]byte("a"))
		rc.mu.Lock()
		rc.fail = errors.New("broken pipe")
		rc.mu.Unlock()
		_, _ = c.Write([]byte("b")) // corked: the timer's flush fails
		require.Eventually(t, func() bool {
			_, err := c.Write([]byte("c"))
			return err != nil && err.Error() == "broken pipe"
		}, time.Second, time.Millisecond)
	})
	t.Run("close sends what is buffered", func(t *testing.T) {
		rc := &recConn{}
		c := cork(rc)
		_, _ = c.Write([]byte("a"))
		_, _ = c.Write([]byte("b"))
		require.NoError(t, c.Close())
		assert.True(t, rc.closed)
		assert.Equal(t, [][]byte{[]byte("a"), []byte("b")}, rc.snapshot())
	})
}

// flushNow runs before each read of the replication socket: a write blocked
// by a broker that stopped reading must not hold it.
func TestCorkedConnFlushNowDoesNotWait(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: writes to a block
	defer b.Close()
	c := cork(a)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("stuck"))
		done <- err
	}()
	require.Eventually(t, func() bool {
		if c.mu.TryLock() {
			c.mu.Unlock()
			return false
		}
		return true
	}, 5*time.Second, time.Millisecond, "the write holds the buffer")
	flushed := make(chan struct{})
	go func() { c.flushNow(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(5 * time.Second):
		t.Fatal("flushNow waited for the blocked write")
	}
	c.abort()
	require.Error(t, <-done)
}

// A peer that stops reading must not hold the relay: abort ends a blocked
// write at once, and Close cuts it off instead of waiting on it.
func TestCorkedConnBlockedWrite(t *testing.T) {
	for name, end := range map[string]func(c *corkedConn){
		"abort": func(c *corkedConn) { c.abort() },
		"close": func(c *corkedConn) { _ = c.Close() },
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe() // nobody reads b: writes to a block
			defer b.Close()
			c := cork(a)
			done := make(chan error, 1)
			go func() {
				_, err := c.Write([]byte("stuck"))
				done <- err
			}()
			end(c)
			select {
			case err := <-done:
				require.Error(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("the blocked write was not cut off")
			}
		})
	}
}

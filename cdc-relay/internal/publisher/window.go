package publisher

import (
	"context"
	"sync"
)

// window bounds the messages a broker cut can make the relay resend: the
// span from the oldest unconfirmed message to the newest published one.
// With one channel the broker confirms in publishing order and the span is
// the unconfirmed count. With several, a channel's confirm can come before
// an older message's on another channel; the slot cannot move past the
// older one, so the later message still counts until the older one is
// confirmed. (Counting only unconfirmed messages, a lagging channel let the
// others run ahead and a cut resent more than the window.)
//
// Once full the window stays closed until a quarter of it is freed, then
// opens for that many at once: a publisher held by a full window wakes once
// per quarter window rather than once per confirm, and the broker still has
// three quarters of the window to work on meanwhile. (Waking per confirm, a
// drain behind a full window paid two goroutine switches per message.) A
// window of under 4 opens at each freed place.
type window struct {
	mu     sync.Mutex
	size   int
	reopen int  // opens again once used is down to this
	used   int  // places taken: the span, and acquired places not yet published
	closed bool // full, and not yet down to reopen
	room   chan struct{}

	oldest uint64 // the oldest unconfirmed sequence number
	// early marks, by sequence number modulo size, the messages confirmed
	// while an older one is not: every sequence number in flight lies in
	// [oldest, oldest+size), so none share a place.
	early []bool
}

func newWindow(size int) *window {
	return &window{size: size, reopen: size - size/4, room: make(chan struct{}, 1),
		oldest: 1, early: make([]bool, size)}
}

// tryAcquire takes a place if the window is open.
func (w *window) tryAcquire() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.used >= w.size {
		return false
	}
	w.used++
	if w.used == w.size {
		w.closed = w.reopen < w.size
	}
	return true
}

// acquire takes a place, waiting while the window is closed.
func (w *window) acquire(ctx context.Context) error {
	for !w.tryAcquire() {
		select {
		case <-w.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// cancel gives back a place whose publish failed: it took no sequence
// number.
func (w *window) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.free(1)
}

// settle records the broker's answer (a confirm or a nack) for sequence
// number seq (1, 2, ... in publishing order). The places from the oldest
// unconfirmed message on are freed once it is settled.
func (w *window) settle(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq < w.oldest || seq >= w.oldest+uint64(w.size) {
		return // not in flight: a mark would stand for another message
	}
	if seq != w.oldest {
		w.early[seq%uint64(w.size)] = true
		return
	}
	n := 1
	w.oldest++
	for i := w.oldest % uint64(w.size); w.early[i]; i = w.oldest % uint64(w.size) {
		w.early[i] = false
		w.oldest++
		n++
	}
	w.free(n)
}

// free gives n places back, opening the window when it is down to reopen.
func (w *window) free(n int) {
	w.used -= n
	if w.closed && w.used > w.reopen {
		return
	}
	w.closed = false
	select {
	case w.room <- struct{}{}:
	default:
	}
}

// inFlight is the number of places taken.
func (w *window) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.used
}

package publisher

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The window closes when full and opens again a quarter later.
func TestWindowOpensAQuarterAfterFull(t *testing.T) {
	tests := []struct {
		size, reopenAt int // reopenAt: used count at which it opens again
	}{
		{size: 1, reopenAt: 0},
		{size: 3, reopenAt: 2},
		{size: 4, reopenAt: 3},
		{size: 8, reopenAt: 6},
		{size: 1000, reopenAt: 750},
	}
	for _, tt := range tests {
		w := newWindow(tt.size)
		for i := range tt.size {
			require.True(t, w.tryAcquire(), "size %d: place %d", tt.size, i+1)
		}
		require.False(t, w.tryAcquire(), "size %d: full", tt.size)
		seq := uint64(1)
		for w.inFlight() > tt.reopenAt+1 {
			w.settle(seq)
			seq++
			require.False(t, w.tryAcquire(), "size %d: closed at %d in flight", tt.size, w.inFlight())
		}
		w.settle(seq)
		assert.Equal(t, tt.reopenAt, w.inFlight())
		require.True(t, w.tryAcquire(), "size %d: open again at %d", tt.size, tt.reopenAt)
	}
}

// Confirms that come before an older message's (another channel's) free
// nothing: the window bounds the span a cut resends, from the oldest
// unconfirmed message on. Once the oldest is confirmed, the run after it
// is freed at once.
func TestWindowCountsFromTheOldestUnconfirmed(t *testing.T) {
	tests := []struct {
		name     string
		settle   []uint64 // in this order
		inFlight []int    // after each
	}{
		{name: "in order", settle: []uint64{1, 2, 3, 4}, inFlight: []int{3, 2, 1, 0}},
		{name: "the oldest last", settle: []uint64{2, 3, 4, 1}, inFlight: []int{4, 4, 4, 0}},
		{name: "a gap in the middle", settle: []uint64{1, 3, 4, 2}, inFlight: []int{3, 3, 3, 0}},
		{name: "reversed", settle: []uint64{4, 3, 2, 1}, inFlight: []int{4, 4, 4, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(4)
			for range 4 {
				require.True(t, w.tryAcquire())
			}
			for i, seq := range tt.settle {
				w.settle(seq)
				assert.Equal(t, tt.inFlight[i], w.inFlight(), "after settling %d", seq)
			}
			// The places come round again: sequence numbers 5 to 8 reuse
			// the marks of 1 to 4, which must all be clear.
			for range 4 {
				require.True(t, w.tryAcquire())
			}
			w.settle(6)
			w.settle(5)
			assert.Equal(t, 2, w.inFlight())
		})
	}
}

// A sequence number outside the flight (0, one already settled, one not yet
// published) changes nothing: a mark for it would stand for another message.
func TestWindowIgnoresSequenceNumbersNotInFlight(t *testing.T) {
	w := newWindow(4)
	for range 4 {
		require.True(t, w.tryAcquire())
	}
	w.settle(1)
	for _, seq := range []uint64{0, 1, 6, 100} {
		w.settle(seq)
		assert.Equal(t, 3, w.inFlight(), "after settling %d", seq)
	}
	w.settle(2)
	w.settle(3)
	w.settle(4)
	assert.Zero(t, w.inFlight())
	for range 4 {
		require.True(t, w.tryAcquire())
	}
	w.settle(5)
	assert.Equal(t, 3, w.inFlight(), "no stale mark skips 8 = 2·4")
	w.settle(6)
	w.settle(7)
	assert.Equal(t, 1, w.inFlight(), "8 is still in flight")
}

// A publish that failed took no sequence number: cancel frees its place
// and leaves the oldest unconfirmed one where it was.
func TestWindowCancel(t *testing.T) {
	w := newWindow(2)
	require.True(t, w.tryAcquire())
	require.True(t, w.tryAcquire())
	w.cancel() // the second publish failed
	assert.Equal(t, 1, w.inFlight())
	require.True(t, w.tryAcquire()) // published as 2
	w.settle(2)
	assert.Equal(t, 2, w.inFlight(), "2 was confirmed before 1")
	w.settle(1)
	assert.Zero(t, w.inFlight())
}

// A waiting acquire wakes when the window opens, and gives up with its
// context.
func TestWindowAcquireWaits(t *testing.T) {
	w := newWindow(4)
	for range 4 {
		require.NoError(t, w.acquire(context.Background()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.acquire(ctx), context.DeadlineExceeded)

	got := make(chan error, 1)
	go func() { got <- w.acquire(context.Background()) }()
	w.settle(1) // 3 in flight: 4 - 4/4, open
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("acquire did not wake when the window opened")
	}
	assert.Equal(t, 4, w.inFlight())
}

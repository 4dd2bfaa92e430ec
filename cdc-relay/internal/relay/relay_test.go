package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/config"
	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
	"github.com/saga-cdc/saga/cdc-relay/internal/publisher"
)

// step is one scripted session of the run loop: it may reach streaming,
// may stop the relay while it runs (a SIGTERM), and ends with err.
type step struct {
	err      error
	streamed bool
	stop     bool
}

// loop is what a run of the loop did.
type loop struct {
	err        error
	sessions   int
	waits      []time.Duration
	phases     []Phase // the relay's phase at each wait
	reasons    []string
	reconnects []string
	status     Status
	relay      *Relay
	logs       string
}

type reconnectObserver struct {
	nopObserver
	targets []string
}

func (o *reconnectObserver) Reconnect(target string) { o.targets = append(o.targets, target) }

// runLoop runs Relay.Run over the scripted sessions, with waits that
// return at once (recorded); after the last step the relay is stopped.
func runLoop(t *testing.T, cfg config.Config, steps ...step) loop {
	t.Helper()
	var logs strings.Builder
	obs := &reconnectObserver{}
	r := New(cfg, Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: 800 * time.Millisecond, StandbyPoll: 300 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), obs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out loop
	r.runSession = func(ctx context.Context) error {
		i := out.sessions
		out.sessions++
		if i >= len(steps) {
			cancel() // the script is over: stop the relay
			return ctx.Err()
		}
		s := steps[i]
		if s.streamed {
			r.streamed.Store(true)
		}
		if s.stop {
			cancel()
		}
		return s.err
	}
	r.after = func(d time.Duration) <-chan time.Time {
		st := r.Status()
		out.waits = append(out.waits, d)
		out.phases = append(out.phases, st.Phase)
		out.reasons = append(out.reasons, st.Reason)
		ch := make(chan time.Time, 1)
		ch <- time.Now()
		return ch
	}
	out.err = r.Run(ctx)
	out.status, out.relay, out.reconnects, out.logs = r.Status(), r, obs.targets, logs.String()
	require.NotErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the loop did not end")
	return out
}

// inRange: d is an attempt's backoff, between half of base and base.
func inRange(t *testing.T, d, base time.Duration) {
	t.Helper()
	assert.GreaterOrEqual(t, d, base/2, "backoff %v under half of %v", d, base)
	assert.LessOrEqual(t, d, base, "backoff %v over %v", d, base)
}

func TestRunLoop(t *testing.T) {
	cfg := config.Defaults()
	cfg.Slot, cfg.Exchange = "s1", "saga"
	dbDown := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	brokerDown := brokerError{errors.New("dial tcp 127.0.0.1:5672: connection refused")}
	unroutable := &publisher.Failure{Err: publisher.ErrUnroutable, MessageID: "m-1", RoutingKey: "order/1", Reason: "NO_ROUTE"}
	tooLarge := &publisher.Failure{Err: publisher.ErrTooLarge, MessageID: "m-2", Reason: "frame over the limit"}

	t.Run("a fatal error stops it at once, with the error", func(t *testing.T) {
		fatal := fault.Fatalf("publication %q does not exist", "p")
		l := runLoop(t, cfg, step{err: dbDown}, step{err: fatal})
		require.ErrorIs(t, l.err, ErrFatal)
		assert.Equal(t, 2, l.sessions)
		assert.Len(t, l.waits, 1, "no wait after the fatal error")
		assert.Equal(t, PhaseStopped, l.status.Phase)
		assert.Contains(t, l.status.Reason, "does not exist")
		assert.Contains(t, l.status.LastError, "does not exist")
	})

	t.Run("a stop ends it with nil, whatever the session returned", func(t *testing.T) {
		for _, err := range []error{nil, context.Canceled, dbDown, fault.Fatalf("fatal while stopping")} {
			l := runLoop(t, cfg, step{err: err, stop: true})
			assert.NoError(t, l.err, "session error %v", err)
			assert.Equal(t, 1, l.sessions)
			assert.Empty(t, l.waits)
			assert.Equal(t, PhaseStopped, l.status.Phase)
			if err != nil && !errors.Is(err, context.Canceled) {
				assert.Contains(t, l.logs, "stopped after an error")
			} else {
				assert.NotContains(t, l.logs, "stopped after an error")
			}
		}
	})

	t.Run("outages back off exponentially up to the cap, per target", func(t *testing.T) {
		l := runLoop(t, cfg, step{err: dbDown}, step{err: brokerDown}, step{err: dbDown}, step{err: dbDown}, step{err: dbDown})
		assert.NoError(t, l.err)
		require.Len(t, l.waits, 5)
		for i, base := range []time.Duration{100, 200, 400, 800, 800} {
			inRange(t, l.waits[i], base*time.Millisecond)
			assert.Equal(t, PhaseBackoff, l.phases[i])
		}
		assert.Equal(t, []string{TargetDatabase, TargetBroker, TargetDatabase, TargetDatabase, TargetDatabase}, l.reconnects)
		assert.Equal(t, uint64(5), l.status.Reconnects)
		assert.Contains(t, l.reasons[1], "5672")
	})

	t.Run("a session that streamed again restarts the backoff", func(t *testing.T) {
		l := runLoop(t, cfg, step{err: dbDown}, step{err: dbDown}, step{err: dbDown, streamed: true}, step{err: dbDown})
		require.Len(t, l.waits, 4)
		inRange(t, l.waits[0], 100*time.Millisecond)
		inRange(t, l.waits[1], 200*time.Millisecond)
		inRange(t, l.waits[2], 100*time.Millisecond) // streamed: attempt 1 again
		inRange(t, l.waits[3], 200*time.Millisecond)
	})

	t.Run("a message the broker refused keeps backing off, even after streaming", func(t *testing.T) {
		l := runLoop(t, cfg, step{err: unroutable}, step{err: unroutable, streamed: true}, step{err: fmt.Errorf("publish: %w", tooLarge), streamed: true})
		require.Len(t, l.waits, 3)
		inRange(t, l.waits[0], 100*time.Millisecond)
		inRange(t, l.waits[1], 200*time.Millisecond)
		inRange(t, l.waits[2], 400*time.Millisecond)
		// The returned message is sent alone first next time; the one too
		// large is remembered as poison.
		assert.Equal(t, "m-1", l.relay.mem.heldID())
		reason, ok := l.relay.mem.poisoned("m-2")
		assert.True(t, ok)
		assert.Equal(t, "frame over the limit", reason)
		assert.Contains(t, l.logs, "routing_key=order/1")
		// The broker refused them: that side is counted.
		assert.Equal(t, []string{TargetBroker, TargetBroker, TargetBroker}, l.reconnects)
	})

	t.Run("park set but the message returned: the log gives the policy", func(t *testing.T) {
		parked := cfg
		parked.Unroutable = config.UnroutablePark
		l := runLoop(t, parked, step{err: unroutable})
		assert.Contains(t, l.logs, "has no alternate exchange")
		assert.Contains(t, l.logs, "set the policy: rabbitmqctl set_policy --apply-to exchanges cdc-relay-unroutable-saga")
	})

	t.Run("a slot held by another relay: standby, polled, no reconnect counted", func(t *testing.T) {
		busy := fmt.Errorf("slot s1: %w", fault.ErrSlotActive)
		l := runLoop(t, cfg, step{err: busy}, step{err: busy}, step{err: dbDown})
		require.Len(t, l.waits, 3)
		assert.Equal(t, []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}, l.waits[:2])
		assert.Equal(t, []Phase{PhaseStandby, PhaseStandby, PhaseBackoff}, l.phases)
		inRange(t, l.waits[2], 100*time.Millisecond)
		assert.Equal(t, []string{TargetDatabase}, l.reconnects)
	})

	t.Run("a session that ends without an error is retried as one", func(t *testing.T) {
		l := runLoop(t, cfg, step{})
		require.Len(t, l.waits, 1)
		assert.Contains(t, l.reasons[0], "session ended without an error")
	})
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt    int
		first, max time.Duration
		lo, hi     time.Duration
	}{
		{1, 250 * time.Millisecond, 2 * time.Second, 125 * time.Millisecond, 250 * time.Millisecond},
		{2, 250 * time.Millisecond, 2 * time.Second, 250 * time.Millisecond, 500 * time.Millisecond},
		{4, 250 * time.Millisecond, 2 * time.Second, time.Second, 2 * time.Second},
		{5, 250 * time.Millisecond, 2 * time.Second, time.Second, 2 * time.Second},  // capped
		{64, 250 * time.Millisecond, 2 * time.Second, time.Second, 2 * time.Second}, // no overflow
		{1, time.Nanosecond, time.Second, 0, time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d of %v capped at %v", tt.attempt, tt.first, tt.max), func(t *testing.T) {
			for range 200 {
				d := backoff(tt.attempt, tt.first, tt.max)
				require.GreaterOrEqual(t, d, tt.lo)
				require.LessOrEqual(t, d, tt.hi)
			}
		})
	}
}

func TestBrokerDialError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fatal bool
		want  string
	}{
		{"refused credentials", &amqp.Error{Code: amqp.AccessRefused, Reason: "ACCESS_REFUSED"}, true, "check CDC_RELAY_AMQP_URL (user, password, vhost)"},
		{"exchange with other arguments", fmt.Errorf("declare: %w", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED"}), true, "must be a durable topic exchange"},
		{"channel closed", &amqp.Error{Code: amqp.ChannelError, Reason: "CHANNEL_ERROR"}, false, "CHANNEL_ERROR"},
		{"connection refused", errors.New("dial tcp: connection refused"), false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := brokerDialError(tt.err)
			assert.Equal(t, tt.fatal, errors.Is(err, ErrFatal))
			assert.Contains(t, err.Error(), tt.want)
			var be brokerError
			assert.Equal(t, !tt.fatal, errors.As(err, &be), "a retryable broker error counts against the broker")
		})
	}
}

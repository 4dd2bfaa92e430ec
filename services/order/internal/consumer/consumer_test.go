package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

type fakeApplier struct {
	id       int64
	status   app.Status
	err      error
	notFound int // calls that find no order before err applies
	calls    int
}

func (f *fakeApplier) ApplyStatus(_ context.Context, _ pgx.Tx, id int64, s app.Status) (bool, error) {
	f.id, f.status = id, s
	f.calls++
	if f.calls <= f.notFound {
		return false, app.ErrNotFound
	}
	return true, f.err
}

// An order not yet visible when its reply arrives (its commit streamed
// before other sessions see it) is read again for a moment; an order that
// stays unknown is unprocessable after about 0.6 s.
func TestHandlerWaitsForAnOrderNotYetVisible(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	body := []byte(`{"order_id": 5, "status": "reserved"}`)
	f := &fakeApplier{notFound: 2}
	require.NoError(t, Handler(f, log)(context.Background(), nil, platform.Delivery{Body: body}))
	assert.Equal(t, 3, f.calls)

	f = &fakeApplier{err: app.ErrNotFound}
	began := time.Now()
	err := Handler(f, log)(context.Background(), nil, platform.Delivery{Body: body})
	assert.EqualError(t, err, "unprocessable message: unknown order 5")
	assert.Equal(t, 7, f.calls, "the first read and six more")
	assert.GreaterOrEqual(t, time.Since(began), 600*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &fakeApplier{err: app.ErrNotFound}
	assert.ErrorIs(t, Handler(f, log)(ctx, nil, platform.Delivery{Body: body}), context.Canceled, "a stop does not wait")
}

func TestHandler(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		body   string
		err    error // from the applier
		id     int64
		status app.Status
		want   string // error, "" for none
	}{
		{`{"order_id": 1, "status": "reserved"}`, nil, 1, app.StatusReserved, ""},
		{`{"order_id": "12", "status": "payment_denied"}`, nil, 12, app.StatusPaymentDenied, ""},
		{`nope`, nil, 0, "", "unprocessable message: body is not a JSON object"},
		{`{"status": "reserved"}`, nil, 0, "", `unprocessable message: order_id: missing`},
		{`{"order_id": 1}`, nil, 0, "", "unprocessable message: status is missing"},
		{`{"order_id": 1, "status": "shipped"}`, nil, 0, "", `unprocessable message: status "shipped" is not an order status`},
		{`{"order_id": 9, "status": "reserved"}`, app.ErrNotFound, 9, app.StatusReserved, "unprocessable message: unknown order 9"},
		{`{"order_id": 9, "status": "reserved"}`, errors.New("conn reset"), 9, app.StatusReserved, "conn reset"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			f := &fakeApplier{err: tc.err}
			err := Handler(f, log)(context.Background(), nil, platform.Delivery{Body: []byte(tc.body)})
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.EqualError(t, err, tc.want)
			}
			assert.Equal(t, tc.id, f.id)
			assert.Equal(t, tc.status, f.status)
		})
	}
}

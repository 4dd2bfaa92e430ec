package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"

	"github.com/saga-cdc/saga/services/internal/platform"
	"github.com/saga-cdc/saga/services/order/internal/app"
)

type fakeApplier struct {
	id     int64
	status app.Status
	err    error
}

func (f *fakeApplier) ApplyStatus(_ context.Context, _ pgx.Tx, id int64, s app.Status) (bool, error) {
	f.id, f.status = id, s
	return true, f.err
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

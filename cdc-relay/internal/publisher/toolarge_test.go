package publisher

import (
	"errors"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RabbitMQ closes the channel (406) for a body over max_message_size; the
// publisher names the message from the sizes in its reason.
func TestTooLargeNamesTheMessage(t *testing.T) {
	c := &channel{flight: make([]flight, 8)}
	c.flight[c.slot(5)] = flight{tag: 5, seq: 105, id: "small", key: "k", size: 10}
	c.flight[c.slot(6)] = flight{tag: 6, seq: 106, id: "big", key: "k2", size: 2000}
	c.flight[c.slot(7)] = flight{tag: 7, seq: 107, id: "big-too", key: "k3", size: 2000}
	p := &Publisher{}
	tests := []struct {
		name string
		err  *amqp.Error
		want string // message id; "" for no Failure
	}{
		{"configured max size", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1024"}, "big"},
		{"default max size", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 2000 is larger than max size 134217728"}, "big"},
		{"no message of that size", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 3000 is larger than configured max size 1024"}, ""},
		{"another precondition", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'type'"}, ""},
		{"another code", &amqp.Error{Code: amqp.NotFound, Reason: "message size 2000 is larger than configured max size 1024"}, ""},
		{"no error", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := c.tooLarge(tt.err)
			if tt.want == "" {
				assert.Nil(t, f)
				err := p.channelClosed(c, tt.err)
				assert.True(t, errors.Is(err, ErrClosed))
				return
			}
			require.NotNil(t, f)
			assert.Equal(t, tt.want, f.MessageID)
			assert.Equal(t, uint64(106), f.Tag, "the first unconfirmed message of that size, by its sequence number")
			assert.True(t, errors.Is(f, ErrTooLarge))
			assert.Contains(t, f.Error(), "a body of 2000 bytes over max_message_size")
		})
	}
}

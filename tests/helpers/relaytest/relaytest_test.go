package relaytest

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
)

// collected is a Collector that received rows (writer, seq) in that order,
// each under the message id w-s, and one body that is not a test row.
func collected(rows ...[2]int) *Collector {
	c := &Collector{}
	for _, r := range rows {
		c.add(amqp.Delivery{MessageId: fmt.Sprintf("%d-%d", r[0], r[1]), Body: fmt.Appendf(nil, `{"writer":%d,"seq":%d}`, r[0], r[1])})
	}
	return c
}

func TestMeasure(t *testing.T) {
	tests := []struct {
		name string
		rows [][2]int
		want Figures
	}{
		{"all, in order", [][2]int{{0, 1}, {1, 1}, {0, 2}, {1, 2}}, Figures{Written: 4, Received: 4}},
		{"a duplicate", [][2]int{{0, 1}, {0, 2}, {0, 2}, {1, 1}, {1, 2}}, Figures{Written: 4, Received: 5, Duplicates: 1}},
		{"a row lost", [][2]int{{0, 1}, {1, 1}, {1, 2}}, Figures{Written: 4, Received: 3, Lost: 1}},
		{"out of order", [][2]int{{0, 2}, {0, 1}, {1, 1}, {1, 2}}, Figures{Written: 4, Received: 4, OrderViolations: 1}},
		{"an unknown writer is not counted as a row", [][2]int{{0, 1}, {0, 2}, {5, 1}, {1, 1}, {1, 2}}, Figures{Written: 4, Received: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, collected(tt.rows...).Measure(2, 2))
		})
	}
}

func TestCollector(t *testing.T) {
	c := collected([2]int{0, 1}, [2]int{0, 2}, [2]int{0, 2}, [2]int{1, 1}, [2]int{1, 2})
	assert.Equal(t, 5, c.Len())
	assert.Equal(t, 4, c.Distinct())
	assert.True(t, c.has("1-2"))
	assert.False(t, c.has("2-1"))
	assert.Equal(t, 1, c.Check(t, 2, 2), "one duplicate, everything else in order")
	assert.Equal(t, []int{1, 2, 2, 1, 2}, func() (s []int) {
		for _, m := range c.Messages() {
			s = append(s, m.Seq)
		}
		return s
	}(), "in arrival order")

	c.add(amqp.Delivery{MessageId: "x", Body: []byte("not json")})
	assert.Len(t, c.bad, 1, "a body that is not a test row is set aside, and Check fails on it")
	assert.Equal(t, 5, c.Len())
}

package proctest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOutputFindsLogFields(t *testing.T) {
	var o Output
	early := o.Await("http listening", "addr")
	_, _ = o.Write([]byte(`{"msg":"starting"}` + "\n" + `{"msg":"http list`))
	_, ok := o.Field("http listening", "addr")
	assert.False(t, ok, "half a line is not a line")
	select {
	case <-early:
		t.Fatal("woke on half a line")
	default:
	}
	_, _ = o.Write([]byte(`ening","addr":"127.0.0.1:4242"}` + "\n" + `not json` + "\n"))
	select {
	case addr := <-early:
		assert.Equal(t, "127.0.0.1:4242", addr)
	case <-time.After(time.Second):
		t.Fatal("Await did not see the line")
	}
	addr, ok := o.Field("http listening", "addr")
	require.True(t, ok)
	assert.Equal(t, "127.0.0.1:4242", addr)
	assert.Equal(t, "127.0.0.1:4242", <-o.Await("http listening", "addr"), "a line already written")
	_, ok = o.Field("http listening", "port")
	assert.False(t, ok)
	assert.Contains(t, o.String(), "not json")
}

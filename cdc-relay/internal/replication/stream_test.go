package replication

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/saga-cdc/saga/cdc-relay/internal/fault"
)

// walsender is the server side of a Stream, over an in-memory pipe: it
// answers the start-up, then sends what the test gives it.
type walsender struct {
	t    *testing.T
	conn net.Conn
	be   *pgproto3.Backend
}

// openFake opens a Stream to a fake walsender.
func openFake(t *testing.T) (*Stream, *walsender) {
	t.Helper()
	client, server := net.Pipe()
	w := &walsender{t: t, conn: server, be: pgproto3.NewBackend(server, server)}
	ready := make(chan error, 1)
	go func() {
		if _, err := w.be.ReceiveStartupMessage(); err != nil {
			ready <- err
			return
		}
		w.be.Send(&pgproto3.AuthenticationOk{})
		w.be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.20"})
		w.be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}})
		w.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		ready <- w.be.Flush()
	}()
	cfg, err := pgconn.ParseConfig("postgres://relay@127.0.0.1:1/db?sslmode=disable")
	require.NoError(t, err)
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := openConfig(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, <-ready)
	t.Cleanup(func() { client.Close(); server.Close() })
	return s, w
}

// send writes msgs to the relay from a goroutine (the pipe blocks until
// they are read).
func (w *walsender) send(msgs ...pgproto3.BackendMessage) {
	go func() {
		for _, m := range msgs {
			w.be.Send(m)
		}
		_ = w.be.Flush()
	}()
}

func keepalive(walEnd uint64, reply bool) *pgproto3.CopyData {
	b := append([]byte{'k'}, u64(walEnd)...)
	b = append(b, u64(0)...)
	r := byte(0)
	if reply {
		r = 1
	}
	return &pgproto3.CopyData{Data: append(b, r)}
}

func TestStreamReceive(t *testing.T) {
	begin := cat([]byte{'B'}, u64(0x2000), u64(0), u32(42))
	tests := []struct {
		name    string
		send    []pgproto3.BackendMessage
		close   bool // the server closes the connection after sending
		wait    time.Duration
		check   func(t *testing.T, m Message)
		wantErr string
		is      error
	}{
		{name: "a keepalive", send: []pgproto3.BackendMessage{keepalive(0x3000, true)},
			check: func(t *testing.T, m Message) {
				assert.Equal(t, Keepalive{ServerWALEnd: 0x3000, ReplyRequested: true}, m.(Keepalive))
			}},
		{name: "a transaction's begin", send: []pgproto3.BackendMessage{&pgproto3.CopyData{Data: xlog(0x1f00, begin)}},
			check: func(t *testing.T, m Message) {
				d := m.(Data)
				assert.Equal(t, LSN(0x1f00), d.WALStart)
				assert.Equal(t, uint32(42), d.Message.(*pglogrepl.BeginMessage).Xid)
			}},
		{name: "nothing before the deadline", wait: 20 * time.Millisecond, is: ErrTimeout},
		{name: "a CopyData that cannot be decoded", send: []pgproto3.BackendMessage{&pgproto3.CopyData{Data: []byte{'w', 1}}}, is: ErrDecode},
		{name: "an error from the server", send: []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "boom"}},
			wantErr: "replication stream: ERROR: boom (SQLSTATE XX000)"},
		{name: "the end of the stream with the cause", send: []pgproto3.BackendMessage{&pgproto3.CopyDone{},
			&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}},
			is: ErrStreamEnded, wantErr: "(CopyDone): FATAL: terminating connection due to administrator command"},
		{name: "the end of the stream, then an error", send: []pgproto3.BackendMessage{&pgproto3.CopyDone{},
			&pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "walsender error"}},
			is: ErrStreamEnded, wantErr: "(CopyDone): ERROR: walsender error"},
		{name: "the end of the stream, then the connection closed", send: []pgproto3.BackendMessage{&pgproto3.CopyDone{}}, close: true,
			is: ErrStreamEnded, wantErr: "then it closed the connection"},
		{name: "the end of the stream by the walsender", send: []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte("COPY 0")}},
			is: ErrStreamEnded, wantErr: "(CommandComplete: its walsender ended the stream)"},
		{name: "a message a stream does not carry", send: []pgproto3.BackendMessage{&pgproto3.EmptyQueryResponse{}},
			wantErr: "unexpected message *pgproto3.EmptyQueryResponse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, w := openFake(t)
			var reads atomic.Int32
			s.OnRead(func() { reads.Add(1) })
			if len(tt.send) > 0 {
				go func() {
					for _, m := range tt.send {
						w.be.Send(m)
					}
					_ = w.be.Flush()
					if tt.close {
						w.conn.Close()
					}
				}()
			}
			wait := tt.wait
			if wait == 0 {
				wait = 5 * time.Second
			}
			m, err := s.Receive(context.Background(), time.Now().Add(wait))
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
			}
			if tt.check != nil {
				require.NoError(t, err)
				tt.check(t, m)
			}
			assert.Positive(t, reads.Load(), "the read hook ran before reading")
		})
	}
}

// A context that ends interrupts a Receive at once, whatever its deadline;
// a later Receive with a live context reads again.
func TestStreamReceiveInterrupted(t *testing.T) {
	s, w := openFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.Receive(ctx, time.Now().Add(time.Minute))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 5*time.Second)

	_, err = s.Receive(ctx, time.Now().Add(time.Minute))
	assert.ErrorIs(t, err, context.Canceled, "an ended context is refused before reading")

	w.send(keepalive(0x10, false))
	m, err := s.Receive(context.Background(), time.Now().Add(5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, Keepalive{ServerWALEnd: 0x10}, m)
}

// A status update sets all three positions (write at least flush), and a
// flush of 0 is refused rather than sent.
func TestStreamSendStatus(t *testing.T) {
	s, w := openFake(t)
	assert.ErrorContains(t, s.SendStatus(context.Background(), 0x10, 0, false), "refusing to report flush position 0")

	got := make(chan []byte, 1)
	go func() {
		m, err := w.be.Receive()
		if err != nil {
			got <- nil
			return
		}
		got <- append([]byte(nil), m.(*pgproto3.CopyData).Data...)
	}()
	require.NoError(t, s.SendStatus(context.Background(), 0x100, 0x200, true))
	b := <-got
	require.Len(t, b, 34)
	assert.Equal(t, byte('r'), b[0])
	write, flush, apply := binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:]), binary.BigEndian.Uint64(b[17:])
	assert.Equal(t, []uint64{0x200, 0x200, 0x200}, []uint64{write, flush, apply}, "write is raised to flush")
	assert.Equal(t, byte(1), b[33], "reply requested")
}

// START_REPLICATION refused: a slot another relay streams is ErrSlotActive
// (a standby waits), a dropped slot is fatal and names the repair.
func TestStreamStartRefused(t *testing.T) {
	tests := []struct {
		code    string
		is      error
		wantErr string
	}{
		{"55006", fault.ErrSlotActive, `replication slot "s1" is active for PID 7`},
		{"42704", fault.ErrFatal, `"s1"`},
		{"XX000", nil, `start replication on slot "s1"`},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			s, w := openFake(t)
			go func() {
				m, err := w.be.Receive()
				if err != nil {
					return
				}
				if q, ok := m.(*pgproto3.Query); !ok || !strings.HasPrefix(q.String, "START_REPLICATION SLOT s1 LOGICAL 0/1000") ||
					!strings.Contains(q.String, "publication_names 'p'") {
					t.Errorf("start: %#v", m)
				}
				w.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: tt.code, Message: `replication slot "s1" is active for PID 7`})
				w.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				_ = w.be.Flush()
			}()
			err := s.Start(context.Background(), Target{Slot: "s1", Publication: "p"}, 0x1000)
			require.Error(t, err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

package replication

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// xlog wraps a pgoutput message in an XLogData CopyData payload.
func xlog(walStart uint64, msg []byte) []byte {
	return cat([]byte{'w'}, u64(walStart), u64(walStart+100), u64(0), msg)
}

func TestDecode(t *testing.T) {
	begin := cat([]byte{'B'}, u64(0x1000), u64(0), u32(42))
	commit := cat([]byte{'C', 0}, u64(0x1000), u64(0x1030), u64(0))
	insert := cat([]byte{'I'}, u32(16384), []byte{'N'}, []byte{0, 1}, []byte{'t'}, u32(2), []byte("hi"))
	message := cat([]byte{'M', 1}, u64(0x2000), []byte("cdc-relay-heartbeat\x00"), u32(3), []byte("s 1"))
	tests := []struct {
		name  string
		data  []byte
		check func(t *testing.T, m Message)
		err   string
	}{
		{name: "keepalive", data: cat([]byte{'k'}, u64(0x5000), u64(0), []byte{1}),
			check: func(t *testing.T, m Message) {
				assert.Equal(t, Keepalive{ServerWALEnd: 0x5000, ReplyRequested: true}, m)
			}},
		{name: "begin", data: xlog(0x0ff0, begin),
			check: func(t *testing.T, m Message) {
				d := m.(Data)
				assert.Equal(t, LSN(0x0ff0), d.WALStart)
				assert.Equal(t, uint32(42), d.Message.(*pglogrepl.BeginMessage).Xid)
			}},
		{name: "commit", data: xlog(0x1000, commit),
			check: func(t *testing.T, m Message) {
				assert.Equal(t, LSN(0x1030), m.(Data).Message.(*pglogrepl.CommitMessage).TransactionEndLSN)
			}},
		{name: "insert", data: xlog(0x1010, insert),
			check: func(t *testing.T, m Message) {
				ins := m.(Data).Message.(*pglogrepl.InsertMessage)
				assert.Equal(t, uint32(16384), ins.RelationID)
				assert.Equal(t, "hi", string(ins.Tuple.Columns[0].Data))
			}},
		{name: "logical message", data: xlog(0x2000, message),
			check: func(t *testing.T, m Message) {
				lm := m.(Data).Message.(*pglogrepl.LogicalDecodingMessage)
				assert.Equal(t, HeartbeatPrefix, lm.Prefix)
				assert.Equal(t, "s 1", string(lm.Content))
			}},
		{name: "empty", data: nil, err: "empty CopyData"},
		{name: "unknown type", data: []byte{'z', 1, 2}, err: `unknown CopyData type 'z'`},
		{name: "short keepalive", data: []byte{'k', 1, 2}, err: "keepalive"},
		{name: "short XLogData", data: []byte{'w', 1}, err: "XLogData"},
		{name: "unknown pgoutput message", data: xlog(1, []byte{'?', 1}), err: "pgoutput message at 0/1"},
		{name: "truncated begin", data: xlog(1, begin[:5]), err: "pgoutput message at 0/1"},
		{name: "truncated insert", data: xlog(1, insert[:len(insert)-3]), err: "pgoutput message at 0/1"},
		{name: "insert with a huge length", data: xlog(1, cat([]byte{'I'}, u32(1), []byte{'N'}, []byte{0, 1}, []byte{'t'}, u32(1<<31-1))), err: "pgoutput message at 0/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(tt.data)
			if tt.err != "" {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrDecode))
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			tt.check(t, m)
		})
	}
}

// Decode never panics, whatever the bytes: a malformed message from the
// server (or a proxy) is an error.
func FuzzDecode(f *testing.F) {
	f.Add(cat([]byte{'k'}, u64(1), u64(0), []byte{0}))
	f.Add(xlog(1, cat([]byte{'B'}, u64(0x1000), u64(0), u32(42))))
	f.Add(xlog(1, cat([]byte{'I'}, u32(16384), []byte{'N'}, []byte{0, 1}, []byte{'t'}, u32(2), []byte("hi"))))
	f.Add(xlog(1, cat([]byte{'R'}, u32(1), []byte("public\x00outbox\x00"), []byte{'d'}, []byte{0, 1}, []byte{1}, []byte("id\x00"), u32(25), u32(0))))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Decode(data)
	})
}

// BenchmarkDecode is the first stage of the relay's hot path: one CopyData
// holding the insert of an outbox row (eight text columns, a ~300-byte
// payload, as in tests/bench) decoded into a Message.
func BenchmarkDecode(b *testing.B) {
	cols := []string{
		"0b4f7f43-64f5-4f43-9d0a-1f6f5d8b8a41", "bench", "12345", "bench.row", "bench.rows",
		`{"pad": "` + string(make([]byte, 260)) + `", "seq": 12345, "writer": 0}`,
		`{"writer": "0"}`, "2026-12-02 06:35:50.225232+00",
	}
	tuple := cat([]byte{'I'}, u32(16384), []byte{'N'}, []byte{0, byte(len(cols))})
	for _, c := range cols {
		tuple = cat(tuple, []byte{'t'}, u32(uint32(len(c))), []byte(c))
	}
	data := xlog(0x1010, tuple)
	b.ReportAllocs()
	for b.Loop() {
		m, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(Data).Message.(*pglogrepl.InsertMessage); !ok {
			b.Fatalf("decoded %T", m)
		}
	}
}

package publisher

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// fakeBroker is just enough of an AMQP 0-9-1 server for the publisher to
// connect, open confirm-mode channels, declare, and publish: it acks every
// message once its body is in, as a broker that stores everything would.
// It lets the publish path be measured and tested with no broker and no
// network (net.Pipe).
type fakeBroker struct {
	conn      net.Conn
	w         *bufio.Writer
	published atomic.Int64
	tags      map[uint16]uint64 // per channel: the last delivery tag
	pending   map[uint16]uint64 // per channel: body bytes still to come of the message in progress
	// bogusAfter, when set, makes the ack of that many messages a multiple
	// ack reaching bogusAhead tags past the last one published.
	bogusAfter, bogusAhead uint64
}

// serveFake runs a fake broker on one end of a pipe until the client closes
// it; the other end is returned for amqp.Open.
func serveFake() (net.Conn, *fakeBroker) { return serveFakeBogus(0, 0) }

// serveFakeBogus is serveFake with a bogus multiple ack (see bogusAfter).
func serveFakeBogus(after, ahead uint64) (net.Conn, *fakeBroker) {
	client, server := net.Pipe()
	b := &fakeBroker{conn: server, w: bufio.NewWriterSize(server, 64<<10), tags: map[uint16]uint64{}, pending: map[uint16]uint64{},
		bogusAfter: after, bogusAhead: ahead}
	go func() {
		defer server.Close()
		_ = b.serve()
	}()
	return client, b
}

// AMQP frame types and the end-of-frame octet.
const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE
)

func (b *fakeBroker) serve() error {
	r := bufio.NewReaderSize(b.conn, 64<<10)
	proto := make([]byte, 8)
	if _, err := io.ReadFull(r, proto); err != nil {
		return err
	}
	// connection.start: version 0-9, no server properties, PLAIN, en_US.
	if err := b.method(0, 10, 10, []byte{0, 9}, table(), longstr("PLAIN"), longstr("en_US")); err != nil {
		return err
	}
	if err := b.w.Flush(); err != nil {
		return err
	}
	head := make([]byte, 7)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		typ, ch, size := head[0], binary.BigEndian.Uint16(head[1:3]), binary.BigEndian.Uint32(head[3:7])
		payload := make([]byte, size+1)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		if payload[size] != frameEnd {
			return errors.New("fake broker: bad frame end")
		}
		payload = payload[:size]
		switch typ {
		case frameMethod:
			done, err := b.onMethod(ch, payload)
			if err != nil || done {
				return err
			}
		case frameHeader:
			if len(payload) < 12 {
				return errors.New("fake broker: short content header")
			}
			b.pending[ch] = binary.BigEndian.Uint64(payload[4:12])
			if b.pending[ch] == 0 {
				if err := b.ack(ch); err != nil {
					return err
				}
			}
		case frameBody:
			b.pending[ch] -= uint64(len(payload))
			if b.pending[ch] == 0 {
				if err := b.ack(ch); err != nil {
					return err
				}
			}
		case frameHeartbeat:
		default:
			return fmt.Errorf("fake broker: frame type %d", typ)
		}
		// Answer once nothing more waits to be read, as a broker batches
		// its writes.
		if r.Buffered() == 0 {
			if err := b.w.Flush(); err != nil {
				return err
			}
		}
	}
}

// onMethod answers a method frame; done is set once the connection closed.
func (b *fakeBroker) onMethod(ch uint16, p []byte) (done bool, err error) {
	if len(p) < 4 {
		return false, errors.New("fake broker: short method frame")
	}
	class, id := binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4])
	switch {
	case class == 10 && id == 11: // connection.start-ok → tune: no channel limit, 128 KiB frames, no heartbeat
		return false, b.method(0, 10, 30, u16(0), u32(131072), u16(0))
	case class == 10 && id == 31: // tune-ok
	case class == 10 && id == 40: // connection.open → open-ok
		return false, b.method(0, 10, 41, shortstr(""))
	case class == 10 && id == 50: // connection.close → close-ok
		if err := b.method(0, 10, 51); err != nil {
			return true, err
		}
		return true, b.w.Flush()
	case class == 20 && id == 10: // channel.open → open-ok
		return false, b.method(ch, 20, 11, longstr(""))
	case class == 20 && id == 40: // channel.close → close-ok
		return false, b.method(ch, 20, 41)
	case class == 85 && id == 10: // confirm.select → select-ok
		return false, b.method(ch, 85, 11)
	case class == 40 && id == 10: // exchange.declare → declare-ok
		return false, b.method(ch, 40, 11)
	case class == 60 && id == 40: // basic.publish: the content follows
	default:
		return false, fmt.Errorf("fake broker: method %d.%d", class, id)
	}
	return false, nil
}

func (b *fakeBroker) ack(ch uint16) error {
	n := b.published.Add(1)
	b.tags[ch]++
	if b.bogusAfter > 0 && uint64(n) == b.bogusAfter {
		return b.method(ch, 60, 80, u64(b.tags[ch]+b.bogusAhead), []byte{1})
	}
	return b.method(ch, 60, 80, u64(b.tags[ch]), []byte{0})
}

func (b *fakeBroker) method(ch, class, id uint16, args ...[]byte) error {
	n := 4
	for _, a := range args {
		n += len(a)
	}
	var head [11]byte
	head[0] = frameMethod
	binary.BigEndian.PutUint16(head[1:3], ch)
	binary.BigEndian.PutUint32(head[3:7], uint32(n))
	binary.BigEndian.PutUint16(head[7:9], class)
	binary.BigEndian.PutUint16(head[9:11], id)
	if _, err := b.w.Write(head[:]); err != nil {
		return err
	}
	for _, a := range args {
		if _, err := b.w.Write(a); err != nil {
			return err
		}
	}
	return b.w.WriteByte(frameEnd)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func shortstr(s string) []byte { return append([]byte{byte(len(s))}, s...) }
func longstr(s string) []byte  { return append(u32(uint32(len(s))), s...) }
func table() []byte            { return u32(0) }

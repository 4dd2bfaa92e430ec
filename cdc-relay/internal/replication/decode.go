package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// Message is what the replication stream carries: a Keepalive or a Data.
type Message interface{ isMessage() }

// Keepalive is a primary keepalive message.
type Keepalive struct {
	ServerWALEnd   LSN
	ReplyRequested bool
}

// Data is one decoded pgoutput message with its WAL position.
type Data struct {
	WALStart LSN
	Message  pglogrepl.Message
}

func (Keepalive) isMessage() {}
func (Data) isMessage()      {}

// ErrDecode reports a CopyData message of the stream that cannot be decoded.
var ErrDecode = errors.New("decode replication message")

// Decode decodes the payload of one CopyData message of a pgoutput stream
// (protocol version 1): a primary keepalive ('k') or WAL data ('w') holding
// one pgoutput message. It does no I/O.
func Decode(data []byte) (Message, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty CopyData", ErrDecode)
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: keepalive: %v", ErrDecode, err)
		}
		return Keepalive{ServerWALEnd: ka.ServerWALEnd, ReplyRequested: ka.ReplyRequested}, nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return nil, fmt.Errorf("%w: XLogData: %v", ErrDecode, err)
		}
		msg, err := parse(xld.WALData)
		if err != nil {
			return nil, fmt.Errorf("%w: pgoutput message at %s: %v", ErrDecode, xld.WALStart, err)
		}
		return Data{WALStart: xld.WALStart, Message: msg}, nil
	}
	return nil, fmt.Errorf("%w: unknown CopyData type %q", ErrDecode, data[0])
}

// parse is pglogrepl.Parse made safe for any bytes: it panics on some
// truncated messages (a slice out of range), and allocates whatever length a
// tuple's column claims (up to 4 GiB) before reading it. A malformed message
// is an error, never a crash nor a huge allocation.
func parse(b []byte) (msg pglogrepl.Message, err error) {
	if err := checkTuples(b); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("malformed message (%d bytes, type %q): %v", len(b), first(b), r)
		}
	}()
	return pglogrepl.Parse(b)
}

func first(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// checkTuples checks that what pglogrepl allocates by a length read from the
// message fits in the message: the tuples of an insert, update or delete
// (pgoutput's TupleData: a column count, then per column a kind byte and, for
// text and binary values, a 4-byte length and the value), and the relation
// ids of a truncate.
func checkTuples(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	pos := 5 // type byte, relation id
	var tuples int
	switch b[0] {
	case 'I': // 'N' tuple
		tuples = 1
	case 'D': // 'K'|'O' tuple
		tuples = 1
	case 'U': // ['K'|'O' tuple] 'N' tuple
		tuples = 1
		if len(b) > pos && (b[pos] == 'K' || b[pos] == 'O') {
			tuples = 2
		}
	case 'T': // relation count, options, relation ids (protocol v1: no xid)
		if len(b) < 10 {
			return fmt.Errorf("truncated %q message", b[0])
		}
		if n := int(binary.BigEndian.Uint32(b[1:])); n > (len(b)-6)/4 {
			return fmt.Errorf("%q message: %d relations in %d bytes", b[0], n, len(b))
		}
		return nil
	default:
		return nil
	}
	for range tuples {
		if len(b) < pos+3 {
			return fmt.Errorf("truncated %q message", b[0])
		}
		pos++ // the tuple's kind: N, K or O
		n := int(binary.BigEndian.Uint16(b[pos:]))
		pos += 2
		for range n {
			if pos >= len(b) {
				return fmt.Errorf("truncated %q message", b[0])
			}
			kind := b[pos]
			pos++
			if kind != pglogrepl.TupleDataTypeText && kind != pglogrepl.TupleDataTypeBinary {
				continue
			}
			if len(b) < pos+4 {
				return fmt.Errorf("truncated %q message", b[0])
			}
			l := int(binary.BigEndian.Uint32(b[pos:]))
			pos += 4
			if l > len(b)-pos {
				return fmt.Errorf("%q message: a column of %d bytes in %d", b[0], l, len(b))
			}
			pos += l
		}
	}
	return nil
}

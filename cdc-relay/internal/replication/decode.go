package replication

import (
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

// parse is pglogrepl.Parse, which panics on some truncated messages (a slice
// out of range): a malformed message is an error, never a crash.
func parse(b []byte) (msg pglogrepl.Message, err error) {
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

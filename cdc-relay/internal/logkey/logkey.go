// Package logkey names the structured log keys every relay component uses, so
// that one query over the JSON logs finds a slot, an LSN or a transaction.
package logkey

const (
	Component  = "component"
	Slot       = "slot"
	LSN        = "lsn"
	XID        = "xid"
	RoutingKey = "routing_key"
	MessageID  = "message_id"
	Err        = "err"
	Target     = "target"
	Backoff    = "backoff"
)

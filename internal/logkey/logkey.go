// Package logkey names the structured log keys the relay and the services
// share, so that one query over their JSON logs finds a slot, an LSN, a
// message or an error, whichever process wrote it.
package logkey

const (
	Component  = "component"
	Slot       = "slot"
	LSN        = "lsn"
	XID        = "xid"
	RoutingKey = "routing_key"
	MessageID  = "message_id"
	Error      = "error"
	Addr       = "addr" // an address a process listens on
	Target     = "target"
	Backoff    = "backoff"
)

// Package event is the public contract between cdc-relay and the services
// that consume what it publishes: the AMQP header names the relay sets from
// an outbox row (design §4.4) and the seed-compatible dop-msg-* headers that
// services write into the outbox row's headers column (design §6).
//
// It has no dependencies, so services can import it without pulling in any
// relay internals.
package event

// Headers the relay sets on every message, from the outbox row.
const (
	HeaderAggregateType = "aggregate_type"
	HeaderAggregateID   = "aggregate_id"

	// CloudEvents AMQP binding, binary content mode
	// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/amqp-protocol-binding.md):
	// attributes travel as application properties prefixed "cloudEvents_".
	HeaderCloudEventsSpecVersion = "cloudEvents_specversion"
	HeaderCloudEventsID          = "cloudEvents_id"
	HeaderCloudEventsSource      = "cloudEvents_source"
	HeaderCloudEventsType        = "cloudEvents_type"
	HeaderCloudEventsTime        = "cloudEvents_time"
	HeaderCloudEventsSubject     = "cloudEvents_subject"

	// CloudEventsSpecVersion is the value of HeaderCloudEventsSpecVersion.
	CloudEventsSpecVersion = "1.0"
)

// Headers of the seed's django-outbox-pattern library. Services write them into
// outbox.headers so that consumers of the seed and of this project can share
// a broker; consumers dedup on the message_id property, then on HeaderDopMsgID.
const (
	HeaderDopMsgID          = "dop-msg-id"
	HeaderDopMsgDestination = "dop-msg-destination" // "/exchange/saga/<routing key>"
	HeaderDopMsgType        = "dop-msg-type"        // DopMsgTypePublished
	HeaderDopMsgSentTime    = "dop-msg-sent-time"

	DopMsgTypePublished = "Published"
)

// ContentType is the content_type of every message: the payload column is jsonb.
const ContentType = "application/json"

// Package event is the public contract between cdc-relay and the services
// that consume what it publishes: the AMQP header names the relay sets from
// an outbox row (docs/contracts.md, "Message mapping") and the dop-msg-*
// headers of django-outbox-pattern that services write into the outbox row's
// headers column (docs/contracts.md, "Messaging contract").
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

// Headers of the django-outbox-pattern library, which the original demo used
// (docs/origin.md). Services write them into outbox.headers so that consumers
// built on that library and this project's can share a broker; consumers
// dedup on the message_id property, then on HeaderDopMsgID.
const (
	HeaderDopMsgID          = "dop-msg-id"
	HeaderDopMsgDestination = "dop-msg-destination" // "/exchange/saga/<routing key>"
	HeaderDopMsgType        = "dop-msg-type"        // DopMsgTypePublished
	HeaderDopMsgSentTime    = "dop-msg-sent-time"

	DopMsgTypePublished = "Published"
)

// ContentType is the content_type of every message: the payload column is jsonb.
const ContentType = "application/json"

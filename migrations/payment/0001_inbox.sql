-- The inbox of docs/contracts.md, "Messaging contract": one row per consumed
-- message, written in the same transaction as the business change it caused.
-- Its primary key is the message id (the AMQP message_id, else the dop-msg-id
-- header), so a redelivered or replayed message finds its row and changes
-- nothing.
CREATE TABLE IF NOT EXISTS inbox (
  message_id  text        PRIMARY KEY,
  queue       text        NOT NULL,
  event_type  text        NOT NULL DEFAULT '',
  received_at timestamptz NOT NULL DEFAULT now()
);

-- The retention job deletes by age.
CREATE INDEX IF NOT EXISTS inbox_received_at_idx ON inbox (received_at);

-- The transactional outbox of docs/contracts.md, "The outbox table". Services
-- INSERT here in the same transaction as their business change; cdc-relay
-- reads the inserts from the WAL through the publication below and never
-- queries this table.
CREATE TABLE IF NOT EXISTS outbox (
  id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregate_type text        NOT NULL,
  aggregate_id   text        NOT NULL,
  event_type     text        NOT NULL,
  routing_key    text        NOT NULL,
  payload        jsonb       NOT NULL,
  headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now()
);

-- The retention job deletes by age.
CREATE INDEX IF NOT EXISTS outbox_created_at_idx ON outbox (created_at);

-- The publication must exist before the relay's slot: pgoutput reads it with
-- the historic snapshot of each decoded transaction. Inserts only: the
-- retention job's DELETEs never reach the WAL stream the relay reads.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'cdc_relay_outbox') THEN
    CREATE PUBLICATION cdc_relay_outbox FOR TABLE outbox WITH (publish = 'insert');
  END IF;
END
$$;

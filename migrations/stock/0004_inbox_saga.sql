-- What the saga timeline (GET /api/v1/sagas/{order_id}/, docs/services.md,
-- "The saga timeline") shows of the messages this service consumed: the
-- order each belongs to (the message's aggregate_id header, NULL when the
-- relay sends no aggregate group), and how many deliveries of it the inbox
-- turned away as duplicates, and when the last one came.
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS aggregate_id text;
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS duplicates integer NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN IF NOT EXISTS last_duplicate_at timestamptz;
CREATE INDEX IF NOT EXISTS inbox_aggregate_id_idx ON inbox (aggregate_id);

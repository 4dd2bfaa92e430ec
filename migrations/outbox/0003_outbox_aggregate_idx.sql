-- The saga timeline reads one order's rows: every message of a saga has the
-- order's id as aggregate_id, whatever its aggregate_type. The relay never
-- reads by it.
CREATE INDEX IF NOT EXISTS outbox_aggregate_id_idx ON outbox (aggregate_id);

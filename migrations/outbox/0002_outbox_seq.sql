-- The insertion-order column of the outbox (docs/contracts.md, "The outbox
-- table"). Rows of one transaction share created_at; seq keeps the order they
-- were inserted in, so `cdc-relay replay` (and the relay's first start) send
-- them in that order. ctid, the fallback without it, follows insertion order
-- only while the heap is appended to: once the retention job's DELETEs and
-- VACUUM let new rows reuse space, it does not. Nothing writes seq: it is
-- GENERATED ALWAYS, and rows that existed before this migration get values in
-- their physical order.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS seq bigint GENERATED ALWAYS AS IDENTITY;

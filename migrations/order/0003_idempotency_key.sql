-- The Idempotency-Key a client may send with POST /api/v1/orders/
-- (docs/services.md, "Idempotent order creation"): a retry with the same
-- key returns the order the first request created instead of a second one.
-- NULL for orders created without a key; NULLs never conflict.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS idempotency_key varchar(255);
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency_key ON orders (idempotency_key);

-- Payments (the original demo's core_payment, docs/origin.md): one per order.
-- seq only orders the list endpoint by insertion; it is not part of the API.
CREATE TABLE IF NOT EXISTS payment (
  payment_id  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
  customer_id varchar(20) NOT NULL,
  order_id    varchar(20) NOT NULL UNIQUE,
  amount      varchar(20) NOT NULL,
  status      varchar(20) NOT NULL CHECK (status IN ('payment_confirmed', 'payment_denied')),
  created     timestamptz NOT NULL DEFAULT now()
);

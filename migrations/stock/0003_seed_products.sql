-- The initial stock of the HTTP contract: products "1" and "2" with 10 units
-- each. Applied once, like every migration, so a restart never resets stock.
INSERT INTO stock (product_id, quantity) VALUES ('1', 10), ('2', 10)
ON CONFLICT (product_id) DO NOTHING;

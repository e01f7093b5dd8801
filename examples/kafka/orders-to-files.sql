-- Kafka → SQL → files: orders read from a Kafka topic (JSON values, the record
-- timestamp as event time), filtered, counted per customer and minute, and written
-- exactly once as JSON part files; big orders also go back to Kafka (at-least-once).
--
--   tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/ &
--   tansu topic create --broker tcp://127.0.0.1:9092 --partitions 3 orders
--   tansu topic create --broker tcp://127.0.0.1:9092 --partitions 3 big-orders
--   weir run examples/kafka/orders-to-files.sql
--
-- then produce `{"order_id": 1, "customer": "ada", "amount": 120.5}` records into `orders`.

CREATE TABLE orders (
  order_id BIGINT,
  customer STRING,
  amount   DOUBLE,
  ts       TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
  part     INT METADATA FROM 'partition' VIRTUAL,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'orders',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'properties.group.id' = 'weir-orders-example',
  'scan.startup.mode' = 'earliest-offset',
  'scan.topic-partition-discovery.interval' = '30 s',
  'scan.watermark.idle-timeout' = '10 s',
  'format' = 'json'
);

CREATE TABLE per_minute (customer STRING, window_start TIMESTAMP(3), orders BIGINT, total DOUBLE) WITH (
  'connector' = 'filesystem',
  'path' = 'out/per-minute/',
  'format' = 'json'
);

CREATE TABLE big_orders (order_id BIGINT, customer STRING, amount DOUBLE) WITH (
  'connector' = 'kafka',
  'topic' = 'big-orders',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'key.format' = 'json',
  'key.fields' = 'customer',
  'format' = 'json'
);

INSERT INTO per_minute
SELECT customer, window_start, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY customer, window_start, window_end;

INSERT INTO big_orders SELECT order_id, customer, amount FROM orders WHERE amount > 100;

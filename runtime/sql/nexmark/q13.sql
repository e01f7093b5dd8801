-- Nexmark Query 13: bounded side input join (not in the original suite).
-- Bids enriched from a bounded side table: a processing-time lookup join.
-- Adaptations: the side input is declared with the current filesystem connector
-- options ('connector' = 'filesystem', 'path', 'format' = 'json') instead of the
-- benchmark's legacy 'connector.type' / 'connector.path' / 'format.type' = 'csv'
-- ones, at /tmp/nexmark/side_input.json; the column key is quoted (`key`: KEY is a
-- keyword of our parser's dialect).

CREATE TABLE side_input (
  `key` BIGINT,
  `value` VARCHAR
) WITH (
  'connector' = 'filesystem',
  'path' = '/tmp/nexmark/side_input.json',
  'format' = 'json'
);

CREATE TABLE nexmark_q13 (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  `value` VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT
    B.auction,
    B.bidder,
    B.price,
    B.dateTime,
    S.`value`
FROM (SELECT *, PROCTIME() AS p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.`key`;

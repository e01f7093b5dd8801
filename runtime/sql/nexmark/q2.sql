-- Nexmark Query 2: selection.
-- The bids on every 123rd auction, with their price (the original query picked five
-- fixed auction ids, which yields only a few hundred rows).
-- Adaptations: MOD(auction, 123) is written auction % 123 (the same for BIGINT;
-- the MOD function is not there yet).

CREATE TABLE nexmark_q2 (
  auction BIGINT,
  price BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q2
SELECT auction, price FROM bid WHERE auction % 123 = 0;

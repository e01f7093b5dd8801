-- Nexmark Query 6: average selling price by seller.
-- The average winning price of each seller's last 10 closed auctions (the winning
-- bids of Query 4, then an OVER window).
-- Flink itself does not run this query (its OVER window cannot consume the
-- retractions of the Top-1); kept for completeness.
-- Adaptations: the ROW_NUMBER is computed in a subquery of its own, so that
-- WHERE rownum <= 1 can see it (the benchmark's text filters on it in the SELECT
-- that defines it, which no SQL planner accepts).

CREATE TABLE nexmark_q6 (
  seller VARCHAR,
  avg_price BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q6
SELECT
    Q.seller,
    AVG(Q.price) OVER
        (PARTITION BY Q.seller ORDER BY Q.dateTime ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY id, seller ORDER BY price DESC) AS rownum
        FROM (SELECT A.id, A.seller, B.price, B.dateTime
            FROM auction AS A,
                bid AS B
            WHERE A.id = B.auction
                AND B.dateTime BETWEEN A.dateTime AND A.expires))
    WHERE rownum <= 1
) AS Q;

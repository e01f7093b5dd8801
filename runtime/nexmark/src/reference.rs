//! Reference results of the queries over a whole bounded input, computed directly
//! from the SQL definitions with maps and loops. These are the oracle that the
//! streaming implementations are tested against; keep them simple and obviously
//! right rather than fast.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Auction, Bid, Event, Person};
use crate::queries::*;

const TEN_S: i64 = 10_000;
const TWO_S: i64 = 2_000;

fn bids(events: &[Event]) -> impl Iterator<Item = &Bid> {
    events.iter().filter_map(|e| if let Event::Bid(b) = e { Some(b) } else { None })
}
fn auctions(events: &[Event]) -> impl Iterator<Item = &Auction> {
    events.iter().filter_map(|e| if let Event::Auction(a) = e { Some(a) } else { None })
}
fn persons(events: &[Event]) -> impl Iterator<Item = &Person> {
    events.iter().filter_map(|e| if let Event::Person(p) = e { Some(p) } else { None })
}

fn floor(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size)
}

pub fn q0(events: &[Event]) -> Vec<Q0Row> {
    bids(events).map(Q0Row::from).collect()
}

pub fn q1(events: &[Event]) -> Vec<Q1Row> {
    bids(events).map(Q1Row::from).collect()
}

/// `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`
pub fn q2(events: &[Event]) -> Vec<Q2Row> {
    bids(events).filter(|b| b.auction % 123 == 0).map(|b| Q2Row { auction: b.auction, price: b.price }).collect()
}

/// `auction A JOIN person P ON A.seller = P.id WHERE A.category = 10 AND P.state IN ('OR','ID','CA')`
pub fn q3(events: &[Event]) -> Vec<Q3Row> {
    let people: HashMap<i64, &Person> = persons(events).filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA")).map(|p| (p.id, p)).collect();
    auctions(events)
        .filter(|a| a.category == 10)
        .filter_map(|a| people.get(&a.seller).map(|p| Q3Row { name: p.name.clone(), city: p.city.clone(), state: p.state.clone(), id: a.id }))
        .collect()
}

/// Max bid per auction among bids within `[A.dateTime, A.expires]`, then the
/// average (BIGINT, truncating) of those maxima per category.
pub fn q4(events: &[Event]) -> Vec<Q4Row> {
    let auction_by_id: HashMap<i64, &Auction> = auctions(events).map(|a| (a.id, a)).collect();
    let mut max_price: HashMap<i64, i64> = HashMap::new();
    for b in bids(events) {
        if let Some(a) = auction_by_id.get(&b.auction) {
            if a.date_time <= b.date_time && b.date_time <= a.expires {
                let m = max_price.entry(a.id).or_insert(b.price);
                *m = (*m).max(b.price);
            }
        }
    }
    let mut per_category: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (id, price) in max_price {
        let e = per_category.entry(auction_by_id[&id].category).or_default();
        e.0 += price;
        e.1 += 1;
    }
    per_category.into_iter().map(|(category, (sum, count))| Q4Row { id: category, final_: sum / count }).collect()
}

/// `HOP(bid, dateTime, 2 s, 10 s)`: count per (auction, window); per window the
/// auctions whose count is the window's maximum.
pub fn q5(events: &[Event]) -> Vec<Q5Row> {
    let mut counts: HashMap<(i64, i64), i64> = HashMap::new(); // (window start, auction) -> count
    for b in bids(events) {
        let mut start = floor(b.date_time, TWO_S);
        while start > b.date_time - TEN_S {
            *counts.entry((start, b.auction)).or_default() += 1;
            start -= TWO_S;
        }
    }
    let mut max: HashMap<i64, i64> = HashMap::new();
    for (&(w, _), &n) in &counts {
        let m = max.entry(w).or_insert(n);
        *m = (*m).max(n);
    }
    counts.into_iter().filter(|((w, _), n)| *n >= max[w]).map(|((_, auction), num)| Q5Row { auction, num }).collect()
}

/// Bids whose price is the maximum of a 10 s tumbling window, with
/// `B.dateTime BETWEEN window_end - 10 s AND window_end` (inclusive).
pub fn q7(events: &[Event]) -> Vec<Q7Row> {
    let mut max: HashMap<i64, i64> = HashMap::new(); // window end -> max price
    for b in bids(events) {
        let end = floor(b.date_time, TEN_S) + TEN_S;
        let m = max.entry(end).or_insert(b.price);
        *m = (*m).max(b.price);
    }
    let mut out = Vec::new();
    for b in bids(events) {
        // the windows whose [end - 10 s, end] contains the bid: its own, and the
        // previous one when the bid is exactly on the boundary
        let own_end = floor(b.date_time, TEN_S) + TEN_S;
        let mut ends = vec![own_end];
        if b.date_time == own_end - TEN_S {
            ends.push(own_end - TEN_S);
        }
        for end in ends {
            if max.get(&end) == Some(&b.price) {
                out.push(Q7Row::from(b));
            }
        }
    }
    out
}

/// Persons and auction sellers grouped per 10 s tumbling window, joined on id.
pub fn q8(events: &[Event]) -> Vec<Q8Row> {
    let people: BTreeSet<(i64, String, i64)> = persons(events).map(|p| (p.id, p.name.clone(), floor(p.date_time, TEN_S))).collect();
    let sellers: BTreeSet<(i64, i64)> = auctions(events).map(|a| (a.seller, floor(a.date_time, TEN_S))).collect();
    people.into_iter().filter(|(id, _, w)| sellers.contains(&(*id, *w))).map(|(id, name, stime)| Q8Row { id, name, stime }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_436_918_400_000;

    fn bid(auction: i64, price: i64, t: i64) -> Event {
        Event::Bid(Bid { auction, bidder: 1, price, channel: String::new(), url: String::new(), date_time: T0 + t, extra: String::new() })
    }
    fn person(id: i64, state: &str, t: i64) -> Event {
        Event::Person(Person { id, name: format!("p{id}"), email_address: String::new(), credit_card: String::new(), city: "c".into(), state: state.into(), date_time: T0 + t, extra: String::new() })
    }
    fn auction(id: i64, seller: i64, category: i64, t: i64, expires: i64) -> Event {
        Event::Auction(Auction { id, item_name: String::new(), description: String::new(), initial_bid: 1, reserve: 1, date_time: T0 + t, expires: T0 + expires, seller, category, extra: String::new() })
    }

    #[test]
    fn q2_q3() {
        let ev = vec![bid(123, 5, 0), bid(124, 6, 0), person(1, "OR", 0), person(2, "WA", 0), auction(10, 1, 10, 0, 5), auction(11, 2, 10, 0, 5), auction(12, 1, 11, 0, 5)];
        assert_eq!(q2(&ev), vec![Q2Row { auction: 123, price: 5 }]);
        assert_eq!(q3(&ev), vec![Q3Row { name: "p1".into(), city: "c".into(), state: "OR".into(), id: 10 }]);
    }

    #[test]
    fn q4_only_bids_while_open_and_truncating_average() {
        let ev = vec![
            auction(1, 1, 10, 0, 1000),
            auction(2, 1, 10, 0, 1000),
            auction(3, 1, 11, 0, 1000),
            bid(1, 10, 500),
            bid(1, 99, 1001), // after expiry: ignored
            bid(2, 15, 1000), // at expiry: counts
            bid(3, 7, 10),
        ];
        // category 10: (10 + 15) / 2 = 12 (truncated)
        assert_eq!(q4(&ev), vec![Q4Row { id: 10, final_: 12 }, Q4Row { id: 11, final_: 7 }]);
    }

    #[test]
    fn q5_hop_windows() {
        // auction 1: bids at 1 s and 3 s; auction 2: one bid at 3 s
        let ev = vec![bid(1, 1, 1000), bid(1, 1, 3000), bid(2, 1, 3000)];
        let mut got = q5(&ev);
        got.sort();
        // windows containing 1 s: starts -8,-6,-4,-2,0 (s); containing 3 s: -6,-4,-2,0,2.
        // auction 1 wins alone in -6..0 (count 2) and ties in -8 (1 vs none) and 2 (1 vs 1).
        let mut want = vec![Q5Row { auction: 1, num: 1 }]; // window -8 s
        want.extend((0..4).map(|_| Q5Row { auction: 1, num: 2 })); // -6, -4, -2, 0
        want.push(Q5Row { auction: 1, num: 1 }); // window 2 s: tie
        want.push(Q5Row { auction: 2, num: 1 });
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn q7_between_is_inclusive() {
        // window [0,10): max 50 at 2 s; a bid of 50 exactly at 10 s also matches it
        let ev = vec![bid(1, 50, 2000), bid(2, 10, 5000), bid(3, 50, 10_000), bid(4, 60, 12_000)];
        let mut got: Vec<i64> = q7(&ev).into_iter().map(|r| r.auction).collect();
        got.sort();
        assert_eq!(got, vec![1, 3, 4]);
    }

    #[test]
    fn q8_same_window_only() {
        let ev = vec![person(1, "OR", 1000), auction(5, 1, 10, 9999, 20_000), auction(6, 1, 10, 9999, 20_000), person(2, "OR", 1000), auction(7, 2, 10, 10_000, 20_000)];
        assert_eq!(q8(&ev), vec![Q8Row { id: 1, name: "p1".into(), stime: T0 }]);
    }
}

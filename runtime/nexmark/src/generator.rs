//! The standard Nexmark generator (the model of the Beam and Flink Nexmark
//! benchmarks): event number → event, a pure function, so parallel subtasks can
//! generate disjoint numbers and the union is the same for any parallelism.
//!
//! Bit-compatible with the reference Java generator for the same configuration and
//! event number: the event type, all ids (person, auction, seller, bidder, with hot
//! sellers/bidders/auctions), category, prices, reserve, auction expiry, names,
//! e-mail, credit card, city, state, item name and description — the same
//! `java.util.Random` seeded by the event id, drawn in the same order.
//! Not bit-compatible: bid `channel`/`url` (same shape and hot-channel ratio) and the
//! `extra` padding of every event, which has the reference length distribution but is
//! cut from a precomputed pseudo-random pool instead of drawn character by character
//! (that alone would cost more than the rest of the event).

use crate::model::{Auction, Bid, Event, Person};
use crate::random::JavaRandom;

pub const FIRST_PERSON_ID: i64 = 1000;
pub const FIRST_AUCTION_ID: i64 = 1000;
pub const FIRST_CATEGORY_ID: i64 = 10;
pub const NUM_CATEGORIES: i32 = 5;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
const HOT_AUCTION_RATIO: i64 = 100;
const HOT_SELLER_RATIO: i64 = 100;
const HOT_BIDDER_RATIO: i64 = 100;
const MIN_STRING_LENGTH: i32 = 3;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/google/item.htm?query=1",
    "https://www.nexmark.com/facebook/item.htm?query=1",
    "https://www.nexmark.com/baidu/item.htm?query=1",
    "https://www.nexmark.com/apple/item.htm?query=1",
];
const CHANNELS_NUMBER: i32 = 10_000;

const FIRST_NAMES: [&str; 11] = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];

/// Parameters of the generated stream (reference defaults).
#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    /// Event time advances by `1 / event_rate_per_sec` per event.
    pub event_rate_per_sec: u64,
    /// Event time of event 0 (epoch ms); default 2015-07-15 00:00:00 UTC as in the reference.
    pub base_time_ms: i64,
    pub person_proportion: i64,
    pub auction_proportion: i64,
    pub bid_proportion: i64,
    pub hot_auction_ratio: i32,
    pub hot_sellers_ratio: i32,
    pub hot_bidders_ratio: i32,
    pub num_active_people: i64,
    pub num_in_flight_auctions: i64,
    pub avg_person_byte_size: i32,
    pub avg_auction_byte_size: i32,
    pub avg_bid_byte_size: i32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            event_rate_per_sec: 10_000,
            base_time_ms: 1_436_918_400_000,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
        }
    }
}

impl GeneratorConfig {
    fn total(&self) -> i64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// Event time of event number `n`.
    pub fn timestamp_for_event(&self, n: u64) -> i64 {
        let delay_us = 1_000_000.0 / self.event_rate_per_sec.max(1) as f64;
        self.base_time_ms + (delay_us * n as f64 / 1000.0) as i64
    }

    fn last_base0_person_id(&self, event_id: i64) -> i64 {
        let epoch = event_id / self.total();
        let mut offset = event_id % self.total();
        if offset >= self.person_proportion {
            offset = self.person_proportion - 1;
        }
        epoch * self.person_proportion + offset
    }

    fn last_base0_auction_id(&self, event_id: i64) -> i64 {
        let mut epoch = event_id / self.total();
        let mut offset = event_id % self.total();
        if offset < self.person_proportion {
            epoch -= 1;
            offset = self.auction_proportion - 1;
        } else if offset >= self.person_proportion + self.auction_proportion {
            offset = self.auction_proportion - 1;
        } else {
            offset -= self.person_proportion;
        }
        epoch * self.auction_proportion + offset
    }

    fn next_base0_person_id(&self, event_id: i64, r: &mut JavaRandom) -> i64 {
        let num_people = self.last_base0_person_id(event_id) + 1;
        let active = num_people.min(self.num_active_people);
        let n = r.next_long_bounded(active + PERSON_ID_LEAD);
        num_people - active + n
    }

    fn next_base0_auction_id(&self, event_id: i64, r: &mut JavaRandom) -> i64 {
        let max_auction = self.last_base0_auction_id(event_id);
        let min_auction = (max_auction - self.num_in_flight_auctions).max(0);
        min_auction + r.next_long_bounded(max_auction - min_auction + 1 + AUCTION_ID_LEAD)
    }

    fn next_auction_length_ms(&self, events_so_far: u64, r: &mut JavaRandom, timestamp: i64) -> i64 {
        let n_events = (self.num_in_flight_auctions * self.total() / self.auction_proportion) as u64;
        let future = self.timestamp_for_event(events_so_far + n_events);
        let horizon = future - timestamp;
        1 + r.next_long_bounded((horizon * 2).max(1))
    }
}

fn next_price(r: &mut JavaRandom) -> i64 {
    (10f64.powf(r.next_double() * 6.0) * 100.0).round() as i64
}

fn next_string(r: &mut JavaRandom, max_length: i32) -> String {
    let len = MIN_STRING_LENGTH + r.next_int_bounded(max_length - MIN_STRING_LENGTH);
    let mut s = String::with_capacity(len as usize);
    for _ in 0..len {
        if r.next_int_bounded(13) == 0 {
            s.push(' ');
        } else {
            s.push((b'a' + r.next_int_bounded(26) as u8) as char);
        }
    }
    s.trim().to_string()
}

const POOL_LEN: usize = 1 << 16;

fn pool() -> &'static str {
    static POOL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut r = JavaRandom::new(0x6e65786d61726b);
        (0..POOL_LEN).map(|_| (b'a' + r.next_int_bounded(26) as u8) as char).collect()
    })
}

fn next_extra(r: &mut JavaRandom, current_size: i32, desired_average: i32) -> String {
    if current_size > desired_average {
        return String::new();
    }
    let avg = desired_average - current_size;
    let delta = (avg as f64 * 0.2).round() as i32;
    let min = avg - delta;
    let size = (min + if delta == 0 { 0 } else { r.next_int_bounded(2 * delta) }) as usize;
    let at = r.next_int_bounded((POOL_LEN - size) as i32) as usize;
    pool()[at..at + size].to_string()
}

fn person(c: &GeneratorConfig, event_id: i64, r: &mut JavaRandom, ts: i64) -> Person {
    let id = c.last_base0_person_id(event_id) + FIRST_PERSON_ID;
    let name = format!("{} {}", FIRST_NAMES[r.next_int_bounded(FIRST_NAMES.len() as i32) as usize], LAST_NAMES[r.next_int_bounded(LAST_NAMES.len() as i32) as usize]);
    let email = format!("{}@{}.com", next_string(r, 7), next_string(r, 5));
    let cc: Vec<String> = (0..4).map(|_| format!("{:04}", r.next_int_bounded(10_000))).collect();
    let credit_card = cc.join(" ");
    let city = US_CITIES[r.next_int_bounded(US_CITIES.len() as i32) as usize].to_string();
    let state = US_STATES[r.next_int_bounded(US_STATES.len() as i32) as usize].to_string();
    let size = 8 + name.len() + email.len() + credit_card.len() + city.len() + state.len();
    let extra = next_extra(r, size as i32, c.avg_person_byte_size);
    Person { id, name, email_address: email, credit_card, city, state, date_time: ts, extra }
}

fn auction(c: &GeneratorConfig, events_so_far: u64, event_id: i64, r: &mut JavaRandom, ts: i64) -> Auction {
    let id = c.last_base0_auction_id(event_id) + FIRST_AUCTION_ID;
    let seller = if r.next_int_bounded(c.hot_sellers_ratio) > 0 {
        (c.last_base0_person_id(event_id) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
    } else {
        c.next_base0_person_id(event_id, r)
    } + FIRST_PERSON_ID;
    let category = FIRST_CATEGORY_ID + r.next_int_bounded(NUM_CATEGORIES) as i64;
    let initial_bid = next_price(r);
    let expires = ts + c.next_auction_length_ms(events_so_far, r, ts);
    let item_name = next_string(r, 20);
    let description = next_string(r, 100);
    let reserve = initial_bid + next_price(r);
    let size = 8 + item_name.len() + description.len() + 8 * 5;
    let extra = next_extra(r, size as i32, c.avg_auction_byte_size);
    Auction { id, item_name, description, initial_bid, reserve, date_time: ts, expires, seller, category, extra }
}

fn bid(c: &GeneratorConfig, event_id: i64, r: &mut JavaRandom, ts: i64) -> Bid {
    let auction = if r.next_int_bounded(c.hot_auction_ratio) > 0 {
        (c.last_base0_auction_id(event_id) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
    } else {
        c.next_base0_auction_id(event_id, r)
    } + FIRST_AUCTION_ID;
    let bidder = if r.next_int_bounded(c.hot_bidders_ratio) > 0 {
        (c.last_base0_person_id(event_id) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
    } else {
        c.next_base0_person_id(event_id, r)
    } + FIRST_PERSON_ID;
    let price = next_price(r);
    let (channel, url) = if r.next_int_bounded(10) > 0 {
        let i = r.next_int_bounded(HOT_CHANNELS.len() as i32) as usize;
        (HOT_CHANNELS[i].to_string(), HOT_URLS[i].to_string())
    } else {
        let n = r.next_int_bounded(CHANNELS_NUMBER);
        (format!("channel-{n}"), format!("https://www.nexmark.com/item.htm?query=1&channel_id={n}"))
    };
    let extra = next_extra(r, 32, c.avg_bid_byte_size);
    Bid { auction, bidder, price, channel, url, date_time: ts, extra }
}

/// Event number `n` of the stream.
pub fn event(c: &GeneratorConfig, n: u64) -> Event {
    let event_id = n as i64;
    let mut r = JavaRandom::new(event_id);
    let ts = c.timestamp_for_event(n);
    let rem = event_id % c.total();
    if rem < c.person_proportion {
        Event::Person(person(c, event_id, &mut r, ts))
    } else if rem < c.person_proportion + c.auction_proportion {
        Event::Auction(auction(c, n, event_id, &mut r, ts))
    } else {
        Event::Bid(bid(c, event_id, &mut r, ts))
    }
}

/// The events `first, first+stride, …` below `end`.
pub fn events(c: &GeneratorConfig, first: u64, stride: u64, end: u64) -> impl Iterator<Item = (u64, Event)> + '_ {
    (first..end).step_by(stride.max(1) as usize).map(move |n| (n, event(c, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_proportional() {
        let c = GeneratorConfig::default();
        assert_eq!(event(&c, 12345), event(&c, 12345));
        let (mut p, mut a, mut b) = (0, 0, 0);
        for n in 0..50_000 {
            match event(&c, n) {
                Event::Person(_) => p += 1,
                Event::Auction(_) => a += 1,
                Event::Bid(_) => b += 1,
            }
        }
        assert_eq!((p, a, b), (1000, 3000, 46000));
    }

    #[test]
    fn ids_and_times_are_in_range() {
        let c = GeneratorConfig::default();
        let mut last_ts = i64::MIN;
        let (mut max_person, mut max_auction) = (FIRST_PERSON_ID - 1, FIRST_AUCTION_ID - 1);
        for n in 0..20_000u64 {
            let e = event(&c, n);
            assert!(e.timestamp() >= last_ts, "timestamps never decrease");
            last_ts = e.timestamp();
            match e {
                Event::Person(p) => {
                    assert_eq!(p.id, max_person + 1, "persons are numbered in order");
                    max_person = p.id;
                    assert!(US_STATES.contains(&p.state.as_str()));
                }
                Event::Auction(a) => {
                    assert_eq!(a.id, max_auction + 1);
                    max_auction = a.id;
                    assert!((10..15).contains(&a.category));
                    assert!(a.expires > a.date_time && a.reserve >= a.initial_bid);
                    assert!(a.seller >= FIRST_PERSON_ID && a.seller <= max_person.max(FIRST_PERSON_ID) + PERSON_ID_LEAD);
                }
                Event::Bid(b) => {
                    assert!(b.auction >= FIRST_AUCTION_ID && b.auction <= max_auction + AUCTION_ID_LEAD + 1);
                    assert!(b.price > 0);
                    let len = b.extra.len();
                    assert!((54..=82).contains(&len), "bid extra length {len}");
                }
            }
        }
    }

    #[test]
    fn parallel_split_equals_sequence() {
        let c = GeneratorConfig::default();
        let seq: Vec<(u64, Event)> = events(&c, 0, 1, 3000).collect();
        for p in 1..=5u64 {
            let mut all: Vec<(u64, Event)> = (0..p).flat_map(|i| events(&c, i, p, 3000).collect::<Vec<_>>()).collect();
            all.sort_by_key(|e| e.0);
            assert_eq!(all, seq);
        }
    }
}

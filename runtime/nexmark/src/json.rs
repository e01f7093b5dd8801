//! Events as JSON lines in the shape of the Flink Nexmark table:
//! `{"event_type":2,"person":null,"auction":null,"bid":{"auction":1000,…,"dateTime":"2015-07-15 00:00:00.100","extra":"…"}}`.

use serde::{Deserialize, Serialize};

use crate::model::{Auction, Bid, Event, Person};
pub use crate::time::{format_timestamp, parse_timestamp};

pub(crate) mod ts {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format_timestamp(*ms))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::time::parse_timestamp(&s).map_err(serde::de::Error::custom)
    }
}
pub(crate) use ts as timestamp_serde;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonJson {
    id: i64,
    name: String,
    email_address: String,
    credit_card: String,
    city: String,
    state: String,
    #[serde(with = "ts")]
    date_time: i64,
    #[serde(default)]
    extra: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuctionJson {
    id: i64,
    item_name: String,
    description: String,
    initial_bid: i64,
    reserve: i64,
    #[serde(with = "ts")]
    date_time: i64,
    #[serde(with = "ts")]
    expires: i64,
    seller: i64,
    category: i64,
    #[serde(default)]
    extra: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BidJson {
    auction: i64,
    bidder: i64,
    price: i64,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    url: String,
    #[serde(with = "ts")]
    date_time: i64,
    #[serde(default)]
    extra: String,
}

#[derive(Serialize, Deserialize)]
struct EventJson {
    event_type: u8,
    #[serde(default)]
    person: Option<PersonJson>,
    #[serde(default)]
    auction: Option<AuctionJson>,
    #[serde(default)]
    bid: Option<BidJson>,
}

/// Why a line is not a Nexmark event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ParseError {}

/// Parses one line.
pub fn parse_event(line: &str) -> Result<Event, ParseError> {
    let e: EventJson = serde_json::from_str(line).map_err(|e| ParseError(format!("not a Nexmark event: {e}")))?;
    let missing = |what: &str| ParseError(format!("event_type {} but no \"{what}\" object", e.event_type));
    match e.event_type {
        0 => {
            let p = e.person.ok_or_else(|| missing("person"))?;
            Ok(Event::Person(Person { id: p.id, name: p.name, email_address: p.email_address, credit_card: p.credit_card, city: p.city, state: p.state, date_time: p.date_time, extra: p.extra }))
        }
        1 => {
            let a = e.auction.ok_or_else(|| missing("auction"))?;
            Ok(Event::Auction(Auction {
                id: a.id,
                item_name: a.item_name,
                description: a.description,
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller,
                category: a.category,
                extra: a.extra,
            }))
        }
        2 => {
            let b = e.bid.ok_or_else(|| missing("bid"))?;
            Ok(Event::Bid(Bid { auction: b.auction, bidder: b.bidder, price: b.price, channel: b.channel, url: b.url, date_time: b.date_time, extra: b.extra }))
        }
        t => Err(ParseError(format!("event_type {t} is not 0 (person), 1 (auction) or 2 (bid)"))),
    }
}

/// Appends `e` as one JSON line (with its newline).
pub fn write_event(e: &Event, out: &mut Vec<u8>) {
    let j = match e.clone() {
        Event::Person(p) => EventJson {
            event_type: 0,
            person: Some(PersonJson { id: p.id, name: p.name, email_address: p.email_address, credit_card: p.credit_card, city: p.city, state: p.state, date_time: p.date_time, extra: p.extra }),
            auction: None,
            bid: None,
        },
        Event::Auction(a) => EventJson {
            event_type: 1,
            person: None,
            auction: Some(AuctionJson {
                id: a.id,
                item_name: a.item_name,
                description: a.description,
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller,
                category: a.category,
                extra: a.extra,
            }),
            bid: None,
        },
        Event::Bid(b) => EventJson {
            event_type: 2,
            person: None,
            auction: None,
            bid: Some(BidJson { auction: b.auction, bidder: b.bidder, price: b.price, channel: b.channel, url: b.url, date_time: b.date_time, extra: b.extra }),
        },
    };
    // serializing plain structs into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, &j);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_events_round_trip() {
        let c = crate::generator::GeneratorConfig::default();
        for n in 0..500 {
            let e = crate::generator::event(&c, n);
            let mut line = Vec::new();
            write_event(&e, &mut line);
            assert_eq!(parse_event(std::str::from_utf8(&line).unwrap().trim_end()).unwrap(), e);
        }
    }

    #[test]
    fn flink_shape_and_errors() {
        let line = r#"{"event_type": 2, "person": null, "auction": null, "bid": {"auction": 1007, "bidder": 2001, "price": 1500, "channel": "Google", "url": "u", "dateTime": "2015-07-15 00:00:01.000", "extra": ""}}"#;
        match parse_event(line).unwrap() {
            Event::Bid(b) => assert_eq!((b.auction, b.price, b.date_time), (1007, 1500, 1436918401000)),
            other => panic!("{other:?}"),
        }
        assert!(parse_event(r#"{"event_type": 2, "person": null, "auction": null, "bid": null}"#).unwrap_err().0.contains("no \"bid\""));
        assert!(parse_event(r#"{"event_type": 7}"#).unwrap_err().0.contains("event_type 7"));
        assert!(parse_event("garbage").is_err());
    }

    proptest! {
        #[test]
        fn any_bid_round_trips(auction in any::<i64>(), price in any::<i64>(), extra in ".*", url in "\\PC*", t in -1_000_000_000_000i64..4_000_000_000_000) {
            let e = Event::Bid(Bid { auction, bidder: 1, price, channel: "c\"\\".into(), url, date_time: t, extra });
            let mut line = Vec::new();
            write_event(&e, &mut line);
            prop_assert_eq!(parse_event(std::str::from_utf8(&line).unwrap().trim_end()).unwrap(), e);
        }
    }
}

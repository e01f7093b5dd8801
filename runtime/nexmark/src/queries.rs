//! Result rows of the standard Nexmark queries; the JSON field names are the columns
//! of the queries' sink tables in the Flink Nexmark benchmark.

use serde::{Deserialize, Serialize};

use crate::json::timestamp_serde;
use crate::model::Bid;

/// q0: `auction, bidder, price, dateTime, extra`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Q0Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    #[serde(with = "timestamp_serde")]
    pub date_time: i64,
    pub extra: String,
}

impl From<&Bid> for Q0Row {
    fn from(b: &Bid) -> Self {
        Q0Row { auction: b.auction, bidder: b.bidder, price: b.price, date_time: b.date_time, extra: b.extra.clone() }
    }
}

/// A DECIMAL with 3 decimals, kept exact as thousandths; written as a JSON number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal3(pub i64);

impl Serialize for Decimal3 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Decimal3 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = f64::deserialize(d)?;
        Ok(Decimal3((f * 1000.0).round() as i64))
    }
}

/// q1: `auction, bidder, price (= 0.908 * price, DECIMAL(23,3)), dateTime, extra`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Q1Row {
    pub auction: i64,
    pub bidder: i64,
    pub price: Decimal3,
    #[serde(with = "timestamp_serde")]
    pub date_time: i64,
    pub extra: String,
}

impl From<&Bid> for Q1Row {
    fn from(b: &Bid) -> Self {
        Q1Row { auction: b.auction, bidder: b.bidder, price: Decimal3(b.price * 908), date_time: b.date_time, extra: b.extra.clone() }
    }
}

/// q2: `auction, price`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q2Row {
    pub auction: i64,
    pub price: i64,
}

/// q3: `name, city, state, id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q3Row {
    pub name: String,
    pub city: String,
    pub state: String,
    pub id: i64,
}

/// q4: `id` (the category), `final` (average winning price, BIGINT).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q4Row {
    pub id: i64,
    #[serde(rename = "final")]
    pub final_: i64,
}

/// q5: `auction, num`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q5Row {
    pub auction: i64,
    pub num: i64,
}

/// q7: `auction, price, bidder, dateTime, extra`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Q7Row {
    pub auction: i64,
    pub price: i64,
    pub bidder: i64,
    #[serde(with = "timestamp_serde")]
    pub date_time: i64,
    pub extra: String,
}

impl From<&Bid> for Q7Row {
    fn from(b: &Bid) -> Self {
        Q7Row { auction: b.auction, price: b.price, bidder: b.bidder, date_time: b.date_time, extra: b.extra.clone() }
    }
}

/// q8: `id, name, stime` (the start of the 10 s window).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Q8Row {
    pub id: i64,
    pub name: String,
    #[serde(with = "timestamp_serde")]
    pub stime: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names() {
        let b = Bid { auction: 1, bidder: 2, price: 1001, channel: String::new(), url: String::new(), date_time: 1436918401000, extra: "x".into() };
        assert_eq!(serde_json::to_string(&Q7Row::from(&b)).unwrap(), r#"{"auction":1,"price":1001,"bidder":2,"dateTime":"2015-07-15 00:00:01.000","extra":"x"}"#);
        assert_eq!(serde_json::to_string(&Q1Row::from(&b)).unwrap(), r#"{"auction":1,"bidder":2,"price":908.908,"dateTime":"2015-07-15 00:00:01.000","extra":"x"}"#);
        assert_eq!(serde_json::to_string(&Q4Row { id: 10, final_: 7 }).unwrap(), r#"{"id":10,"final":7}"#);
        let back: Q1Row = serde_json::from_str(r#"{"auction":1,"bidder":2,"price":908.908,"dateTime":"2015-07-15 00:00:01.000","extra":"x"}"#).unwrap();
        assert_eq!(back, Q1Row::from(&b));
    }
}

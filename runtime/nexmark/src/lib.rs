//! The Nexmark benchmark model (persons, auctions and bids of an online auction
//! site): the events, the standard generator, the JSON shape of the Flink Nexmark
//! table, the result rows of the standard queries, and reference (batch)
//! implementations of the queries used as the oracle in tests.

pub mod generator;
pub mod json;
pub mod model;
pub mod queries;
pub mod random;
pub mod reference;
pub mod time;

pub use model::{Auction, Bid, Event, Person};

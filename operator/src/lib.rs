//! The Weir Kubernetes operator: the `StreamJob` custom resource and the controller that
//! runs each StreamJob as a StatefulSet and keeps its state through upgrades, rescaling,
//! suspension and failures.
//!
//! - [`crd`]: the resource types and their schema (`weir-operator crd`).
//! - [`lifecycle`]: the job lifecycle as a pure, typed state machine.
//! - [`resources`]: pure builders of the owned objects.
//! - [`pods`]: what the job's pods say about why it does not run.
//! - [`events`]: Events that keep the story in order.
//! - [`controller`]: observe → decide → write status → act.

pub mod controller;
pub mod crd;
pub mod error;
pub mod events;
pub mod jobclient;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod pods;
pub mod resources;

pub use error::{Error, Result};

/// Field manager of every server-side apply (owned objects and status).
pub const FIELD_MANAGER: &str = "weir-operator";
/// The finalizer that guards deletion (final savepoint).
pub const FINALIZER: &str = "weir.dev/finalizer";

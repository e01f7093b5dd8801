//! Publishes `events.k8s.io/v1` Events on StreamJobs.
//!
//! kube-runtime's `Recorder` folds every Event with the same reason into one series and
//! keeps the *first* note, so `kubectl describe` showed "StageChanged (x3 over 31s)
//! Failed -> Stopping" for three different stage changes. Here an Event is repeated
//! (its series count raised) only when its type, reason **and note** are all the same
//! as one published in the last few minutes; anything else is a new Event, so the story
//! of a job reads in order.
//!
//! Guarantees: never fails a reconcile (errors are returned for logging only); the
//! cache is bounded (entries expire after [`SERIES_TTL`]).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

/// How long an Event can be repeated as a series instead of published anew.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(5);

/// Longest note the API server accepts (1 kB).
const MAX_NOTE: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    warning: bool,
    reason: String,
    note: String,
}

/// Publishes Events as `controller`/`instance`.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    cache: Mutex<HashMap<Key, (String, i32, Timestamp)>>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Publisher { client, controller: controller.into(), instance: instance.into(), cache: Mutex::new(HashMap::new()) }
    }

    /// Publishes one Event about `regarding` (a new one, or the next of a series when the
    /// same type, reason and note were published lately).
    pub async fn publish(&self, regarding: &ObjectReference, warning: bool, reason: &str, note: &str) -> Result<(), kube::Error> {
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &ns);
        let note = truncate(note, MAX_NOTE);
        let key = Key { uid: regarding.uid.clone().unwrap_or_default(), warning, reason: reason.into(), note: note.clone() };
        let now = Timestamp::now();
        let mut cache = self.cache.lock().await;
        cache.retain(|_, (_, _, last)| *last + SERIES_TTL > now);
        if let Some((name, count, last)) = cache.get_mut(&key) {
            *count += 1;
            *last = now;
            let patch = serde_json::json!({"series": EventSeries { count: *count, last_observed_time: MicroTime(now) }});
            return api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ());
        }
        // `<object>.<hex nanoseconds>`, as client-go names Events (a generateName ending
        // in "." is refused by a real API server).
        let base = regarding.name.clone().unwrap_or_else(|| "object".into());
        let name = format!("{base}.{:x}", now.as_nanosecond());
        let ev = KubeEvent {
            metadata: ObjectMeta { name: Some(name), namespace: Some(ns), ..ObjectMeta::default() },
            action: Some(reason.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..KubeEvent::default()
        };
        let created = api.create(&PostParams::default(), &ev).await?;
        if let Some(name) = created.metadata.name {
            cache.insert(key, (name, 1, now));
        }
        Ok(())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let t = truncate(&long, 1024);
        assert!(t.len() <= 1024 && t.ends_with("..."));
    }
}

//! Leader election with a `coordination.k8s.io/v1` Lease, so several operator replicas
//! can run and exactly one reconciles. Optimistic concurrency: every write carries the
//! Lease's resourceVersion, so two candidates can never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::error::{Error, Result};

/// One candidate for the lease `name`.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseLock { api, name: name.into(), identity: identity.into(), duration }
    }

    /// How often the holder renews (a third of the lease duration).
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// How often a candidate that does not hold the lease tries again (client-go's
    /// `RetryPeriod`, 2 s for a 15 s lease): a lease released by a leader that shut
    /// down is taken within this time.
    pub fn retry_interval(&self) -> Duration {
        (self.duration / 7).max(Duration::from_millis(200))
    }

    /// Takes or renews the lease; true when this candidate holds it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let secs = self.duration.as_secs() as i32;
        let existing = self.api.get_opt(&self.name).await?;
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let expired = match (spec.renew_time.as_ref(), spec.lease_duration_seconds) {
            (Some(t), Some(d)) => t.0.as_second() + d as i64 <= now.as_second(),
            _ => true,
        };
        if holder.is_some_and(|h| h != self.identity) && !expired {
            return Ok(false);
        }
        let mut next = lease.clone();
        let mut s = spec.clone();
        if holder != Some(self.identity.as_str()) {
            s.holder_identity = Some(self.identity.clone());
            s.acquire_time = Some(MicroTime(now));
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        s.renew_time = Some(MicroTime(now));
        s.lease_duration_seconds = Some(secs);
        next.spec = Some(s);
        self.write(self.api.replace(&self.name, &PostParams::default(), &next).await)
    }

    /// Gives the lease up (when this candidate holds it): the holder is cleared, so
    /// another replica takes over at its next try instead of after the lease expires.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(|e| Error::Leader(format!("lease {}: {e}", self.name)))? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        self.write(self.api.replace(&self.name, &PostParams::default(), &lease).await).map(|_| ())
    }

    fn write(&self, r: std::result::Result<Lease, kube::Error>) -> Result<bool> {
        match r {
            Ok(_) => Ok(true),
            // Someone else wrote first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::Leader(format!("lease {}: {e}", self.name))),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.retry_interval()).await;
        }
    }

    /// Renews the lease until it is lost; returns the reason.
    pub async fn hold(&self) -> Error {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => return Error::Leader(format!("lost lease {} to another replica", self.name)),
                Err(e) if last_ok.elapsed() >= self.duration => return e,
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    }
}

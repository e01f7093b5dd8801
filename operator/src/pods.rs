//! What a job's pods say about why the job does not run: image problems, crash loops
//! (with the container's last words), configuration errors, scheduling. Pure: a list of
//! pods in, the most telling problem out, so the lifecycle can put it into status and
//! an Event within one poll instead of waiting for `readinessTimeout`.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Waiting reasons that mean the container cannot start as specified.
const IMAGE_REASONS: &[&str] = &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "ErrImageNotMapped"];
const CONFIG_REASONS: &[&str] = &["CreateContainerConfigError", "CreateContainerError", "RunContainerError"];

/// A problem of one pod, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    /// The pod it was seen on.
    pub pod: String,
    /// Kubernetes' reason (`ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`, ...).
    pub reason: String,
    /// What happened and what to do.
    pub message: String,
    /// The pod cannot get better by waiting (bad image, failed pod, a crash loop that
    /// has restarted several times): the deployment may fail now.
    pub hopeless: bool,
}

impl std::fmt::Display for PodProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}: {}", self.pod, self.reason, self.message)
    }
}

/// A crash loop counts as hopeless after this many restarts.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

/// The most telling problem among `pods` (lowest ordinal first), if any.
pub fn problem(pods: &[Pod]) -> Option<PodProblem> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| ordinal(p.metadata.name.as_deref().unwrap_or_default()));
    let found: Vec<PodProblem> = sorted.into_iter().filter_map(pod_problem).collect();
    // A hopeless problem explains more than a transient one.
    found.iter().find(|p| p.hopeless).cloned().or_else(|| found.into_iter().next())
}

fn ordinal(name: &str) -> u32 {
    name.rsplit_once('-').and_then(|(_, o)| o.parse().ok()).unwrap_or(u32::MAX)
}

fn pod_problem(pod: &Pod) -> Option<PodProblem> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let make = |reason: &str, message: String, hopeless: bool| PodProblem { pod: name.clone(), reason: reason.into(), message, hopeless };
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.clone().unwrap_or_else(|| "Failed".into());
        let msg = status.message.clone().unwrap_or_else(|| "the pod failed".into());
        return Some(make(&reason, format!("{msg}; check spec.image and spec.podTemplate"), true));
    }
    for c in status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten()) {
        if let Some(p) = container_problem(c) {
            return Some(make(&p.0, p.1, p.2));
        }
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    if let Some(c) = unschedulable {
        let msg = c.message.clone().unwrap_or_default();
        return Some(make("Unschedulable", format!("{msg}; lower spec.resources or add capacity"), false));
    }
    None
}

/// (reason, message, hopeless) of one container.
fn container_problem(c: &ContainerStatus) -> Option<(String, String, bool)> {
    let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
    let reason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
    let wait_msg = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
    if IMAGE_REASONS.contains(&reason.as_str()) {
        let hopeless = reason == "InvalidImageName" || reason == "ErrImageNotMapped";
        return Some((reason, format!("image {} cannot be pulled ({wait_msg}); fix spec.image or the pull secret", c.image), hopeless));
    }
    if CONFIG_REASONS.contains(&reason.as_str()) {
        return Some((reason, format!("container {} cannot start: {wait_msg}; check referenced Secrets and ConfigMaps", c.name), false));
    }
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    if reason == "CrashLoopBackOff" || (c.restart_count > 0 && last.is_some_and(|t| t.exit_code != 0) && !c.ready) {
        let said = last
            .map(|t| {
                let words = t.message.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
                format!("exit code {}{words}", t.exit_code)
            })
            .unwrap_or_else(|| "no exit status".into());
        let reason = if reason.is_empty() { "ContainerRestarting".to_string() } else { reason };
        return Some((
            reason,
            format!("container {} keeps failing ({} restarts, last {said}); see its log", c.name, c.restart_count),
            c.restart_count >= CRASH_LOOP_RESTARTS,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).expect("pod")
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        json!({"phase": "Pending", "containerStatuses": [{"name": "weir", "image": "ghcr.io/weir/weir:nope", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]})
    }

    #[test]
    fn healthy_pods_have_no_problem() {
        let ok = json!({"phase": "Running", "containerStatuses": [{"name": "weir", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]});
        assert_eq!(problem(&[pod("j-0", ok.clone()), pod("j-1", ok)]), None);
    }

    #[test]
    fn image_pull_errors_name_the_image() {
        let p = problem(&[pod("j-1", waiting("ImagePullBackOff", "Back-off pulling image")), pod("j-0", waiting("ErrImagePull", "not found"))])
            .expect("problem");
        assert_eq!(p.pod, "j-0", "lowest ordinal first");
        assert_eq!(p.reason, "ErrImagePull");
        assert!(p.message.contains("ghcr.io/weir/weir:nope") && p.message.contains("spec.image"), "{}", p.message);
        assert!(!p.hopeless);
        assert!(problem(&[pod("j-0", waiting("InvalidImageName", "bad"))]).expect("problem").hopeless);
    }

    #[test]
    fn a_failed_pod_is_hopeless_and_says_why() {
        let p = problem(&[pod("j-0", json!({"phase": "Failed", "reason": "ImageNotMapped", "message": "no --image mapping matches image \"x\""}))])
            .expect("problem");
        assert_eq!(p.reason, "ImageNotMapped");
        assert!(p.hopeless && p.message.contains("no --image mapping"));
    }

    #[test]
    fn crash_loops_carry_the_last_message_and_become_hopeless() {
        let crash = |restarts: i32| {
            json!({"phase": "Running", "containerStatuses": [{"name": "weir", "image": "i", "imageID": "", "ready": false, "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                "lastState": {"terminated": {"exitCode": 2, "message": "unknown job 'no-such-job'\n"}}}]})
        };
        let p = problem(&[pod("j-0", crash(1))]).expect("problem");
        assert_eq!(p.reason, "CrashLoopBackOff");
        assert!(p.message.contains("exit code 2: unknown job 'no-such-job'"), "{}", p.message);
        assert!(!p.hopeless);
        assert!(problem(&[pod("j-0", crash(CRASH_LOOP_RESTARTS))]).expect("problem").hopeless);
    }

    #[test]
    fn missing_secrets_and_scheduling_are_reported() {
        let p = problem(&[pod("j-0", waiting("CreateContainerConfigError", "secret \"weir-s3\" not found"))]).expect("problem");
        assert!(p.message.contains("secret \"weir-s3\" not found"));
        let unsched = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu."}]});
        let p = problem(&[pod("j-0", unsched)]).expect("problem");
        assert_eq!(p.reason, "Unschedulable");
        assert!(p.message.contains("Insufficient cpu"));
    }
}

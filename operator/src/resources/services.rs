use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, peers_name, rest_name, slot_name, slot_rest_name, slot_selector};
use crate::crd::{Slot, StreamJob};

/// Headless Service `<job>-peers` (`<job>-green-peers`): stable DNS names
/// `<sts>-<i>.<sts>-peers` for the data exchange (addresses published before pods are
/// ready: peers connect while starting).
pub fn peers_service(job: &StreamJob, slot: Slot) -> Service {
    let name = job.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: meta(job, peers_name(&slot_name(&name, slot))),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(slot_selector(&name, slot)),
            ports: Some(vec![port("data", weir_api::DATA_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Service `<job>-rest`: the coordinator's REST API on pod 0 of the active `slot`. Its
/// address is published while pod 0 is not ready too: a coordinator that cannot run the
/// job (a bad job file, storage down while restoring) still answers `GET /v1/job` with
/// the reason, and the operator must be able to ask.
pub fn rest_service(job: &StreamJob, slot: Slot) -> Service {
    let name = job.metadata.name.clone().unwrap_or_default();
    pod0_service(job, rest_name(&name), slot)
}

/// Service `<job>-<slot>-rest`: pod 0 of `slot`, whether it is active or not.
pub fn slot_rest_service(job: &StreamJob, slot: Slot) -> Service {
    let name = job.metadata.name.clone().unwrap_or_default();
    pod0_service(job, slot_rest_name(&name, slot), slot)
}

fn pod0_service(job: &StreamJob, service: String, slot: Slot) -> Service {
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut sel: BTreeMap<String, String> = slot_selector(&name, slot);
    sel.insert("statefulset.kubernetes.io/pod-name".into(), format!("{}-0", slot_name(&name, slot)));
    Service {
        metadata: meta(job, service),
        spec: Some(ServiceSpec {
            selector: Some(sel),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![port("http", weir_api::HTTP_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port as i32,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

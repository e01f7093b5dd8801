//! Who this worker is and where its peers are, from the environment the operator
//! sets on every pod (DESIGN.md, "Processes and the REST API").

use weir_api::env;

use super::ClusterError;

/// The identity of one worker process of a distributed job.
#[derive(Clone, Debug)]
pub struct WorkerIdentity {
    pub job_name: String,
    pub namespace: String,
    /// This worker's ordinal: it runs subtask `i` of every operator for `i mod workers == ordinal`.
    pub ordinal: u32,
    /// Number of workers (the job's parallelism).
    pub workers: u32,
    /// Peer address template: `{job}`, `{namespace}`, `{ordinal}` and `{port}`
    /// (= `port_base` + ordinal) are replaced.
    pub peers: String,
    /// Base of `{port}` (`WEIR_PORT_BASE`, default 6121).
    pub port_base: u16,
}

impl WorkerIdentity {
    /// Reads `WEIR_JOB_NAME`, `WEIR_NAMESPACE`, `WEIR_POD_NAME` (ordinal = its `-N`
    /// suffix), `WEIR_PARALLELISM` and `WEIR_PEERS`.
    pub fn from_env() -> Result<Self, ClusterError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let pod = var(env::POD_NAME).ok_or_else(|| ClusterError::Config(format!("{} is not set (the pod name, ending in its ordinal, e.g. q5-2)", env::POD_NAME)))?;
        let ordinal = parse_ordinal(&pod)?;
        let workers = match var(env::PARALLELISM) {
            Some(p) => p.parse::<u32>().map_err(|_| ClusterError::Config(format!("{}={p} is not a number", env::PARALLELISM)))?,
            None => return Err(ClusterError::Config(format!("{} is not set (the number of workers)", env::PARALLELISM))),
        };
        let job_name = var(env::JOB_NAME).unwrap_or_else(|| pod.rsplit_once('-').map(|(j, _)| j.to_string()).unwrap_or_default());
        let id = WorkerIdentity {
            job_name,
            namespace: var(env::NAMESPACE).unwrap_or_else(|| "default".into()),
            ordinal,
            workers,
            peers: var(env::PEERS).unwrap_or_else(|| weir_api::DEFAULT_PEERS_TEMPLATE.into()),
            port_base: match var("WEIR_PORT_BASE") {
                Some(p) => p.parse().map_err(|_| ClusterError::Config(format!("WEIR_PORT_BASE={p} is not a port")))?,
                None => weir_api::DATA_PORT,
            },
        };
        id.validate()?;
        Ok(id)
    }

    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.workers == 0 {
            return Err(ClusterError::Config("the number of workers must be at least 1".into()));
        }
        if self.ordinal >= self.workers {
            return Err(ClusterError::Config(format!("worker ordinal {} is not below the number of workers {}", self.ordinal, self.workers)));
        }
        if !self.peers.contains("{ordinal}") && !self.peers.contains("{port}") && self.workers > 1 {
            return Err(ClusterError::Config(format!("peer template '{}' must contain {{ordinal}} or {{port}}", self.peers)));
        }
        Ok(())
    }

    /// The address of worker `ordinal`.
    pub fn peer_addr(&self, ordinal: u32) -> String {
        self.peers
            .replace("{job}", &self.job_name)
            .replace("{namespace}", &self.namespace)
            .replace("{ordinal}", &ordinal.to_string())
            .replace("{port}", &(self.port_base as u32 + ordinal).to_string())
    }

    /// The port this worker listens on for its peers: the port of its own address.
    pub fn listen_port(&self) -> Result<u16, ClusterError> {
        let addr = self.peer_addr(self.ordinal);
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| ClusterError::Config(format!("peer address '{addr}' has no port")))
    }
}

fn parse_ordinal(pod: &str) -> Result<u32, ClusterError> {
    pod.rsplit_once('-')
        .map(|(_, n)| n)
        .unwrap_or(pod)
        .parse()
        .map_err(|_| ClusterError::Config(format!("pod name '{pod}' does not end in an ordinal (like q5-0)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ordinal: u32, workers: u32, peers: &str) -> WorkerIdentity {
        WorkerIdentity { job_name: "q5".into(), namespace: "prod".into(), ordinal, workers, peers: peers.into(), port_base: 6121 }
    }

    #[test]
    fn expands_the_kubernetes_template() {
        let w = id(1, 3, weir_api::DEFAULT_PEERS_TEMPLATE);
        assert_eq!(w.peer_addr(2), "q5-2.q5-peers.prod.svc:6121");
        assert_eq!(w.listen_port().unwrap(), 6121);
    }

    #[test]
    fn expands_a_local_template_with_one_port_per_worker() {
        let w = id(2, 3, "127.0.0.1:{port}");
        assert_eq!(w.peer_addr(0), "127.0.0.1:6121");
        assert_eq!(w.listen_port().unwrap(), 6123);
    }

    #[test]
    fn ordinals_come_from_pod_names() {
        assert_eq!(parse_ordinal("my-job-12").unwrap(), 12);
        assert_eq!(parse_ordinal("3").unwrap(), 3);
        assert!(parse_ordinal("my-job").is_err());
    }

    #[test]
    fn refuses_inconsistent_identities() {
        assert!(id(3, 3, "h-{ordinal}:1").validate().is_err());
        assert!(id(0, 2, "fixed:1").validate().is_err());
        assert!(id(0, 1, "fixed:1").validate().is_ok());
    }
}

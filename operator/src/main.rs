//! `weir-operator`: runs the StreamJob controller, or prints the CRD.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;
use weir_operator::controller::{self, Context};
use weir_operator::jobclient::JobClient;
use weir_operator::leader::LeaseLock;
use weir_operator::metrics::{self, Metrics};

/// Kubernetes operator for Weir StreamJobs.
#[derive(Parser, Debug)]
#[command(name = "weir-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the StreamJob CustomResourceDefinition (YAML).
    Crd,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespaces to watch, comma-separated (default: all).
    #[arg(long = "namespaces", env = "WEIR_OPERATOR_NAMESPACES", value_delimiter = ',', global = true)]
    namespaces: Vec<String>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `weir_operator=debug`).
    #[arg(long, env = "WEIR_OPERATOR_LOG", default_value = "info", global = true)]
    log_level: String,
    /// Log format.
    #[arg(long, env = "WEIR_OPERATOR_LOG_FORMAT", value_enum, default_value = "json", global = true)]
    log_format: LogFormat,
    /// Address of the /metrics and /healthz server.
    #[arg(long, env = "WEIR_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080", global = true)]
    metrics_addr: SocketAddr,
    /// Run without leader election (only one replica may run then).
    #[arg(long, env = "WEIR_OPERATOR_NO_LEADER_ELECTION", global = true)]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", global = true)]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "WEIR_OPERATOR_LEASE", default_value = "weir-operator", global = true)]
    lease_name: String,
    /// This replica's identity (default: the pod name).
    #[arg(long, env = "POD_NAME", global = true)]
    identity: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", weir_operator::crd::crd_yaml());
        return std::process::ExitCode::SUCCESS;
    }
    let filter = EnvFilter::try_new(&cli.run.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.run.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(true).init(),
        // Colour codes only on a terminal: a log file or `kubectl logs` gets plain text.
        LogFormat::Text => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init()
        }
    }
    match run(cli.run).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "weir-operator stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<(), weir_operator::Error> {
    let client = client().await?;
    let metrics = Arc::new(Metrics::new()?);
    let m = metrics.clone();
    let addr = args.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(addr, m).await {
            error!(error = %e, %addr, "metrics server stopped");
        }
    });
    let identity = args.identity.clone().unwrap_or_else(|| format!("weir-operator-{}", uuid::Uuid::new_v4()));
    let ctx = Arc::new(Context::new(client.clone(), JobClient::in_cluster()?, metrics, Some(identity.clone())));
    info!(namespaces = ?args.namespaces, %identity, "starting");
    if args.no_leader_election {
        controller::run(ctx, args.namespaces).await;
        return Ok(());
    }
    let lock = LeaseLock::new(Api::<Lease>::namespaced(client, &args.lease_namespace), &args.lease_name, &identity, Duration::from_secs(15));
    lock.acquire().await?;
    info!(lease = %args.lease_name, "leader: reconciling");
    let result = tokio::select! {
        _ = controller::run(ctx, args.namespaces) => Ok(()),
        lost = lock.hold() => Err(lost),
    };
    if result.is_ok() {
        // Shut down by a signal: hand the Lease over now, not after it expires.
        match lock.release().await {
            Ok(()) => info!(lease = %args.lease_name, "leadership released"),
            Err(e) => error!(error = %e, "cannot release the lease; another replica takes over when it expires"),
        }
    }
    result
}

/// The Kubernetes client: in a pod, the pod's ServiceAccount (kube's default inference
/// would prefer a kubeconfig file found in the pod's home directory); elsewhere
/// `$KUBECONFIG` or `~/.kube/config`.
async fn client() -> Result<Client, weir_operator::Error> {
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && std::env::var_os("KUBECONFIG").is_none();
    if in_pod {
        let config = kube::Config::incluster().map_err(|e| weir_operator::Error::Leader(format!("in-cluster configuration: {e}")))?;
        return Ok(Client::try_from(config)?);
    }
    Ok(Client::try_default().await?)
}

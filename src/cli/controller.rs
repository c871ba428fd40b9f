//! `nodewright controller`: run in the cluster (see `crate::controller`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// `nodewright controller`.
#[derive(Debug, clap::Args)]
pub(super) struct ControllerArgs {
    /// Policy files or folders (mount the policy ConfigMap here); watched and hot-reloaded.
    #[arg(long, required = true)]
    pub policy: Vec<PathBuf>,
    /// Cluster name: tags every instance (`nodewright.io/cluster`) and goes into node bootstrap.
    #[arg(long, env = "NODEWRIGHT_CLUSTER")]
    pub cluster: String,
    /// API server URL written into node bootstrap.
    #[arg(long, env = "NODEWRIGHT_CLUSTER_ENDPOINT", default_value = "")]
    pub cluster_endpoint: String,
    /// Base64 PEM of the cluster CA, for node bootstrap.
    #[arg(long, env = "NODEWRIGHT_CLUSTER_CA", default_value = "")]
    pub cluster_ca: String,
    /// Service CIDR, for node bootstrap.
    #[arg(long, default_value = "10.100.0.0/16")]
    pub service_cidr: String,
    /// `embedded` or a catalog JSON file.
    #[arg(long, default_value = "embedded")]
    pub catalog: String,
    /// Region (else the standard AWS chain).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// EC2 endpoint (else AWS_ENDPOINT_URL or the public one).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Kubeconfig file (else KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// A batch of pod events closes after this many milliseconds without one...
    #[arg(long, default_value_t = 1000)]
    pub batch_idle_ms: u64,
    /// ...or this many after it opened.
    #[arg(long, default_value_t = 10_000)]
    pub batch_max_ms: u64,
    /// A pass runs at least this often (seconds).
    #[arg(long, default_value_t = 10)]
    pub resync_secs: u64,
    /// Terminate an instance whose Node has not registered after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub registration_ttl_secs: u64,
    /// Accept a policy with no pools (nothing is launched then). Without it, a
    /// change that leaves no pools (the only policy file deleted, say) is
    /// rejected and the last good version stays active.
    #[arg(long)]
    pub allow_empty_policy: bool,
    /// Take part in leader election on a Lease, so that of several replicas
    /// only the holder launches or removes anything. On by default (two
    /// replicas without it would both launch); `--leader-elect=false` for a
    /// single process that needs no Lease permissions.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "nodewright-controller")]
    pub lease_name: String,
    /// The Lease's namespace: the controller's own (POD_NAMESPACE, set from the
    /// downward API), else the kubeconfig context's namespace (in a pod: the
    /// service account's), else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease lasts without renewal (seconds): the most another
    /// replica waits after the leader dies without releasing it.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_secs: u64,
    /// The leader renews the lease this often (seconds, less than the duration).
    #[arg(long, default_value_t = 5)]
    pub lease_renew_secs: u64,
    /// This replica's name in the Lease (default: POD_NAME, else the host's
    /// name with a random suffix).
    #[arg(long)]
    pub leader_identity: Option<String>,
}

/// Runs the controller until SIGINT/SIGTERM.
#[cfg(feature = "controller")]
pub(super) fn run(a: ControllerArgs) -> miette::Result<ExitCode> {
    use miette::IntoDiagnostic;

    use crate::controller::run::{Controller, Options};
    let catalog = std::sync::Arc::new(super::inputs::load_catalog(&a.catalog)?);
    let mut opts = Options::new(
        a.policy.clone(),
        crate::cloud::userdata::ClusterInfo {
            name: a.cluster.clone(),
            endpoint: a.cluster_endpoint.clone(),
            ca_bundle: a.cluster_ca.clone(),
            service_cidr: a.service_cidr.clone(),
        },
        crate::cloud::ec2::Ec2Settings {
            region: a.region.clone(),
            endpoint_url: a.endpoint_url.clone(),
            static_credentials: None,
        },
    );
    use std::time::Duration;
    opts.batch_idle = Duration::from_millis(a.batch_idle_ms);
    opts.batch_max = Duration::from_millis(a.batch_max_ms);
    opts.resync = Duration::from_secs(a.resync_secs.max(1));
    opts.registration_ttl = Duration::from_secs(a.registration_ttl_secs);
    opts.metrics_addr = Some(a.metrics_addr);
    opts.reload.allow_empty = a.allow_empty_policy;
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async move {
        let config = match &a.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                    miette::miette!(
                        help = "pass a kubeconfig file, or run in a pod with a service account",
                        "reading kubeconfig {}: {e}",
                        path.display()
                    )
                })?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| miette::miette!("kubeconfig {}: {e}", path.display()))?
            }
            None => kube::Config::infer().await.map_err(|e| {
                miette::miette!(
                    help = "set KUBECONFIG or --kubeconfig, or run in a pod with a service account",
                    "no Kubernetes configuration: {e}"
                )
            })?,
        };
        if a.leader_elect {
            let namespace = a
                .lease_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| config.default_namespace.clone());
            let identity = a
                .leader_identity
                .clone()
                .unwrap_or_else(crate::controller::leader::local_identity);
            let mut l = crate::controller::leader::LeaderOptions::new(
                a.lease_name.clone(),
                namespace,
                identity,
            );
            l.lease_duration = Duration::from_secs(a.lease_duration_secs);
            l.renew_every = Duration::from_secs(a.lease_renew_secs);
            opts.leader = Some(l);
        }
        let client = kube::Client::try_from(config)
            .map_err(|e| miette::miette!("Kubernetes client: {e}"))?;
        let controller = Controller::new(opts, catalog).await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        controller.run(client, rx).await?;
        Ok::<_, miette::Report>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "controller")]
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Without the `controller` feature there is nothing to run.
#[cfg(not(feature = "controller"))]
pub(super) fn run(_: ControllerArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!(
        help = "rebuild with `--features controller` (on by default)",
        "this nodewright was built without the controller"
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};

    fn parse(extra: &[&str]) -> super::ControllerArgs {
        let mut args = vec![
            "nodewright",
            "controller",
            "--policy",
            "p",
            "--cluster",
            "c",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
        {
            Command::Controller(a) => *a,
            _ => panic!("not the controller subcommand"),
        }
    }

    #[test]
    fn leader_election_is_on_by_default_and_can_be_turned_off() {
        let a = parse(&[]);
        assert!(a.leader_elect);
        assert_eq!(a.lease_name, "nodewright-controller");
        assert_eq!((a.lease_duration_secs, a.lease_renew_secs), (15, 5));
        assert!(!parse(&["--leader-elect=false"]).leader_elect);
        let a = parse(&["--lease-namespace", "ops", "--leader-identity", "me"]);
        assert_eq!(a.lease_namespace.as_deref(), Some("ops"));
        assert_eq!(a.leader_identity.as_deref(), Some("me"));
    }
}

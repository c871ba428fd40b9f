//! `nodewright controller`: run in the cluster (see `crate::controller`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// `nodewright controller`.
#[derive(Debug, clap::Args)]
pub(super) struct ControllerArgs {
    /// Policy files or folders (mount the policy ConfigMap here; repeat the flag for more);
    /// watched and hot-reloaded.
    #[arg(long, required = true)]
    pub policy: Vec<PathBuf>,
    /// Cluster name: tags every instance (`nodewright.io/cluster`) and goes into node bootstrap.
    #[arg(long, env = "NODEWRIGHT_CLUSTER")]
    pub cluster: String,
    /// API server URL written into node bootstrap. Default: the Kubernetes client's server,
    /// unless that is the in-cluster Service address (which a new node cannot reach).
    #[arg(long, env = "NODEWRIGHT_CLUSTER_ENDPOINT", default_value = "")]
    pub cluster_endpoint: String,
    /// Base64 PEM of the cluster CA, for node bootstrap. Default: the CA the Kubernetes
    /// client trusts (in a pod: the service account's `ca.crt`, the cluster's CA).
    #[arg(long, env = "NODEWRIGHT_CLUSTER_CA", default_value = "")]
    pub cluster_ca: String,
    /// Service CIDR, for node bootstrap.
    #[arg(long, default_value = "10.100.0.0/16")]
    pub service_cidr: String,
    /// `live` discovers the region's types, offerings and spot prices from
    /// EC2 before the first pass and again every --catalog-refresh-secs;
    /// `embedded` (us-east-1) or a catalog JSON file are for air-gapped tests.
    #[arg(long, default_value = "live")]
    pub catalog: String,
    /// Seconds between live catalog refreshes (a failed one is retried
    /// after at most 5 minutes; the last good catalog stays meanwhile).
    #[arg(long, default_value_t = 3600)]
    pub catalog_refresh_secs: u64,
    /// Region (else the standard AWS chain: the profile, IMDS).
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
    /// Consolidation (re-planning the cluster's pods to remove or replace
    /// underutilized nodes) decides at most this often (seconds).
    #[arg(long, default_value_t = 10)]
    pub consolidation_interval_secs: u64,
    /// Terminate an instance whose Node has not registered after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub registration_ttl_secs: u64,
    /// Terminate an instance tagged for this cluster that no claim owns once
    /// it was launched this many seconds ago (Karpenter waits 30 s).
    #[arg(long, default_value_t = 30)]
    pub orphan_grace_secs: u64,
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
    /// The SQS queue (name or URL) that EventBridge feeds with spot
    /// interruption warnings, rebalance recommendations, scheduled changes
    /// and instance state changes (the queue Karpenter's CloudFormation
    /// creates works as is). Interrupted nodes are replaced at once and their
    /// spot offering avoided for a while. Unset: no interruption handling.
    #[arg(long, env = "NODEWRIGHT_INTERRUPTION_QUEUE")]
    pub interruption_queue: Option<String>,
    /// This replica's name in the Lease (default: POD_NAME, else the host's
    /// name with a random suffix).
    #[arg(long)]
    pub leader_identity: Option<String>,
}

/// Runs the controller until SIGINT/SIGTERM.
#[cfg(feature = "controller")]
pub(super) fn run(a: ControllerArgs) -> miette::Result<ExitCode> {
    use miette::IntoDiagnostic;

    use crate::cloud::refresh::{CatalogSource, CatalogSpec, start_live};
    use crate::controller::run::{Controller, Options};
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
    opts.consolidation_interval = Duration::from_secs(a.consolidation_interval_secs);
    opts.gc.orphan_grace = Duration::from_secs(a.orphan_grace_secs);
    opts.metrics_addr = Some(a.metrics_addr);
    opts.reload.allow_empty = a.allow_empty_policy;
    opts.interruption_queue = a.interruption_queue.clone().filter(|q| !q.is_empty());
    opts.catalog_refresh = Duration::from_secs(a.catalog_refresh_secs.max(1));
    let rt = tokio::runtime::Runtime::new().into_diagnostic()?;
    rt.block_on(async move {
        // The first catalog loads before anything else: without it there is
        // nothing to plan from (`cloud::refresh` says why there is no fallback).
        let catalog: CatalogSource = match CatalogSpec::parse(&a.catalog) {
            CatalogSpec::Live => {
                let (live, d) = start_live(&opts.ec2).await?;
                tracing::info!(
                    "catalog discovered in {}: {} types, {} offerings{}",
                    d.catalog.region,
                    d.catalog.types.len(),
                    d.catalog.offerings.len(),
                    if d.spot_prices_estimated {
                        " (spot prices estimated)"
                    } else {
                        ""
                    }
                );
                live.into()
            }
            _ => std::sync::Arc::new(super::inputs::load_catalog(&a.catalog)?).into(),
        };
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
        let client_access = ClientAccess::of(&config);
        let (endpoint, ca) = bootstrap_access(
            &opts.cluster.name,
            &opts.cluster.endpoint,
            &opts.cluster.ca_bundle,
            &client_access,
        )?;
        opts.cluster.endpoint = endpoint;
        opts.cluster.ca_bundle = ca;
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

/// What node bootstrap could take from the controller's own Kubernetes client
/// configuration when `--cluster-endpoint` / `--cluster-ca` are not given.
#[cfg(feature = "controller")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ClientAccess {
    /// The server the client talks to.
    pub url: String,
    /// The server is the in-cluster `kubernetes` Service (KUBERNETES_SERVICE_HOST): a
    /// Service address, reachable only from a node that has already joined.
    pub in_cluster_service: bool,
    /// Base64 of the PEM certificates the client trusts, if it pins any.
    pub ca_pem_base64: Option<String>,
}

#[cfg(feature = "controller")]
impl ClientAccess {
    fn of(config: &kube::Config) -> ClientAccess {
        use base64::Engine;
        let url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let host = config.cluster_url.host().unwrap_or_default();
        let in_cluster_service = std::env::var("KUBERNETES_SERVICE_HOST").is_ok_and(|h| {
            !h.is_empty() && h.trim_matches(['[', ']']) == host.trim_matches(['[', ']'])
        });
        let ca_pem_base64 = config
            .root_cert
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|certs| {
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut pem = String::new();
                for der in certs {
                    pem.push_str("-----BEGIN CERTIFICATE-----\n");
                    let body = b64.encode(der);
                    for line in body.as_bytes().chunks(64) {
                        pem.push_str(&String::from_utf8_lossy(line));
                        pem.push('\n');
                    }
                    pem.push_str("-----END CERTIFICATE-----\n");
                }
                b64.encode(pem)
            });
        ClientAccess {
            url,
            in_cluster_service,
            ca_pem_base64,
        }
    }
}

/// A cluster setting node bootstrap needs that neither a flag nor the client gives.
#[cfg(feature = "controller")]
#[derive(Debug, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub(super) enum BootstrapAccessError {
    /// Instances are tagged and found by the cluster name: empty would match nothing.
    #[error("the cluster name is empty")]
    #[diagnostic(help(
        "pass --cluster NAME (or NODEWRIGHT_CLUSTER; the chart's clusterName): the EKS cluster's name"
    ))]
    NoClusterName,
    /// The in-cluster address is a Service IP that kube-proxy on a joined node routes.
    #[error(
        "no API server endpoint for node bootstrap: the controller reaches the API server at {url}, the in-cluster Service address, which a new node cannot use before it has joined"
    )]
    #[diagnostic(help(
        "pass --cluster-endpoint URL (or NODEWRIGHT_CLUSTER_ENDPOINT; the chart's clusterEndpoint), on EKS: aws eks describe-cluster --name NAME --query cluster.endpoint"
    ))]
    InClusterEndpoint {
        /// The Service address.
        url: String,
    },
    /// Neither a flag nor the client configuration names a server.
    #[error("no API server endpoint for node bootstrap")]
    #[diagnostic(help(
        "pass --cluster-endpoint URL (or NODEWRIGHT_CLUSTER_ENDPOINT; the chart's clusterEndpoint)"
    ))]
    NoEndpoint,
    /// The client trusts no pinned CA (system roots, or TLS verification off).
    #[error(
        "no cluster CA for node bootstrap: the Kubernetes client configuration pins no certificate authority"
    )]
    #[diagnostic(help(
        "pass --cluster-ca BASE64_PEM (or NODEWRIGHT_CLUSTER_CA; the chart's clusterCA), on EKS: aws eks describe-cluster --name NAME --query cluster.certificateAuthority.data"
    ))]
    NoCa,
}

/// The API server endpoint and CA written into node bootstrap: the flags when
/// given, else what the controller's own client uses, else an error naming the
/// flag (an empty value would only fail later, on every new node).
#[cfg(feature = "controller")]
pub(super) fn bootstrap_access(
    cluster: &str,
    endpoint_flag: &str,
    ca_flag: &str,
    client: &ClientAccess,
) -> Result<(String, String), BootstrapAccessError> {
    if cluster.trim().is_empty() {
        return Err(BootstrapAccessError::NoClusterName);
    }
    let endpoint = match endpoint_flag.trim() {
        "" if client.in_cluster_service => {
            return Err(BootstrapAccessError::InClusterEndpoint {
                url: client.url.clone(),
            });
        }
        "" if client.url.is_empty() => return Err(BootstrapAccessError::NoEndpoint),
        "" => client.url.clone(),
        flag => flag.to_string(),
    };
    let ca = match ca_flag.trim() {
        "" => client
            .ca_pem_base64
            .clone()
            .ok_or(BootstrapAccessError::NoCa)?,
        flag => flag.to_string(),
    };
    Ok((endpoint, ca))
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

#[cfg(all(test, feature = "controller"))]
mod tests {
    use super::*;

    fn client(url: &str, in_cluster: bool, ca: Option<&str>) -> ClientAccess {
        ClientAccess {
            url: url.into(),
            in_cluster_service: in_cluster,
            ca_pem_base64: ca.map(String::from),
        }
    }

    #[test]
    fn flags_win_over_the_client() {
        let c = client("https://10.100.0.1:443", true, Some("Q0xJRU5U"));
        assert_eq!(
            bootstrap_access("demo", "https://api.demo", "RkxBRw==", &c),
            Ok(("https://api.demo".into(), "RkxBRw==".into()))
        );
    }

    #[test]
    fn the_ca_comes_from_the_in_cluster_config() {
        let c = client("https://10.100.0.1:443", true, Some("Q0xJRU5U"));
        assert_eq!(
            bootstrap_access("demo", "https://api.demo", "", &c),
            Ok(("https://api.demo".into(), "Q0xJRU5U".into()))
        );
    }

    #[test]
    fn a_reachable_client_server_is_the_endpoint() {
        let c = client(
            "https://ABC.gr7.us-east-1.eks.amazonaws.com",
            false,
            Some("Q0E="),
        );
        assert_eq!(
            bootstrap_access("demo", "", "", &c),
            Ok((
                "https://ABC.gr7.us-east-1.eks.amazonaws.com".into(),
                "Q0E=".into()
            ))
        );
    }

    #[test]
    fn the_in_cluster_service_address_is_not_an_endpoint() {
        let c = client("https://10.100.0.1:443", true, Some("Q0E="));
        let e = bootstrap_access("demo", "", "", &c).unwrap_err();
        assert_eq!(
            e,
            BootstrapAccessError::InClusterEndpoint {
                url: "https://10.100.0.1:443".into()
            }
        );
        let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
        assert!(help.is_some_and(|h| h.contains("--cluster-endpoint")));
    }

    #[test]
    fn missing_values_are_errors_not_empty_strings() {
        let none = client("", false, None);
        assert_eq!(
            bootstrap_access("demo", "", "Q0E=", &none),
            Err(BootstrapAccessError::NoEndpoint)
        );
        assert_eq!(
            bootstrap_access("demo", "https://api.demo", "", &none),
            Err(BootstrapAccessError::NoCa)
        );
        assert_eq!(
            bootstrap_access(" ", "https://api.demo", "Q0E=", &none),
            Err(BootstrapAccessError::NoClusterName)
        );
    }
}

#[cfg(test)]
mod leader_flags {
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

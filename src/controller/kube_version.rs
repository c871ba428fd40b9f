//! The cluster's Kubernetes version, which AMI aliases resolve for
//! (`cloud::ssm`): read from the API server's `/version` at start and again
//! on a timer, so that after a control plane upgrade new nodes follow it
//! (an alias never picks an image for a newer minor than the control plane's).

use std::time::Duration;

use crate::cloud::ssm::{KubeVersion, KubeVersionCell};

/// How often `/version` is read again: a control plane upgrade is rare and
/// slow, and the resolver caches a node class for 5 minutes anyway.
pub(super) const REREAD: Duration = Duration::from_secs(600);

/// Reads `/version`.
pub(super) async fn read(client: &kube::Client) -> Result<KubeVersion, String> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| format!("reading the API server's /version: {e}"))?;
    KubeVersion::from_version_info(&info.major, &info.minor, &info.git_version).ok_or_else(|| {
        format!(
            "the API server's /version (major {:?}, minor {:?}, gitVersion {:?}) names no Kubernetes version",
            info.major, info.minor, info.git_version
        )
    })
}

/// Reads `/version` into `cell` now (before the first pass) and then every
/// `every` on a task; a failed read keeps the last version (logged).
pub(super) async fn start(
    client: &kube::Client,
    cell: KubeVersionCell,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    update(client, &cell).await;
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            update(&client, &cell).await;
        }
    })
}

async fn update(client: &kube::Client, cell: &KubeVersionCell) {
    match read(client).await {
        Ok(v) => {
            if cell.set(v) != Some(v) {
                tracing::info!("the cluster runs Kubernetes {v}; AMI aliases resolve for it");
            }
        }
        Err(e) => tracing::warn!("{e}; AMI aliases keep the last version read"),
    }
}

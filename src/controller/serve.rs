//! `/metrics`, `/healthz` and `/readyz` over HTTP/1 (hyper).
//!
//! Two fixed paths need no router; hyper is already in the tree through
//! kube-rs and the AWS SDK.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;

/// What the server answers from.
pub(super) struct Endpoints {
    pub registry: Arc<std::sync::Mutex<Registry>>,
    /// Set once the controller has completed a pass (readiness).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Set while this replica is the leader (or runs without election).
    pub leading: Arc<std::sync::atomic::AtomicBool>,
}

/// `query` is the request's query string: `/readyz?standby` is the
/// Deployment's readiness probe, which a healthy follower passes too.
fn respond(e: &Endpoints, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => {
            let mut text = String::new();
            let ok = e
                .registry
                .lock()
                .map(|r| prometheus_client::encoding::text::encode(&mut text, &r).is_ok())
                .unwrap_or(false);
            if ok {
                (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics could not be encoded\n".to_string(),
                )
            }
        }
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let standby = query.is_some_and(|q| q.split('&').any(|kv| kv == "standby"));
            let (ok, body) = super::leader::readiness(
                e.leading.load(std::sync::atomic::Ordering::Relaxed),
                e.ready.load(std::sync::atomic::Ordering::Relaxed),
                standby,
            );
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, "text/plain", body.to_string())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Binds `addr` and serves until the task is dropped. Returns the bound address.
pub(super) async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let endpoints = Arc::new(endpoints);
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let e = Arc::clone(&endpoints);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = respond(&e, req.uri().path(), req.uri().query());
                    async move { Ok::<_, Infallible>(r) }
                });
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!("metrics connection: {err}");
                }
            });
        }
    });
    Ok((bound, handle))
}

//! HTTP server: `/metrics` from pre-encoded snapshots, `/healthz`, `/readyz`
//! and a landing page. Scrapes only copy bytes out of memory.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::exposition::MetricSet;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One collection, encoded in both formats.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub text: Bytes,
    pub openmetrics: Bytes,
}

impl Rendered {
    pub fn from_set(set: &MetricSet) -> Self {
        Rendered {
            text: Bytes::from(set.encode_text()),
            openmetrics: Bytes::from(set.encode_openmetrics()),
        }
    }
}

/// Latest metrics of one producer (the cluster poller, the node agent).
/// Producers publish; the HTTP handlers read. A clone shares the slot.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    slot: Arc<RwLock<Option<Arc<Rendered>>>>,
}

impl Publisher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publish(&self, set: &MetricSet) {
        let rendered = Arc::new(Rendered::from_set(set));
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(rendered);
    }

    pub fn latest(&self) -> Option<Arc<Rendered>> {
        self.slot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Clone)]
struct AppState {
    publishers: Arc<Vec<Publisher>>,
    telemetry_path: String,
    title: &'static str,
}

/// Serves the given publishers' latest snapshots (concatenated) until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    telemetry_path: &str,
    title: &'static str,
    publishers: Vec<Publisher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(telemetry_path, title, publishers);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

pub fn router(telemetry_path: &str, title: &'static str, publishers: Vec<Publisher>) -> Router {
    let state = AppState {
        publishers: Arc::new(publishers),
        telemetry_path: telemetry_path.to_string(),
        title,
    };
    Router::new()
        .route(telemetry_path, get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(landing))
        .with_state(state)
}

pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid --web.listen-address {addr:?}: {e}"))?;
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snapshots: Vec<Arc<Rendered>> =
        state.publishers.iter().filter_map(|p| p.latest()).collect();
    if snapshots.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no data collected yet; retry after the first collection\n",
        )
            .into_response();
    }
    let om = wants_openmetrics(&headers);
    let body = if snapshots.len() == 1 {
        let s = &snapshots[0];
        if om {
            s.openmetrics.clone()
        } else {
            s.text.clone()
        }
    } else {
        let mut buf = Vec::new();
        for s in &snapshots {
            if om {
                // Only the final `# EOF` may remain.
                let b = &s.openmetrics[..];
                buf.extend_from_slice(b.strip_suffix(b"# EOF\n").unwrap_or(b));
            } else {
                buf.extend_from_slice(&s.text);
            }
        }
        if om {
            buf.extend_from_slice(b"# EOF\n");
        }
        Bytes::from(buf)
    };
    let ct = if om {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.publishers.iter().all(|p| p.latest().is_some()) {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "first collection pending\n",
        )
            .into_response()
    }
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{t}</title></head><body>\
         <h1>{t}</h1><p>slurm-gpu-exporter {v}</p><ul>\
         <li><a href=\"{p}\">{p}</a></li><li><a href=\"/healthz\">/healthz</a></li>\
         <li><a href=\"/readyz\">/readyz</a></li></ul></body></html>\n",
        t = state.title,
        v = env!("CARGO_PKG_VERSION"),
        p = state.telemetry_path
    ))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}

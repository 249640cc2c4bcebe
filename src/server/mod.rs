//! HTTP server: `/metrics` from pre-encoded snapshots, `/healthz`, `/readyz`
//! and a landing page. Scrapes only copy bytes out of memory.
//!
//! With `--web.config.file` ([`WebConfig`]) it adds TLS, client
//! certificates, basic auth, response headers and a rate limit. There is
//! one way to start it: [`WebServer::bind`] with the `WebArgs`, then
//! [`WebServer::serve`] (programs and tests alike); [`router`] builds the
//! bare app for in-process requests (benches).
//!
//! Layout: this module binds and serves; [`web_args`] (the `--web.*`
//! flags), `routes` (handlers), `guard` (rate limit, basic auth, headers),
//! [`web_config`], [`tls`], [`auth`], [`listen`], [`files`]. The snapshots
//! served are [`crate::exposition::snapshot`]'s.

pub mod auth;
pub mod files;
mod guard;
pub mod listen;
mod routes;
pub mod tls;
pub mod web_args;
pub mod web_config;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use tokio::net::TcpListener;

pub use crate::exposition::snapshot::{
    is_ready, Publisher, Rendered, SourceHealth, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};
use guard::{guard_layer, Bucket, Guard};
use routes::router_about;
pub use routes::{html_escape, router};
pub use web_args::WebArgs;
pub use web_config::{RateLimit, WebConfig};

/// Paths answered without basic auth: they only say "ok"/"ready", and
/// probes (kubelet, load balancers) rarely carry credentials. TLS and client
/// certificates still apply to them.
pub const AUTH_EXEMPT_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// What a program adds to its landing page: an HTML fragment, built on
/// each view.
pub type About = Arc<dyn Fn() -> String + Send + Sync>;

/// A bound listener with its validated web config: the one way the
/// programs (cluster, node, demo) start their metrics server.
pub struct WebServer {
    listener: TcpListener,
    telemetry_path: String,
    web_config: Option<Arc<WebConfig>>,
    about: Option<About>,
}

impl WebServer {
    /// Loads and validates `--web.config.file` (if any), then listens on
    /// `--web.listen-address` or `default_listen`.
    pub async fn bind(web: &WebArgs, default_listen: &str) -> anyhow::Result<WebServer> {
        let web_config = match &web.config_file {
            Some(path) => {
                let cfg = WebConfig::load(path)?;
                tracing::info!(
                    file = %path.display(),
                    tls = cfg.tls_enabled(),
                    basic_auth = cfg.basic_auth_enabled(),
                    "web config loaded"
                );
                Some(Arc::new(cfg))
            }
            None => None,
        };
        let listener = bind(&web.listen_address_or(default_listen)).await?;
        Ok(WebServer {
            listener,
            telemetry_path: web.telemetry_path.clone(),
            web_config,
            about: None,
        })
    }

    /// Adds `about` to the landing page.
    pub fn with_about(mut self, about: About) -> Self {
        self.about = Some(about);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match &self.web_config {
            Some(c) if c.tls_enabled() => "https",
            _ => "http",
        }
    }

    /// The metrics URL, for logs.
    pub fn metrics_url(&self) -> String {
        match self.local_addr() {
            Ok(a) => format!("{}://{a}{}", self.scheme(), self.telemetry_path),
            Err(_) => self.telemetry_path.clone(),
        }
    }

    pub fn web_config(&self) -> Option<&WebConfig> {
        self.web_config.as_deref()
    }

    /// Serves the publishers' latest snapshots (concatenated) until
    /// `shutdown` resolves. With TLS, handshakes run in their own tasks, at
    /// most [`tls::HANDSHAKE_TIMEOUT`] each.
    pub async fn serve(
        self,
        title: &'static str,
        publishers: Vec<Publisher>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = guarded_router(
            &self.telemetry_path,
            title,
            self.web_config.as_deref(),
            self.about,
            publishers,
        );
        match self.web_config.as_ref().and_then(|c| c.tls.clone()) {
            Some(tls) => {
                let listener = tls::TlsListener::new(self.listener, tls, tls::HANDSHAKE_TIMEOUT)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
}

/// [`router`] plus the web config's auth, headers and rate limit.
fn guarded_router(
    telemetry_path: &str,
    title: &'static str,
    web_config: Option<&WebConfig>,
    about: Option<About>,
    publishers: Vec<Publisher>,
) -> Router {
    let app = router_about(telemetry_path, title, publishers, about);
    let Some(cfg) = web_config else {
        return app;
    };
    if cfg.basic_auth.is_none() && cfg.headers.is_empty() && cfg.rate_limit.is_none() {
        return app;
    }
    let guard = Arc::new(Guard {
        auth: cfg.basic_auth.clone(),
        exempt: AUTH_EXEMPT_PATHS
            .iter()
            .filter(|p| **p != telemetry_path)
            .map(|p| p.to_string())
            .collect(),
        headers: cfg.headers.clone(),
        limiter: cfg.rate_limit.map(|r| {
            Mutex::new(Bucket {
                rate: r,
                tokens: f64::from(r.burst),
                last: Instant::now(),
            })
        }),
    });
    app.layer(axum::middleware::from_fn_with_state(guard, guard_layer))
}

/// Listens on a `--web.listen-address` in any form node_exporter accepts (see [`listen`]).
async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addr =
        listen::parse(addr).map_err(|e| anyhow::anyhow!("invalid --web.listen-address: {e}"))?;
    Ok(listen::bind(&addr).await?)
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

#[cfg(test)]
mod ready_tests {
    use std::time::Duration;

    use super::*;
    use crate::cluster::poller::{PollOptions, Poller};
    use crate::exposition::MetricSet;
    use crate::slurmrestd::client::{Client, ClientOptions, TokenSource};

    fn rendered(set: &MetricSet) -> Option<Arc<Rendered>> {
        Some(Arc::new(Rendered::from_set(set)))
    }

    #[tokio::test]
    async fn not_ready_while_every_poll_failed() {
        // Nothing listens on a just-closed port: every poll fails.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(ClientOptions {
            url: format!("http://127.0.0.1:{port}"),
            token: TokenSource::None,
            user_name: None,
            timeout: Duration::from_secs(2),
            max_body_bytes: 1 << 20,
            ca_file: None,
        })
        .unwrap();
        let mut poller = Poller::new(Arc::new(client), PollOptions::default());
        let failed = poller.poll().await;
        let r = rendered(&failed);
        assert!(!r.as_ref().unwrap().health.is_empty());
        assert!(
            !is_ready(&[r]),
            "a scraper whose every poll failed is not ready"
        );
        assert!(!is_ready(&[None]));
    }

    #[test]
    fn ready_with_data_up_or_kept() {
        use crate::cluster::collectors::exporter::{
            ENDPOINT_HEALTH, EXPORTER_ENDPOINT_STALE, EXPORTER_ENDPOINT_UP,
        };
        use crate::node::collectors::{COLLECTOR_HEALTH, COLLECTOR_UP};
        let l = |e: &str| vec![("endpoint", e.to_string())];
        let mut up = MetricSet::new();
        up.mark_health(&ENDPOINT_HEALTH);
        up.add(&EXPORTER_ENDPOINT_UP, l("jobs"), 1.0);
        up.add(&EXPORTER_ENDPOINT_UP, l("diag"), 0.0);
        assert!(is_ready(&[rendered(&up)]));
        let mut stale = MetricSet::new();
        stale.mark_health(&ENDPOINT_HEALTH);
        stale.add(&EXPORTER_ENDPOINT_UP, l("jobs"), 0.0);
        stale.add(&EXPORTER_ENDPOINT_STALE, l("jobs"), 1.0);
        let r = rendered(&stale);
        assert!(r.as_ref().unwrap().health[0].stale);
        assert!(is_ready(&[r]), "last good data still served");
        let mut node = MetricSet::new();
        node.mark_health(&COLLECTOR_HEALTH);
        node.add(
            &COLLECTOR_UP,
            vec![("node", "n".into()), ("collector", "gpu".into())],
            0.0,
        );
        assert!(!is_ready(&[rendered(&up), rendered(&node)]));
        // Unmarked, a family named like a health family says nothing.
        let mut unmarked = MetricSet::new();
        unmarked.add(&EXPORTER_ENDPOINT_UP, l("jobs"), 0.0);
        assert!(rendered(&unmarked).unwrap().health.is_empty());
        // Producers that report no sources are ready once they published.
        assert!(is_ready(&[rendered(&MetricSet::new())]));
    }
}

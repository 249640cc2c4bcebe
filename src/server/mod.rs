//! HTTP server: `/metrics` from pre-encoded snapshots, `/healthz`, `/readyz`
//! and a landing page. Scrapes only copy bytes out of memory.
//!
//! With `--web.config.file` ([`WebConfig`]) it adds TLS, client
//! certificates, basic auth, response headers and a rate limit. Programs
//! call [`WebServer::bind`] with their `WebArgs`, then [`WebServer::serve`].

pub mod auth;
pub mod files;
pub mod listen;
pub mod tls;
pub mod web_config;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::cli::WebArgs;
use crate::cluster::collectors::exporter::{
    EXPORTER_ENDPOINT_STALE as ENDPOINT_STALE, EXPORTER_ENDPOINT_UP as ENDPOINT_UP,
};
use crate::exposition::MetricSet;
use crate::node::collectors::COLLECTOR_UP;
pub use web_config::{RateLimit, WebConfig};

/// Paths answered without basic auth: they only say "ok"/"ready", and
/// probes (kubelet, load balancers) rarely carry credentials. TLS and client
/// certificates still apply to them.
pub const AUTH_EXEMPT_PATHS: [&str; 2] = ["/healthz", "/readyz"];

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One collection, encoded in both formats.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Classic text, gzip-compressed.
    pub text_gzip: Bytes,
    /// OpenMetrics, gzip-compressed.
    pub openmetrics_gzip: Bytes,
    pub text_len: usize,
    pub openmetrics_len: usize,
    /// Health of each data source in this collection, for `/readyz` and
    /// the landing page.
    pub health: Vec<SourceHealth>,
}

/// One data source of a producer: a slurmrestd endpoint of the cluster
/// scraper or a collector of the node agent.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    /// `slurmrestd /jobs`, `collector gpu`, ...
    pub source: String,
    /// Its last poll or collection succeeded.
    pub up: bool,
    /// It failed, and the last good data is served instead.
    pub stale: bool,
}

/// Self-metric families that say whether a source answered, with the label
/// naming it and the prefix shown for it.
const HEALTH_FAMILIES: [(&str, &str, &str); 2] = [
    (ENDPOINT_UP.name, "endpoint", "slurmrestd "),
    (COLLECTOR_UP.name, "collector", "collector "),
];

fn source_health(set: &MetricSet) -> Vec<SourceHealth> {
    let mut out = Vec::new();
    for (family, label, prefix) in HEALTH_FAMILIES {
        let Some(f) = set.families().iter().find(|f| f.name == family) else {
            continue;
        };
        for s in &f.samples {
            let name = s.label(label).unwrap_or_default().to_string();
            let stale = family == ENDPOINT_UP.name
                && set.value(ENDPOINT_STALE.name, &[("endpoint", &name)]) == Some(1.0);
            out.push(SourceHealth {
                source: format!("{prefix}{name}"),
                up: s.value == 1.0,
                stale,
            });
        }
    }
    out
}

/// Ready: every producer has published, and each one that reports its
/// sources has at least one source whose data it serves (up, or failing
/// with its last good data kept). A scraper whose every poll failed, or whose
/// kept data has expired, is not ready.
pub fn is_ready(snapshots: &[Option<Arc<Rendered>>]) -> bool {
    snapshots.iter().all(|s| match s {
        None => false,
        Some(r) => r.health.is_empty() || r.health.iter().any(|h| h.up || h.stale),
    })
}

// Prometheus always asks for gzip, so snapshots are kept compressed only:
// scrapes of a 20 MiB cluster snapshot move ~6x fewer bytes and the kept
// snapshot costs a sixth of the memory. Clients without gzip get it inflated.
// Encoders write straight into the compressor, so the plain text of a large
// snapshot never exists in memory as a whole.
fn gzip_encoded(
    encode: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64>,
) -> (Bytes, usize) {
    use std::io::Write as _;
    let gz = flate2::write::GzEncoder::new(Vec::new(), GZIP_LEVEL);
    // Deflate handles large writes better than one per sample line.
    let mut buffered = std::io::BufWriter::with_capacity(64 * 1024, gz);
    // Writing into a Vec cannot fail.
    let len = encode(&mut buffered).unwrap_or(0);
    let _ = buffered.flush();
    let mut compressed = buffered
        .into_inner()
        .ok()
        .and_then(|gz| gz.finish().ok())
        .unwrap_or_default();
    compressed.shrink_to_fit();
    (Bytes::from(compressed), len as usize)
}

/// Compression costs once per collection, bytes cost on every scrape.
const GZIP_LEVEL: flate2::Compression = flate2::Compression::new(6);

fn gunzip(data: &[u8], len: usize) -> Bytes {
    use std::io::Read as _;
    let mut out = Vec::with_capacity(len);
    // Our own compressed bytes: a failure would be a bug, and yields an empty body.
    let _ = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
    Bytes::from(out)
}

impl Rendered {
    pub fn from_set(set: &MetricSet) -> Self {
        let (text_gzip, text_len) = gzip_encoded(|w| set.write_text(w));
        let (openmetrics_gzip, openmetrics_len) = gzip_encoded(|w| set.write_openmetrics(w));
        Rendered {
            text_gzip,
            openmetrics_gzip,
            text_len,
            openmetrics_len,
            health: source_health(set),
        }
    }

    pub fn text(&self) -> Bytes {
        gunzip(&self.text_gzip, self.text_len)
    }

    pub fn openmetrics(&self) -> Bytes {
        gunzip(&self.openmetrics_gzip, self.openmetrics_len)
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

/// What a program adds to its landing page: an HTML fragment, built on
/// each view.
pub type About = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    publishers: Arc<Vec<Publisher>>,
    telemetry_path: String,
    title: &'static str,
    about: Option<About>,
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

/// What [`serve_with`] serves, and how.
#[derive(Clone)]
pub struct ServeOptions {
    pub telemetry_path: String,
    pub title: &'static str,
    /// TLS, auth, headers, rate limit; `None` is plain HTTP, open to all.
    pub web_config: Option<Arc<WebConfig>>,
    /// Extra landing-page content.
    pub about: Option<About>,
}

/// [`serve`] with an optional web config: TLS (handshakes in their own
/// tasks, at most [`tls::HANDSHAKE_TIMEOUT`] each), basic auth, headers.
pub async fn serve_with(
    listener: TcpListener,
    opts: ServeOptions,
    publishers: Vec<Publisher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(&opts, publishers);
    match opts.web_config.as_ref().and_then(|c| c.tls.clone()) {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls, tls::HANDSHAKE_TIMEOUT)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

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

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        title: &'static str,
        publishers: Vec<Publisher>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let opts = ServeOptions {
            telemetry_path: self.telemetry_path,
            title,
            web_config: self.web_config,
            about: self.about,
        };
        serve_with(self.listener, opts, publishers, shutdown).await
    }
}

/// [`router`] plus the web config's auth, headers and rate limit.
pub fn router_with(opts: &ServeOptions, publishers: Vec<Publisher>) -> Router {
    let app = router_about(
        &opts.telemetry_path,
        opts.title,
        publishers,
        opts.about.clone(),
    );
    let Some(cfg) = &opts.web_config else {
        return app;
    };
    if cfg.basic_auth.is_none() && cfg.headers.is_empty() && cfg.rate_limit.is_none() {
        return app;
    }
    let guard = Arc::new(Guard {
        auth: cfg.basic_auth.clone(),
        exempt: AUTH_EXEMPT_PATHS
            .iter()
            .filter(|p| **p != opts.telemetry_path)
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

struct Guard {
    auth: Option<Arc<auth::BasicAuth>>,
    exempt: Vec<String>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    limiter: Option<Mutex<Bucket>>,
}

/// Token bucket: `burst` tokens, one more every `interval`.
struct Bucket {
    rate: RateLimit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64()
            / self
                .rate
                .interval
                .max(Duration::from_nanos(1))
                .as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn guard_layer(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut resp = guarded(&g, req, next).await;
    let h = resp.headers_mut();
    for (name, value) in &g.headers {
        h.insert(name.clone(), value.clone());
    }
    resp
}

async fn guarded(g: &Guard, req: Request, next: Next) -> Response {
    if let Some(l) = &g.limiter {
        if !l.lock().unwrap_or_else(|e| e.into_inner()).allow() {
            return (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response();
        }
    }
    if let Some(auth) = &g.auth {
        let path = req.uri().path();
        if !g.exempt.iter().any(|p| p == path)
            && !auth.check(req.headers().get(header::AUTHORIZATION)).await
        {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"slurm-gpu-exporter\", charset=\"UTF-8\"",
                    ),
                )],
                "unauthorized\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

pub fn router(telemetry_path: &str, title: &'static str, publishers: Vec<Publisher>) -> Router {
    router_about(telemetry_path, title, publishers, None)
}

fn router_about(
    telemetry_path: &str,
    title: &'static str,
    publishers: Vec<Publisher>,
    about: Option<About>,
) -> Router {
    let state = AppState {
        publishers: Arc::new(publishers),
        telemetry_path: telemetry_path.to_string(),
        title,
        about,
    };
    Router::new()
        .route(telemetry_path, get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(landing))
        .route("/{dir}/{name}", get(bundled_file))
        .with_state(state)
}

/// Listens on a `--web.listen-address` in any form node_exporter accepts (see [`listen`]).
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    let addr =
        listen::parse(addr).map_err(|e| anyhow::anyhow!("invalid --web.listen-address: {e}"))?;
    Ok(listen::bind(&addr).await?)
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
    let ct = if om {
        OPENMETRICS_CONTENT_TYPE
    } else {
        TEXT_CONTENT_TYPE
    };
    if snapshots.len() == 1 && accepts_gzip(&headers) {
        let s = &snapshots[0];
        let body = if om {
            s.openmetrics_gzip.clone()
        } else {
            s.text_gzip.clone()
        };
        let mut resp = body.into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        return resp;
    }
    let body = if snapshots.len() == 1 {
        let s = &snapshots[0];
        if om {
            s.openmetrics()
        } else {
            s.text()
        }
    } else {
        let mut buf = Vec::new();
        for s in &snapshots {
            if om {
                // Only the final `# EOF` may remain.
                let b = s.openmetrics();
                buf.extend_from_slice(b.strip_suffix(b"# EOF\n").unwrap_or(&b));
            } else {
                buf.extend_from_slice(&s.text());
            }
        }
        if om {
            buf.extend_from_slice(b"# EOF\n");
        }
        Bytes::from(buf)
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, not with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name == "gzip" || name == "*") && !refused
        })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let snapshots: Vec<_> = state.publishers.iter().map(|p| p.latest()).collect();
    if is_ready(&snapshots) {
        "ready\n".into_response()
    } else if snapshots.iter().any(Option::is_none) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "first collection pending\n",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no data: every source failed (see the landing page and the logs)\n",
        )
            .into_response()
    }
}

async fn bundled_file(
    axum::extract::Path((dir, name)): axum::extract::Path<(String, String)>,
) -> Response {
    match files::get(&dir, &name) {
        Some((ct, body)) => ([(header::CONTENT_TYPE, ct)], body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn landing(State(state): State<AppState>) -> Html<String> {
    let mut rows = String::new();
    let snapshots: Vec<_> = state.publishers.iter().map(|p| p.latest()).collect();
    for s in &snapshots {
        match s {
            None => rows.push_str("<tr><td>(first collection pending)</td><td>-</td></tr>"),
            Some(r) => {
                for h in &r.health {
                    let (class, word) = match (h.up, h.stale) {
                        (true, _) => ("up", "up"),
                        (false, true) => ("stale", "failing; last good data served"),
                        (false, false) => ("down", "down"),
                    };
                    rows.push_str(&format!(
                        "<tr><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                        html_escape(&h.source)
                    ));
                }
            }
        }
    }
    let ready = if is_ready(&snapshots) {
        "ready"
    } else {
        "not ready"
    };
    let about = state.about.as_ref().map(|f| f()).unwrap_or_default();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
         .up{{color:#080}}.down{{color:#b00;font-weight:bold}}.stale{{color:#a60}}</style></head><body>\
         <h1>{t}</h1><p>slurm-gpu-exporter {v}</p>{about}\
         <h2>Endpoints</h2><ul>\
         <li><a href=\"{p}\">{p}</a>: the metrics (Prometheus text, or OpenMetrics on request)</li>\
         <li><a href=\"/healthz\">/healthz</a>: the process answers</li>\
         <li><a href=\"/readyz\">/readyz</a>: {ready} (ready once a source has data to serve)</li></ul>\
         <h2>Sources</h2><table><tr><th>Source</th><th>State</th></tr>{rows}</table>\
         <h2>Documentation (of this build)</h2><ul>{docs}</ul>\
         <h2>Grafana dashboards to import</h2>\
         <p>Grafana: Dashboards → New → Import, upload the file, pick the Prometheus data source.</p><ul>{dashboards}</ul>\
         <h2>Prometheus recording and alert rules</h2>\
         <p>Load all of them (<code>rule_files</code>): the dashboards use the recording rules.</p><ul>{rules}</ul>\
         </body></html>\n",
        t = state.title,
        v = env!("CARGO_PKG_VERSION"),
        p = html_escape(&state.telemetry_path),
        docs = files::links("docs"),
        dashboards = files::links("dashboards"),
        rules = files::links("alerts"),
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

#[cfg(test)]
mod ready_tests {
    use super::*;
    use crate::cluster::poller::{PollOptions, Poller};
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
        let mut up = MetricSet::new();
        let l = |e: &str| vec![("endpoint", e.to_string())];
        up.gauge("slurm_exporter_endpoint_up", "", l("jobs"), 1.0);
        up.gauge("slurm_exporter_endpoint_up", "", l("diag"), 0.0);
        assert!(is_ready(&[rendered(&up)]));
        let mut stale = MetricSet::new();
        stale.gauge("slurm_exporter_endpoint_up", "", l("jobs"), 0.0);
        stale.gauge("slurm_exporter_endpoint_stale", "", l("jobs"), 1.0);
        let r = rendered(&stale);
        assert!(r.as_ref().unwrap().health[0].stale);
        assert!(is_ready(&[r]), "last good data still served");
        let mut node = MetricSet::new();
        node.gauge(
            "slurm_node_collector_up",
            "",
            vec![("node", "n".into()), ("collector", "gpu".into())],
            0.0,
        );
        assert!(!is_ready(&[rendered(&up), rendered(&node)]));
        // Producers that report no sources are ready once they published.
        assert!(is_ready(&[rendered(&MetricSet::new())]));
    }
}

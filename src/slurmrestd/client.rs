//! HTTP transport to slurmrestd over `http://`, `https://` or `unix://`.
//!
//! Every request is bounded: one deadline covers connect, headers and body,
//! and the body is cut at a size limit. Bodies are never buffered whole: they
//! stream into the parser on a blocking thread, so a 1.6 GB job list costs
//! one job's worth of memory.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::error::ParseError;

/// A JWT or other secret whose `Debug`/`Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the JWT comes from. A file is re-read on every poll, so a rotated
/// Kubernetes Secret (an atomic symlink swap) takes effect on the next poll.
#[derive(Debug, Clone)]
pub enum TokenSource {
    None,
    Static(Secret),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid slurmrestd URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {target} failed: {source}")]
    Tls {
        target: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to {target}: {source}")]
    Http {
        target: String,
        source: hyper::Error,
    },
    #[error("GET {path} timed out after {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("GET {path}: HTTP {status}: {snippet}")]
    Status {
        path: String,
        status: StatusCode,
        snippet: String,
        /// `errors[].error_number` (or `errno`) of a JSON error body.
        slurm_errors: Vec<i64>,
    },
    #[error("GET {path}: expected JSON, got content type {content_type:?}: {snippet}")]
    NotJson {
        path: String,
        content_type: String,
        snippet: String,
    },
    #[error(
        "GET {path}: response exceeds the {limit}-byte limit (--slurmrestd-max-response-bytes)"
    )]
    TooLarge { path: String, limit: u64 },
    #[error("GET {path}: cannot parse response: {source}")]
    Parse { path: String, source: ParseError },
    /// An error answer while the token's own `exp` claim lies in the past:
    /// Slurm 22.05 answers an expired JWT with HTTP 500 "Unspecified error",
    /// later releases with 401, so the claim is what tells it apart.
    #[error("GET {path}: HTTP {status}: the slurmrestd token expired at {expired_at} (Unix time); renew it (scontrol token, or Slinky's Token resource)")]
    TokenExpired {
        path: String,
        status: StatusCode,
        expired_at: i64,
    },
    /// A `POST` that slurmrestd refused, or that did not complete.
    #[error("POST {path}: {reason}")]
    Post {
        path: String,
        reason: String,
        slurm_errors: Vec<i64>,
    },
    /// A `DELETE` that slurmrestd refused, or that did not complete.
    #[error("DELETE {path}: {reason}")]
    Delete {
        path: String,
        reason: String,
        slurm_errors: Vec<i64>,
    },
    #[error("cannot read token file {path:?}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FetchError {
    /// Stable label value for `errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl { .. } => "config",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Http { .. } => "http",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Status { status, .. } => match status.as_u16() {
                401 | 403 | 511 => "auth",
                404 => "not_found",
                500..=599 => "http_5xx",
                _ => "http_status",
            },
            FetchError::NotJson { .. } => "not_json",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Parse { source, .. } => match source {
                ParseError::Slurm(_) => "slurm_error",
                _ => "parse",
            },
            FetchError::TokenFile { .. } => "token",
            FetchError::Post { .. } => "post",
            FetchError::Delete { .. } => "delete",
            FetchError::TokenExpired { .. } => "auth",
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Slurm error numbers slurmrestd gave with an HTTP error status, or in
    /// a 200 whose list came back empty with `errors[]`.
    pub fn slurm_errors(&self) -> Vec<i64> {
        match self {
            FetchError::Status { slurm_errors, .. }
            | FetchError::Post { slurm_errors, .. }
            | FetchError::Delete { slurm_errors, .. } => slurm_errors.clone(),
            FetchError::Parse {
                source: ParseError::Slurm(msg),
                ..
            } => super::body::error_numbers_in_message(msg),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Tcp {
        host: String,
        port: u16,
        base_path: String,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    Unix {
        socket: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub token: TokenSource,
    pub user_name: Option<String>,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    pub ca_file: Option<PathBuf>,
}

/// Result of one successful request.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Client {
    target: Target,
    display: String,
    token: TokenSource,
    cached_token: Mutex<Secret>,
    /// The token file was read empty (warned once until it is not).
    empty_token_warned: std::sync::atomic::AtomicBool,
    user_name: Option<String>,
    timeout: Duration,
    max_body_bytes: u64,
    extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, FetchError> {
        let (target, display) = parse_url(&opts.url, opts.ca_file.as_deref())?;
        let initial = match &opts.token {
            TokenSource::Static(s) => s.clone(),
            _ => Secret::default(),
        };
        Ok(Client {
            target,
            display,
            token: opts.token,
            cached_token: Mutex::new(initial),
            empty_token_warned: Default::default(),
            user_name: opts.user_name,
            timeout: opts.timeout,
            max_body_bytes: opts.max_body_bytes,
            extra_headers: Vec::new(),
        })
    }

    /// Sends these headers with every request too (the `report` subcommand's
    /// `Authorization` or `X-Scope-OrgID` for a Prometheus-compatible API).
    pub fn with_headers(mut self, headers: Vec<(http::HeaderName, http::HeaderValue)>) -> Self {
        self.extra_headers = headers;
        self
    }

    /// The URL with nothing secret in it, for logs.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Re-reads the token file; on failure the previous token is kept. An
    /// empty file is read as no token, with a warning (once until it fills).
    pub fn refresh_token(&self) -> Result<(), FetchError> {
        if let TokenSource::File(path) = &self.token {
            let raw = read_token_file(path)?;
            let empty = raw.is_empty();
            let was = self
                .empty_token_warned
                .swap(empty, std::sync::atomic::Ordering::Relaxed);
            if empty && !was {
                tracing::warn!(path = %path.display(), "slurmrestd token file is empty: requests go without a token until it holds one");
            }
            *self.cached_token.lock().unwrap_or_else(|e| e.into_inner()) = raw;
        }
        Ok(())
    }

    /// Whether a token is sent with requests.
    pub fn has_token(&self) -> bool {
        !self.token().is_empty()
    }

    /// What happens after a failed token read, for the log line.
    pub fn token_failure_note(&self) -> &'static str {
        if self.has_token() {
            "keeping the previous slurmrestd token"
        } else {
            "no slurmrestd token read yet: requests go without a token"
        }
    }

    /// The `exp` claim of the token in use (Unix seconds), when it is a JWT
    /// that has one. Read without verifying the signature: it only explains
    /// failures and feeds the expiry gauge; slurmctld does the verifying.
    pub fn token_expiry(&self) -> Option<i64> {
        jwt_expiry(self.token().expose())
    }

    fn token(&self) -> Secret {
        self.cached_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// GETs `path` and stream-parses the body with `parse` on a blocking thread.
    pub async fn get<T, F>(&self, path: &str, parse: F) -> Result<Fetched<T>, FetchError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T, ParseError> + Send + 'static,
    {
        match self.get_inner(path, parse, false).await? {
            Some(f) => Ok(f),
            // Unreachable: a 304 is an error unless asked for.
            None => Err(FetchError::Status {
                path: path.to_string(),
                status: StatusCode::NOT_MODIFIED,
                snippet: String::new(),
                slurm_errors: Vec::new(),
            }),
        }
    }

    /// Like [`Client::get`] for a conditional request (`?update_time=`):
    /// `Ok(None)` when slurmrestd answers 304 Not Modified (Slurm 22.05).
    pub async fn get_conditional<T, F>(
        &self,
        path: &str,
        parse: F,
    ) -> Result<Option<Fetched<T>>, FetchError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T, ParseError> + Send + 'static,
    {
        self.get_inner(path, parse, true).await
    }

    async fn get_inner<T, F>(
        &self,
        path: &str,
        parse: F,
        not_modified_ok: bool,
    ) -> Result<Option<Fetched<T>>, FetchError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T, ParseError> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout;
        let timeout_err = || FetchError::Timeout {
            path: path.to_string(),
            timeout: self.timeout,
        };
        let io = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timeout_err())??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| FetchError::Http {
                target: self.display.clone(),
                source,
            })?;
        // Dropping the guard aborts the connection task, whatever path we leave by.
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));

        let req = self.request(path);
        let resp = tokio::time::timeout_at(deadline, sender.send_request(req))
            .await
            .map_err(|_| timeout_err())?
            .map_err(|source| FetchError::Http {
                target: self.display.clone(),
                source,
            })?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.into_body();
        if status == StatusCode::NOT_MODIFIED && not_modified_ok {
            let _ = self.snippet(body, deadline).await;
            return Ok(None);
        }
        if status != StatusCode::OK {
            let raw = self.read_prefix(body, deadline, ERROR_BODY_MAX).await;
            // Only the statuses an auth failure comes as: a 404 still drives version detection.
            let auth_like = matches!(status.as_u16(), 401 | 403 | 500);
            if let Some(expired_at) = self
                .token_expiry()
                .filter(|exp| auth_like && *exp <= unix_now())
            {
                return Err(FetchError::TokenExpired {
                    path: path.to_string(),
                    status,
                    expired_at,
                });
            }
            return Err(FetchError::Status {
                path: path.to_string(),
                status,
                snippet: self.snippet_of(&raw),
                slurm_errors: super::body::error_numbers(&raw),
            });
        }
        if !content_type.is_empty() && !content_type.to_ascii_lowercase().contains("json") {
            let snippet = self.snippet(body, deadline).await;
            return Err(FetchError::NotJson {
                path: path.to_string(),
                content_type,
                snippet,
            });
        }

        let state = Arc::new(BodyState::default());
        let stream = BoundedBody {
            body,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            max: self.max_body_bytes,
            state: state.clone(),
        };
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        let parsed = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::with_capacity(64 * 1024, reader);
            let parsed = parse(&mut reader);
            crate::memory::release_freed_memory();
            parsed
        })
        .await;
        let bytes = state.read.load(Ordering::Relaxed);
        if state.too_large.load(Ordering::Relaxed) {
            return Err(FetchError::TooLarge {
                path: path.to_string(),
                limit: self.max_body_bytes,
            });
        }
        if state.timed_out.load(Ordering::Relaxed) {
            return Err(timeout_err());
        }
        match parsed {
            Ok(Ok(value)) => Ok(Some(Fetched { value, bytes })),
            Ok(Err(source)) => Err(FetchError::Parse {
                path: path.to_string(),
                source,
            }),
            Err(join) => Err(FetchError::Parse {
                path: path.to_string(),
                source: ParseError::Slurm(format!("parser panicked: {join}")),
            }),
        }
    }

    fn request(&self, path: &str) -> Request<Empty<Bytes>> {
        let (uri, host) = match &self.target {
            Target::Tcp {
                host,
                port,
                base_path,
                ..
            } => (format!("{base_path}{path}"), format!("{host}:{port}")),
            Target::Unix { .. } => (path.to_string(), "localhost".to_string()),
        };
        let mut b = Request::get(uri)
            .header(http::header::HOST, host)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("slurm-gpu-exporter/", env!("CARGO_PKG_VERSION")),
            );
        let token = self.token();
        if !token.is_empty() {
            if let Ok(mut v) = http::HeaderValue::from_str(token.expose()) {
                v.set_sensitive(true);
                b = b.header("X-SLURM-USER-TOKEN", v);
            }
        }
        if let Some(user) = &self.user_name {
            b = b.header("X-SLURM-USER-NAME", user.as_str());
        }
        for (k, v) in &self.extra_headers {
            b = b.header(k, v);
        }
        // Only a header value can fail here, and those were checked above.
        b.body(Empty::new()).unwrap_or_default()
    }

    /// POSTs a JSON `body` to `path` and returns the JSON answer (an
    /// `openapi_resp`: `meta`, `errors`, `warnings`). Same deadline, token
    /// headers and answer size limit as a GET (capped at [`POST_ANSWER_MAX`]:
    /// a write's answer is a few KiB). A non-2xx status or an answer whose
    /// `errors[]` is not empty is an error.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, FetchError> {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.send_json(http::Method::POST, path, payload).await
    }

    /// DELETEs `path` (e.g. `/slurm/v0.0.42/job/{id}`: cancels the job) and
    /// returns the JSON answer; deadline, headers and errors as [`Self::post_json`].
    pub async fn delete_json(&self, path: &str) -> Result<serde_json::Value, FetchError> {
        self.send_json(http::Method::DELETE, path, Bytes::new())
            .await
    }

    async fn send_json(
        &self,
        method: http::Method,
        path: &str,
        payload: Bytes,
    ) -> Result<serde_json::Value, FetchError> {
        let is_delete = method == http::Method::DELETE;
        let fail = |reason: String, slurm_errors: Vec<i64>| {
            if is_delete {
                FetchError::Delete {
                    path: path.to_string(),
                    reason,
                    slurm_errors,
                }
            } else {
                FetchError::Post {
                    path: path.to_string(),
                    reason,
                    slurm_errors,
                }
            }
        };
        let deadline = Instant::now() + self.timeout;
        let timed_out = || fail(format!("timed out after {:?}", self.timeout), Vec::new());
        let io = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timed_out())??;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| FetchError::Http {
                target: self.display.clone(),
                source,
            })?;
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let req = self.post_request(method, path, payload);
        let resp = tokio::time::timeout_at(deadline, sender.send_request(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| FetchError::Http {
                target: self.display.clone(),
                source,
            })?;
        let status = resp.status();
        let max = (self.max_body_bytes as usize).min(POST_ANSWER_MAX);
        let raw = self.read_prefix(resp.into_body(), deadline, max + 1).await;
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        let errors = super::body::error_numbers(&raw);
        if !status.is_success() {
            if let Some(expired_at) = self.token_expiry().filter(|exp| *exp <= unix_now()) {
                return Err(FetchError::TokenExpired {
                    path: path.to_string(),
                    status,
                    expired_at,
                });
            }
            return Err(fail(
                format!("HTTP {status}: {}", self.snippet_of(&raw)),
                errors,
            ));
        }
        if raw.len() > max {
            return Err(fail(format!("answer exceeds {max} bytes"), Vec::new()));
        }
        let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            fail(
                format!("answer is not JSON ({e}): {}", self.snippet_of(&raw)),
                Vec::new(),
            )
        })?;
        let has_errors = value
            .get("errors")
            .and_then(|e| e.as_array())
            .is_some_and(|a| !a.is_empty());
        if has_errors {
            return Err(fail(
                format!("slurmrestd reported errors: {}", self.snippet_of(&raw)),
                errors,
            ));
        }
        Ok(value)
    }

    fn post_request(
        &self,
        method: http::Method,
        path: &str,
        payload: Bytes,
    ) -> Request<http_body_util::Full<Bytes>> {
        let (uri, host) = match &self.target {
            Target::Tcp {
                host,
                port,
                base_path,
                ..
            } => (format!("{base_path}{path}"), format!("{host}:{port}")),
            Target::Unix { .. } => (path.to_string(), "localhost".to_string()),
        };
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, host)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("slurm-gpu-exporter/", env!("CARGO_PKG_VERSION")),
            );
        let token = self.token();
        if !token.is_empty() {
            if let Ok(mut v) = http::HeaderValue::from_str(token.expose()) {
                v.set_sensitive(true);
                b = b.header("X-SLURM-USER-TOKEN", v);
            }
        }
        if let Some(user) = &self.user_name {
            b = b.header("X-SLURM-USER-NAME", user.as_str());
        }
        for (k, v) in &self.extra_headers {
            b = b.header(k, v);
        }
        b.body(http_body_util::Full::new(payload))
            .unwrap_or_default()
    }

    async fn connect(&self) -> Result<Box<dyn Io>, FetchError> {
        match &self.target {
            Target::Unix { socket } => {
                let s =
                    UnixStream::connect(socket)
                        .await
                        .map_err(|source| FetchError::Connect {
                            target: self.display.clone(),
                            source,
                        })?;
                Ok(Box::new(s))
            }
            Target::Tcp {
                host, port, tls, ..
            } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|source| FetchError::Connect {
                        target: self.display.clone(),
                        source,
                    })?;
                let _ = s.set_nodelay(true);
                match tls {
                    None => Ok(Box::new(s)),
                    Some(cfg) => {
                        let name =
                            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                                FetchError::InvalidUrl {
                                    url: self.display.clone(),
                                    reason: e.to_string(),
                                }
                            })?;
                        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                            .connect(name, s)
                            .await
                            .map_err(|source| FetchError::Tls {
                                target: self.display.clone(),
                                source,
                            })?;
                        Ok(Box::new(tls))
                    }
                }
            }
        }
    }

    /// First few hundred bytes of an error body, printable, token scrubbed.
    async fn snippet(&self, body: Incoming, deadline: Instant) -> String {
        let raw = self.read_prefix(body, deadline, SNIPPET_MAX).await;
        self.snippet_of(&raw)
    }

    /// The first `max` bytes of `body` (fewer if it ends or the deadline passes).
    async fn read_prefix(&self, mut body: Incoming, deadline: Instant, max: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        while buf.len() < max {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        buf.truncate(max);
        buf
    }

    /// One line of at most [`SNIPPET_MAX`] bytes for errors and logs, token redacted.
    fn snippet_of(&self, raw: &[u8]) -> String {
        let buf = &raw[..raw.len().min(SNIPPET_MAX)];
        let mut s: String = String::from_utf8_lossy(buf)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let token = self.token();
        if !token.is_empty() && s.contains(token.expose()) {
            s = s.replace(token.expose(), "<redacted>");
        }
        s
    }
}

/// Bytes of a POST answer read (slurmrestd answers a write with meta and
/// errors/warnings only).
const POST_ANSWER_MAX: usize = 1024 * 1024;

/// Bytes of an error body kept for messages.
const SNIPPET_MAX: usize = 512;
/// Bytes of an error body read to find Slurm's error numbers (slurmrestd's
/// error JSON puts `meta` first; its `errors` follow within a few KiB).
const ERROR_BODY_MAX: usize = 64 * 1024;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `exp` of a JWT (`header.payload.signature`, base64url JSON payload).
fn jwt_expiry(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    claims
        .exp
        .filter(|e| e.is_finite() && *e >= 0.0 && *e < 1e12)
        .map(|e| e as i64)
}

fn read_token_file(path: &Path) -> Result<Secret, FetchError> {
    // A JWT is well under 64 KiB; anything larger is not a token.
    let mut f = std::fs::File::open(path).map_err(|source| FetchError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut raw = String::new();
    f.by_ref()
        .take(64 * 1024)
        .read_to_string(&mut raw)
        .map_err(|source| FetchError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
    let t = raw.trim();
    // Accept both a bare token and `SLURM_JWT=...` as `scontrol token` prints it.
    let t = t.strip_prefix("SLURM_JWT=").unwrap_or(t);
    Ok(Secret::new(t))
}

fn parse_url(url: &str, ca_file: Option<&Path>) -> Result<(Target, String), FetchError> {
    let bad = |reason: &str| FetchError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(path) = url.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(bad("empty socket path"));
        }
        return Ok((
            Target::Unix {
                socket: PathBuf::from(path),
            },
            url.to_string(),
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("scheme must be http, https or unix")),
    };
    let auth = uri.authority().ok_or_else(|| bad("missing host"))?;
    if auth.as_str().contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; use --slurmrestd-token-file",
        ));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base_path = uri.path().trim_end_matches('/').to_string();
    let tls_cfg = if tls {
        Some(Arc::new(tls_config(ca_file).map_err(|e| bad(&e))?))
    } else {
        None
    };
    Ok((
        Target::Tcp {
            host: host.to_string(),
            port,
            base_path,
            tls: tls_cfg,
        },
        format!(
            "{}://{}:{}{}",
            if tls { "https" } else { "http" },
            host,
            port,
            uri.path().trim_end_matches('/')
        ),
    ))
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("CA file {path:?}: {e}"))?;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| format!("CA file {path:?}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA file {path:?}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Default)]
struct BodyState {
    read: AtomicU64,
    too_large: AtomicBool,
    timed_out: AtomicBool,
}

/// A response body as a byte stream that fails once the size limit or the
/// request deadline is passed.
struct BoundedBody {
    body: Incoming,
    sleep: Pin<Box<Sleep>>,
    max: u64,
    state: Arc<BodyState>,
}

impl Stream for BoundedBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.sleep.as_mut().poll(cx).is_ready() {
                self.state.timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "response deadline passed",
                ))));
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(e))))
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let total = self
                .state
                .read
                .fetch_add(data.len() as u64, Ordering::Relaxed)
                + data.len() as u64;
            if total > self.max {
                self.state.too_large.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    "response size limit exceeded",
                ))));
            }
            return Poll::Ready(Some(Ok(data)));
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_expiry_is_read_from_the_claims() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let tok = |claims: &str| format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims));
        // As `scontrol token` makes them: exp, iat, sun.
        assert_eq!(
            jwt_expiry(&tok(r#"{"exp":1796378512,"iat":1796378511,"sun":"root"}"#)),
            Some(1796378512)
        );
        assert_eq!(jwt_expiry(&tok(r#"{"sun":"root"}"#)), None);
        assert_eq!(jwt_expiry(&tok(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_expiry(&tok(r#"{"exp":1e300}"#)), None);
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.%%%.b"), None);
        assert_eq!(jwt_expiry(""), None);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("eyJhbGciOi.secret.sig");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn url_forms() {
        let (t, d) = parse_url("http://slurm-restapi.slurm:6820", None).unwrap();
        assert!(matches!(
            t,
            Target::Tcp {
                port: 6820,
                tls: None,
                ..
            }
        ));
        assert_eq!(d, "http://slurm-restapi.slurm:6820");
        let (t, _) = parse_url("unix:///run/slurmrestd.socket", None).unwrap();
        assert!(
            matches!(t, Target::Unix { socket } if socket == Path::new("/run/slurmrestd.socket"))
        );
        let (t, _) = parse_url("http://127.0.0.1:8080/prefix/", None).unwrap();
        assert!(matches!(t, Target::Tcp { base_path, .. } if base_path == "/prefix"));
        assert!(parse_url("ftp://x", None).is_err());
        assert!(parse_url("http://u:p@x", None).is_err());
        assert!(parse_url("unix://", None).is_err());
    }

    #[test]
    fn token_file_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "SLURM_JWT=abc.def.ghi\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap().expose(), "abc.def.ghi");
        std::fs::write(&p, "  xyz \n").unwrap();
        assert_eq!(read_token_file(&p).unwrap().expose(), "xyz");
        assert!(read_token_file(&dir.path().join("missing")).is_err());
    }

    fn file_client(path: &Path) -> Client {
        Client::new(ClientOptions {
            url: "http://127.0.0.1:1".into(),
            token: TokenSource::File(path.to_path_buf()),
            user_name: None,
            timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            ca_file: None,
        })
        .unwrap()
    }

    #[test]
    fn token_failure_note_says_whether_a_token_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let c = file_client(&p);
        // Missing at start: there is no previous token to keep.
        assert!(c.refresh_token().is_err());
        assert!(!c.has_token());
        assert!(c.token_failure_note().starts_with("no slurmrestd token"));
        std::fs::write(&p, "abc").unwrap();
        c.refresh_token().unwrap();
        std::fs::remove_file(&p).unwrap();
        assert!(c.refresh_token().is_err());
        assert_eq!(
            c.token_failure_note(),
            "keeping the previous slurmrestd token"
        );
    }

    #[test]
    fn empty_token_file_is_no_token_and_noted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "\n").unwrap();
        let c = file_client(&p);
        c.refresh_token().unwrap();
        assert!(!c.has_token());
        assert!(c
            .empty_token_warned
            .load(std::sync::atomic::Ordering::Relaxed));
        std::fs::write(&p, "abc").unwrap();
        c.refresh_token().unwrap();
        assert!(c.has_token());
        assert!(!c
            .empty_token_warned
            .load(std::sync::atomic::Ordering::Relaxed));
    }
}

//! HTTP client for slurmrestd over `http://`, `https://` or `unix://`.
//!
//! Every request is bounded: one deadline covers connect, headers and body,
//! and the body is cut at a size limit. Bodies are never buffered whole: they
//! stream into the parser on a blocking thread, so a 1.6 GB job list costs
//! one job's worth of memory.
//!
//! Layout: `transport` (URL, TLS, connection, bounded body), `auth`
//! (secrets and the token), `error` ([`FetchError`]); this module sends
//! GET, POST and DELETE through one request path. Paths and parsers are
//! [`crate::slurmrestd::Api`]'s.

mod auth;
mod error;
mod transport;

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::io::{StreamReader, SyncIoBridge};

pub use auth::{Secret, TokenSource};
pub use error::FetchError;

use super::error::ParseError;
use auth::{jwt_expiry, unix_now, Auth};
use transport::{read_prefix, AbortOnDrop, BodyState, BoundedBody, Transport};

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
    transport: Transport,
    auth: Auth,
    timeout: Duration,
    max_body_bytes: u64,
    extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, FetchError> {
        Ok(Client {
            transport: Transport::new(&opts.url, opts.ca_file.as_deref())?,
            auth: Auth::new(opts.token, opts.user_name),
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
        &self.transport.display
    }

    /// Re-reads the token file; on failure the previous token is kept. An
    /// empty file is read as no token, with a warning (once until it fills).
    pub fn refresh_token(&self) -> Result<(), FetchError> {
        self.auth.refresh()
    }

    /// Whether a token is sent with requests.
    pub fn has_token(&self) -> bool {
        !self.auth.token().is_empty()
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
        jwt_expiry(self.auth.token().expose())
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

    /// The one request path: connects under `deadline`, sends `method`
    /// `path` (with a JSON `payload` if any) and returns the response head,
    /// whose body must be read while the guard lives.
    async fn send(
        &self,
        method: Method,
        path: &str,
        payload: Option<Bytes>,
        deadline: Instant,
        timed_out: &(dyn Fn() -> FetchError + Sync),
    ) -> Result<(Response<Incoming>, AbortOnDrop), FetchError> {
        let (mut sender, guard) = self.transport.open(deadline, timed_out).await?;
        let req = self.request(method, path, payload);
        let resp = tokio::time::timeout_at(deadline, sender.send_request(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| FetchError::Http {
                target: self.transport.display.clone(),
                source,
            })?;
        Ok((resp, guard))
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
        let (resp, _conn) = self
            .send(Method::GET, path, None, deadline, &timeout_err)
            .await?;
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
            let raw = read_prefix(body, deadline, ERROR_BODY_MAX).await;
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
            crate::allocator::release_freed_memory();
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

    fn request(&self, method: Method, path: &str, payload: Option<Bytes>) -> Request<Full<Bytes>> {
        let (uri, host) = self.transport.uri_and_host(path);
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, host)
            .header(http::header::ACCEPT, "application/json");
        if payload.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b = b.header(
            http::header::USER_AGENT,
            concat!("slurm-gpu-exporter/", env!("CARGO_PKG_VERSION")),
        );
        b = self.auth.apply(b);
        for (k, v) in &self.extra_headers {
            b = b.header(k, v);
        }
        // Only a header value can fail here, and those were checked above.
        b.body(Full::new(payload.unwrap_or_default()))
            .unwrap_or_default()
    }

    /// POSTs a JSON `body` to `path` and returns the JSON answer (an
    /// `openapi_resp`: `meta`, `errors`, `warnings`). Same deadline, token
    /// headers and answer size limit as a GET (capped at `WRITE_ANSWER_MAX`:
    /// a write's answer is a few KiB). A non-2xx status or an answer whose
    /// `errors[]` is not empty is an error.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, FetchError> {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.write(Method::POST, path, Some(payload)).await
    }

    /// DELETEs `path` (cancelling a job); the answer is read as for
    /// [`Client::post_json`].
    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, FetchError> {
        self.write(Method::DELETE, path, None).await
    }

    async fn write(
        &self,
        method: Method,
        path: &str,
        payload: Option<Bytes>,
    ) -> Result<serde_json::Value, FetchError> {
        let fail = |reason: String, slurm_errors: Vec<i64>| FetchError::Write {
            method: method.clone(),
            path: path.to_string(),
            reason,
            slurm_errors,
        };
        let deadline = Instant::now() + self.timeout;
        let timed_out = || fail(format!("timed out after {:?}", self.timeout), Vec::new());
        let (resp, _conn) = self
            .send(method.clone(), path, payload, deadline, &timed_out)
            .await?;
        let status = resp.status();
        let max = (self.max_body_bytes as usize).min(WRITE_ANSWER_MAX);
        let raw = read_prefix(resp.into_body(), deadline, max + 1).await;
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

    /// First few hundred bytes of an error body, printable, token scrubbed.
    async fn snippet(&self, body: Incoming, deadline: Instant) -> String {
        let raw = read_prefix(body, deadline, SNIPPET_MAX).await;
        self.snippet_of(&raw)
    }

    /// One line of at most [`SNIPPET_MAX`] bytes for errors and logs, token redacted.
    fn snippet_of(&self, raw: &[u8]) -> String {
        let buf = &raw[..raw.len().min(SNIPPET_MAX)];
        let s: String = String::from_utf8_lossy(buf)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.auth
            .scrub(s.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// Bytes of a POST or DELETE answer read (slurmrestd answers a write with
/// meta and errors/warnings only).
const WRITE_ANSWER_MAX: usize = 1024 * 1024;

/// Bytes of an error body kept for messages.
const SNIPPET_MAX: usize = 512;
/// Bytes of an error body read to find Slurm's error numbers (slurmrestd's
/// error JSON puts `meta` first; its `errors` follow within a few KiB).
const ERROR_BODY_MAX: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::auth::{jwt_expiry, read_token_file};
    use super::transport::{parse_url, Target};
    use super::*;
    use std::path::Path;

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
            .auth
            .empty_token_warned
            .load(std::sync::atomic::Ordering::Relaxed));
        std::fs::write(&p, "abc").unwrap();
        c.refresh_token().unwrap();
        assert!(c.has_token());
        assert!(!c
            .auth
            .empty_token_warned
            .load(std::sync::atomic::Ordering::Relaxed));
    }
}

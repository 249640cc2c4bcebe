//! Transport: the URL (`http://`, `https://`, `unix://`), TLS, one
//! connection per request under one deadline, and a body stream that stops
//! at the size limit or the deadline.

use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use super::error::FetchError;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where requests go, and the URL with nothing secret in it, for logs.
#[derive(Debug)]
pub(super) struct Transport {
    pub(super) target: Target,
    pub(super) display: String,
}

impl Transport {
    pub(super) fn new(url: &str, ca_file: Option<&Path>) -> Result<Transport, FetchError> {
        let (target, display) = parse_url(url, ca_file)?;
        Ok(Transport { target, display })
    }

    /// Request URI (with the URL's base path) and `Host` header for `path`.
    pub(super) fn uri_and_host(&self, path: &str) -> (String, String) {
        match &self.target {
            Target::Tcp {
                host,
                port,
                base_path,
                ..
            } => (format!("{base_path}{path}"), format!("{host}:{port}")),
            Target::Unix { .. } => (path.to_string(), "localhost".to_string()),
        }
    }

    /// Connects (TCP, TLS or unix socket) and hands the connection to
    /// HTTP/1, all before `deadline`. The connection lives as long as the
    /// returned guard.
    pub(super) async fn open(
        &self,
        deadline: Instant,
        timed_out: &(dyn Fn() -> FetchError + Sync),
    ) -> Result<(SendRequest<Full<Bytes>>, AbortOnDrop), FetchError> {
        let io = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timed_out())??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|source| FetchError::Http {
                target: self.display.clone(),
                source,
            })?;
        // Dropping the guard aborts the connection task, whatever path we leave by.
        let guard = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        Ok((sender, guard))
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
}

/// The first `max` bytes of `body` (fewer if it ends or the deadline passes).
pub(super) async fn read_prefix(mut body: Incoming, deadline: Instant, max: usize) -> Vec<u8> {
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

#[derive(Debug, Clone)]
pub(super) enum Target {
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

pub(super) fn parse_url(url: &str, ca_file: Option<&Path>) -> Result<(Target, String), FetchError> {
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

pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, Default)]
pub(super) struct BodyState {
    pub(super) read: AtomicU64,
    pub(super) too_large: AtomicBool,
    pub(super) timed_out: AtomicBool,
}

/// A response body as a byte stream that fails once the size limit or the
/// request deadline is passed.
pub(super) struct BoundedBody {
    pub(super) body: Incoming,
    pub(super) sleep: Pin<Box<Sleep>>,
    pub(super) max: u64,
    pub(super) state: Arc<BodyState>,
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

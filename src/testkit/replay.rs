//! A stand-in slurmrestd that replays recorded responses over HTTP (TCP or
//! a unix socket): the integration tests' mock slurmrestd, and the HTTP
//! serving of the demo's simulated cluster (`crate::demo::sim`, whose
//! answers move with its clock).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::slurmrestd::ApiVersion;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Recorded responses keyed by request path (no query, no trailing slash).
#[derive(Debug, Clone, Default)]
pub struct Recording {
    routes: HashMap<String, Bytes>,
}

fn route_key(path: &str) -> String {
    let p = path.split('?').next().unwrap_or(path);
    p.trim_end_matches('/').to_string()
}

impl Recording {
    pub fn insert(&mut self, path: &str, body: impl Into<Bytes>) {
        self.routes.insert(route_key(path), body.into());
    }

    pub fn get(&self, path: &str) -> Option<&Bytes> {
        self.routes.get(&route_key(path))
    }

    /// Loads `slurm_<endpoint>.json` files of one API version from a fixture
    /// directory (the layout of `tests/fixtures/slurmrestd/<version>/`).
    pub fn from_dir(dir: &Path, version: ApiVersion) -> std::io::Result<Recording> {
        let mut rec = Recording::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            // The slurmdbd paths the cluster scraper polls (limits).
            if let Some(db) = ["associations", "qos"]
                .into_iter()
                .find(|e| name == format!("slurmdb_{e}.json"))
            {
                rec.insert(&version.slurmdb_path(db), std::fs::read(entry.path())?);
                continue;
            }
            let Some(stem) = name
                .strip_prefix("slurm_")
                .and_then(|s| s.strip_suffix(".json"))
            else {
                continue;
            };
            if stem.contains('.') || stem.contains("__") {
                continue; // variants such as `slurm_jobs.from-schema.json` are not routes
            }
            let body = std::fs::read(entry.path())?;
            rec.insert(&version.slurm_path(stem), body);
        }
        Ok(rec)
    }

    /// A handler answering like slurmrestd: 200 JSON for recorded paths,
    /// 404 plain text otherwise, 401 when `token` is set and not presented.
    pub fn handler(self, token: Option<String>) -> Handler {
        let rec = Arc::new(self);
        Arc::new(move |req: Request<Incoming>| {
            let rec = rec.clone();
            let token = token.clone();
            Box::pin(async move {
                if let Some(t) = &token {
                    let given = req
                        .headers()
                        .get("X-SLURM-USER-TOKEN")
                        .and_then(|v| v.to_str().ok());
                    if given != Some(t.as_str()) {
                        return full(
                            StatusCode::UNAUTHORIZED,
                            "text/plain",
                            "Authentication failure",
                        );
                    }
                }
                match rec.get(req.uri().path()) {
                    Some(body) => full(StatusCode::OK, "application/json", body.clone()),
                    None => full(StatusCode::NOT_FOUND, "text/plain", "Unable to find path"),
                }
            })
        })
    }
}

/// Serves one connection with `handler`.
pub async fn serve_connection<I>(io: I, handler: Handler)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Accepts TCP connections forever.
pub async fn serve_tcp(listener: tokio::net::TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, handler.clone()));
    }
}

/// Accepts unix-socket connections forever.
pub async fn serve_unix(listener: tokio::net::UnixListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, handler.clone()));
    }
}

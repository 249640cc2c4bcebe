//! Shared helpers for integration tests: a programmable mock slurmrestd on
//! loopback (hyper), and a scraper wired to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::replay::{self, full, Body, Handler, Recording};
use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};
use slurm_gpu_exporter::slurmrestd::ApiVersion;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn recording(version: ApiVersion) -> Recording {
    Recording::from_dir(
        &fixtures().join("slurmrestd").join(version.as_str()),
        version,
    )
    .expect("fixture recording")
}

/// How the mock answers `/slurm/*/jobs`.
#[derive(Debug, Clone)]
pub enum JobsFault {
    None,
    Html,
    Truncated,
    Status(u16, &'static str, &'static str),
    Stall(Duration),
    Endless,
    SlowDrip(Duration),
}

#[derive(Debug)]
pub struct MockState {
    pub recordings: Vec<(ApiVersion, Recording)>,
    pub token: Option<String>,
    pub user_name: Option<String>,
    pub jobs_fault: JobsFault,
    pub requests: Vec<(String, Option<String>, Option<String>)>,
}

pub type Mock = Arc<Mutex<MockState>>;

pub fn mock(recordings: Vec<(ApiVersion, Recording)>) -> Mock {
    Arc::new(Mutex::new(MockState {
        recordings,
        token: None,
        user_name: None,
        jobs_fault: JobsFault::None,
        requests: Vec::new(),
    }))
}

fn stream_body(
    s: impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static,
) -> Body {
    BodyExt::boxed(StreamBody::new(s))
}

struct ChunkStream {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A body fed by a task, for endless and slow-drip responses.
fn fed_body(
    chunks: impl FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> tokio::task::JoinHandle<()>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    chunks(tx);
    stream_body(ChunkStream { rx })
}

pub fn handler(state: Mock) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        let state = state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let token = req
                .headers()
                .get("X-SLURM-USER-TOKEN")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let user = req
                .headers()
                .get("X-SLURM-USER-NAME")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (expected, fault, body) = {
                let mut s = state.lock().unwrap();
                s.requests.push((path.clone(), token.clone(), user.clone()));
                let body = s.recordings.iter().find_map(|(_, r)| r.get(&path).cloned());
                (s.token.clone(), s.jobs_fault.clone(), body)
            };
            if let Some(t) = expected {
                match token {
                    None => {
                        return full(
                            StatusCode::UNAUTHORIZED,
                            "text/plain",
                            "Authentication failure",
                        )
                    }
                    Some(given) if given != t => {
                        return full(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "application/json",
                            r#"{"errors":[{"error_number":1007,"error":"Protocol authentication error"}]}"#,
                        )
                    }
                    _ => {}
                }
            }
            let Some(body) = body else {
                return full(StatusCode::NOT_FOUND, "text/plain", "Unable to find path");
            };
            if !path.contains("/jobs") {
                return full(StatusCode::OK, "application/json", body);
            }
            match fault {
                JobsFault::None => full(StatusCode::OK, "application/json", body),
                JobsFault::Html => full(
                    StatusCode::OK,
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                ),
                JobsFault::Truncated => full(
                    StatusCode::OK,
                    "application/json",
                    body.slice(..body.len() / 2),
                ),
                JobsFault::Status(code, ct, text) => {
                    full(StatusCode::from_u16(code).unwrap(), ct, text)
                }
                JobsFault::Stall(d) => {
                    tokio::time::sleep(d).await;
                    full(StatusCode::OK, "application/json", body)
                }
                JobsFault::Endless => {
                    let mut r = Response::new(fed_body(|tx| {
                        tokio::spawn(async move {
                            let _ = tx.send(Bytes::from_static(b"{\"jobs\":[")).await;
                            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                            while tx.send(chunk.clone()).await.is_ok() {}
                        })
                    }));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                JobsFault::SlowDrip(every) => {
                    let mut r = Response::new(fed_body(move |tx| {
                        tokio::spawn(async move {
                            for b in body.iter() {
                                tokio::time::sleep(every).await;
                                if tx.send(Bytes::copy_from_slice(&[*b])).await.is_err() {
                                    return;
                                }
                            }
                        })
                    }));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
            }
        })
    })
}

/// Starts the mock on a loopback TCP port and returns its URL.
pub async fn start_tcp(state: Mock) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(replay::serve_tcp(listener, handler(state)));
    format!("http://{addr}")
}

pub fn client(url: &str, token: TokenSource, timeout: Duration, max: u64) -> Arc<Client> {
    Arc::new(
        Client::new(ClientOptions {
            url: url.to_string(),
            token,
            user_name: None,
            timeout,
            max_body_bytes: max,
            ca_file: None,
        })
        .unwrap(),
    )
}

pub fn poller(client: Arc<Client>) -> Poller {
    Poller::new(client, PollOptions::default())
}

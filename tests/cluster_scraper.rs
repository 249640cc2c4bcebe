//! The cluster scraper end to end against a mock slurmrestd on loopback:
//! auth headers, unix socket, version detection, token rotation, and the
//! fault matrix (each fault leaves `/metrics` answering with the last good data).

mod common;
#[path = "support/pki.rs"]
mod pki;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::cluster::spawn_poll_loop;
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::server::{self, Publisher};
use slurm_gpu_exporter::slurmrestd::client::{Secret, TokenSource};
use slurm_gpu_exporter::slurmrestd::ApiVersion;

const V44: ApiVersion = ApiVersion::V0044;

fn up(set: &MetricSet, endpoint: &str) -> Option<f64> {
    set.value("slurm_exporter_endpoint_up", &[("endpoint", endpoint)])
}

fn errors(set: &MetricSet, endpoint: &str, kind: &str) -> f64 {
    set.sum(
        "slurm_exporter_errors_total",
        &[("endpoint", endpoint), ("kind", kind)],
    )
}

/// A poller with a 5 s timeout and a 64 MiB body limit.
fn default_poller(url: &str, token: TokenSource) -> Poller {
    poller(client(url, token, Duration::from_secs(5), 64 << 20))
}

fn running_jobs(set: &MetricSet) -> f64 {
    set.sum("slurm_cluster_jobs", &[("state", "running")])
}

#[tokio::test]
async fn detects_newest_version_and_sends_auth_headers() {
    let state = mock(vec![
        (ApiVersion::V0041, recording(ApiVersion::V0041)),
        (V44, recording(V44)),
    ]);
    state.lock().unwrap().token = Some("tok-123".into());
    let url = start_tcp(state.clone()).await;
    let client = Arc::new(
        slurm_gpu_exporter::slurmrestd::client::Client::new(
            slurm_gpu_exporter::slurmrestd::client::ClientOptions {
                url,
                token: TokenSource::Static(Secret::new("tok-123")),
                user_name: Some("root".into()),
                timeout: Duration::from_secs(5),
                max_body_bytes: 64 << 20,
                ca_file: None,
            },
        )
        .unwrap(),
    );
    let mut p = poller(client);
    let set = p.poll().await;
    assert_eq!(p.api_version(), Some(V44));
    assert_eq!(up(&set, "jobs"), Some(1.0));
    assert_eq!(
        set.value("slurm_exporter_api_version_info", &[("version", "v0.0.44")]),
        Some(1.0)
    );
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(1.0));
    let s = state.lock().unwrap();
    assert!(s
        .requests
        .iter()
        .all(|(_, t, u)| t.as_deref() == Some("tok-123") && u.as_deref() == Some("root")));
    // Newest first: v0.0.45 was probed and refused before v0.0.44 answered.
    assert!(s
        .requests
        .iter()
        .any(|(p, _, _)| p.starts_with("/slurm/v0.0.45/ping")));
    assert!(!s
        .requests
        .iter()
        .any(|(p, _, _)| p.starts_with("/slurm/v0.0.41/")));
}

#[tokio::test]
async fn pinned_version_skips_detection() {
    let state = mock(vec![(ApiVersion::V0038, recording(ApiVersion::V0038))]);
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(5), 64 << 20),
        PollOptions {
            pinned_version: Some(ApiVersion::V0038),
            ..PollOptions::default()
        },
    );
    let set = p.poll().await;
    assert_eq!(up(&set, "jobs"), Some(1.0));
    assert!(running_jobs(&set) > 0.0);
    // v0.0.38 has no /shares: it is not polled, so it cannot fail.
    assert_eq!(up(&set, "shares"), None);
    let s = state.lock().unwrap();
    assert!(!s.requests.iter().any(|(p, _, _)| p.contains("/ping")));
}

#[tokio::test]
async fn unix_socket_transport() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("slurmrestd.socket");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let state = mock(vec![(V44, recording(V44))]);
    tokio::spawn(slurm_gpu_exporter::testkit::replay::serve_unix(
        listener,
        handler(state),
    ));
    let url = format!("unix://{}", sock.display());
    let mut p = default_poller(&url, TokenSource::None);
    let set = p.poll().await;
    assert_eq!(up(&set, "nodes"), Some(1.0));
    assert!(set.sum("slurm_cluster_nodes", &[]) > 0.0);
}

#[tokio::test]
async fn token_file_rotation_applies_on_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "SLURM_JWT=first\n").unwrap();
    let state = mock(vec![(V44, recording(V44))]);
    state.lock().unwrap().token = Some("first".into());
    let url = start_tcp(state.clone()).await;
    let mut p = poller(client(
        &url,
        TokenSource::File(token_path.clone()),
        Duration::from_secs(5),
        64 << 20,
    ));
    assert_eq!(up(&p.poll().await, "jobs"), Some(1.0));

    // The server rotates first; the exporter still has the old token.
    state.lock().unwrap().token = Some("second".into());
    let set = p.poll().await;
    assert_eq!(up(&set, "jobs"), Some(0.0));
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(0.0));

    // The Secret is updated the way kubelet does it: write elsewhere, rename over.
    let tmp = dir.path().join("token.new");
    std::fs::File::create(&tmp)
        .unwrap()
        .write_all(b"second")
        .unwrap();
    std::fs::rename(&tmp, &token_path).unwrap();
    let set = p.poll().await;
    assert_eq!(up(&set, "jobs"), Some(1.0));

    // A vanished token file keeps the last token and is counted.
    std::fs::remove_file(&token_path).unwrap();
    let set = p.poll().await;
    assert_eq!(up(&set, "jobs"), Some(1.0));
    assert_eq!(
        set.value("slurm_exporter_token_read_errors_total", &[]),
        Some(1.0)
    );
}

/// Runs one good poll, then one poll with `fault`, and checks the fault is
/// reported while the last good queue data is still served, marked stale.
async fn fault_case(fault: JobsFault, kind: &str, timeout: Duration, max: u64) -> MetricSet {
    let state = mock(vec![(V44, recording(V44))]);
    let url = start_tcp(state.clone()).await;
    let mut p = poller(client(&url, TokenSource::None, timeout, max));
    let good = p.poll().await;
    let good_running = running_jobs(&good);
    assert!(good_running > 0.0);

    state.lock().unwrap().jobs_fault = fault.clone();
    let started = Instant::now();
    let bad = p.poll().await;
    assert!(
        started.elapsed() < timeout + Duration::from_secs(3),
        "{fault:?}: poll took {:?}",
        started.elapsed()
    );
    assert_eq!(up(&bad, "jobs"), Some(0.0), "{fault:?}");
    assert_eq!(errors(&bad, "jobs", kind), 1.0, "{fault:?} -> {kind}");
    assert_eq!(
        bad.value("slurm_exporter_endpoint_stale", &[("endpoint", "jobs")]),
        Some(1.0)
    );
    assert_eq!(running_jobs(&bad), good_running, "last good data is kept");
    // The other endpoints are unaffected.
    assert_eq!(up(&bad, "nodes"), Some(1.0));

    // Recovery on the next good poll.
    state.lock().unwrap().jobs_fault = JobsFault::None;
    let again = p.poll().await;
    assert_eq!(up(&again, "jobs"), Some(1.0));
    assert_eq!(
        again.value("slurm_exporter_endpoint_stale", &[("endpoint", "jobs")]),
        Some(0.0)
    );
    bad
}

#[tokio::test]
async fn fault_html_body() {
    fault_case(
        JobsFault::Html,
        "not_json",
        Duration::from_secs(5),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_truncated_json() {
    fault_case(
        JobsFault::Truncated,
        "parse",
        Duration::from_secs(5),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_http_500() {
    fault_case(
        JobsFault::Status(
            500,
            "application/json",
            r#"{"errors":[{"error":"Unspecified error"}]}"#,
        ),
        "http_5xx",
        Duration::from_secs(5),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_http_401() {
    fault_case(
        JobsFault::Status(401, "text/plain", "Authentication failure"),
        "auth",
        Duration::from_secs(5),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_stall_is_bounded_by_the_timeout() {
    fault_case(
        JobsFault::Stall(Duration::from_secs(30)),
        "timeout",
        Duration::from_secs(1),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_slow_drip_is_bounded_by_the_timeout() {
    fault_case(
        JobsFault::SlowDrip(Duration::from_millis(5)),
        "timeout",
        Duration::from_secs(1),
        64 << 20,
    )
    .await;
}

#[tokio::test]
async fn fault_endless_body_hits_the_size_limit() {
    fault_case(
        JobsFault::Endless,
        "too_large",
        Duration::from_secs(10),
        8 << 20,
    )
    .await;
}

#[tokio::test]
async fn refused_connection_and_unknown_version() {
    // Nothing listens on this port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let mut p = poller(client(
        &url,
        TokenSource::None,
        Duration::from_secs(2),
        1 << 20,
    ));
    let set = p.poll().await;
    assert_eq!(up(&set, "version"), Some(0.0));
    assert_eq!(errors(&set, "version", "connect"), 1.0);
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(0.0));

    // A server that speaks no API version this exporter knows.
    let state = mock(vec![]);
    let url = start_tcp(state).await;
    let mut p = poller(client(
        &url,
        TokenSource::None,
        Duration::from_secs(2),
        1 << 20,
    ));
    let set = p.poll().await;
    assert_eq!(p.api_version(), None);
    assert_eq!(errors(&set, "version", "not_found"), 1.0);
}

/// A pinned API version the server does not serve (404 on every path) is
/// diagnosed once: the known versions it does serve are probed and logged,
/// `version_not_served` is counted, and later polls cost one `/ping` each
/// instead of a 404 from every endpoint, until the version is served again.
#[tokio::test]
async fn pinned_version_not_served_is_said_plainly() {
    let state = mock(vec![(ApiVersion::V0042, recording(ApiVersion::V0042))]);
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(5), 64 << 20),
        PollOptions {
            pinned_version: Some(V44),
            ..PollOptions::default()
        },
    );
    let set = p.poll().await;
    assert_eq!(p.pinned_version_unserved(), Some(&[ApiVersion::V0042][..]));
    assert_eq!(errors(&set, "version", "version_not_served"), 1.0);
    assert_eq!(up(&set, "version"), Some(0.0));
    assert_eq!(up(&set, "jobs"), Some(0.0));
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(0.0));
    let n = state.lock().unwrap().requests.len();
    let set = p.poll().await;
    let reqs: Vec<String> = state.lock().unwrap().requests[n..]
        .iter()
        .map(|r| r.0.clone())
        .collect();
    assert_eq!(reqs, ["/slurm/v0.0.44/ping/"]);
    assert_eq!(errors(&set, "version", "version_not_served"), 2.0);
    assert_eq!(
        errors(&set, "jobs", "not_found"),
        1.0,
        "no new 404s counted"
    );
    assert_eq!(up(&set, "jobs"), Some(0.0));
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(0.0));
    // slurmrestd reconfigured to serve it: back to normal on the next poll.
    state.lock().unwrap().recordings.push((V44, recording(V44)));
    let set = p.poll().await;
    assert_eq!(p.pinned_version_unserved(), None);
    assert_eq!(up(&set, "version"), Some(1.0));
    assert_eq!(up(&set, "jobs"), Some(1.0));
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(1.0));
}

#[tokio::test]
async fn version_change_between_polls_is_redetected() {
    let state = mock(vec![(V44, recording(V44))]);
    let url = start_tcp(state.clone()).await;
    let mut p = default_poller(&url, TokenSource::None);
    p.poll().await;
    assert_eq!(p.api_version(), Some(V44));
    // slurmrestd is upgraded/downgraded: v0.0.44 disappears, v0.0.41 appears.
    state.lock().unwrap().recordings = vec![(ApiVersion::V0041, recording(ApiVersion::V0041))];
    let set = p.poll().await;
    assert_eq!(errors(&set, "jobs", "not_found"), 1.0);
    let set = p.poll().await;
    assert_eq!(p.api_version(), Some(ApiVersion::V0041));
    assert_eq!(up(&set, "jobs"), Some(1.0));
}

/// `/metrics` answers from memory while slurmrestd stalls, and the number
/// of polls does not depend on the number of scrapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_while_slurmrestd_stalls() {
    let state = mock(vec![(V44, recording(V44))]);
    let url = start_tcp(state.clone()).await;
    let publisher = Publisher::new();
    let p = poller(client(
        &url,
        TokenSource::None,
        Duration::from_secs(3),
        64 << 20,
    ));
    let poll = spawn_poll_loop(p, Duration::from_millis(500), publisher.clone());
    let web = server::WebServer::bind(&local_web(), "127.0.0.1:0")
        .await
        .unwrap();
    let addr = web.local_addr().unwrap();
    let srv = tokio::spawn(web.serve("test", vec![publisher.clone()], std::future::pending()));
    // First poll lands.
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.latest().is_none() {
        assert!(Instant::now() < deadline, "no first poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    state.lock().unwrap().jobs_fault = JobsFault::Stall(Duration::from_secs(30));
    let polls_before = state.lock().unwrap().requests.len();
    for _ in 0..40 {
        let started = Instant::now();
        let body = http_get(&addr.to_string(), "/metrics").await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            body.contains("slurm_cluster_jobs{"),
            "last good data still served"
        );
    }
    let requests = state.lock().unwrap().requests.len() - polls_before;
    // 40 scrapes in a few seconds: at most a handful of poll cycles (5 requests each).
    assert!(
        requests <= 6 * 5,
        "{requests} slurmrestd requests for 40 scrapes"
    );
    let health = http_get(&addr.to_string(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    poll.abort();
    srv.abort();
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&out).to_string()
}

/// The token never reaches a log line, even when requests fail with it.
#[tokio::test]
async fn token_never_logged() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.S1GNATURE";
    let state = mock(vec![(V44, recording(V44))]);
    // The server echoes the presented token back in its error body.
    state.lock().unwrap().jobs_fault = JobsFault::Status(
        500,
        "text/plain",
        "bad token eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.S1GNATURE",
    );
    let url = start_tcp(state).await;
    let client = client(
        &url,
        TokenSource::Static(Secret::new(secret)),
        Duration::from_secs(2),
        1 << 20,
    );
    let mut p = poller(client.clone());
    // Tests in this binary run in parallel, and one that hits the warning's
    // callsite with no subscriber can leave it cached as disabled for a
    // moment: poll again (a few times at most) until the warning is captured.
    for _ in 0..5 {
        tracing::callsite::rebuild_interest_cache();
        p.poll().await;
        if String::from_utf8_lossy(&buf.0.lock().unwrap()).contains("slurmrestd poll failed") {
            break;
        }
    }
    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).to_string();
    assert!(logs.contains("slurmrestd poll failed"), "{logs}");
    assert!(!logs.contains(secret), "token leaked into logs: {logs}");
    assert!(!format!("{client:?}").contains(secret));
}

/// https:// slurmrestd with a private CA given by --slurmrestd-ca-file; the
/// same server is refused without the CA.
#[tokio::test]
async fn https_transport_with_private_ca() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = pki::Ca::new("slurm CA");
    let (cert, key) = ca.leaf(
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
        .unwrap()
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = mock(vec![(V44, recording(V44))]);
    let h = handler(state);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, h) = (acceptor.clone(), h.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    slurm_gpu_exporter::testkit::replay::serve_connection(tls, h).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let url = format!("https://localhost:{port}");
    let with_ca = |ca_file: Option<std::path::PathBuf>| {
        Arc::new(
            slurm_gpu_exporter::slurmrestd::client::Client::new(
                slurm_gpu_exporter::slurmrestd::client::ClientOptions {
                    url: url.clone(),
                    token: TokenSource::None,
                    user_name: None,
                    timeout: Duration::from_secs(5),
                    max_body_bytes: 64 << 20,
                    ca_file,
                },
            )
            .unwrap(),
        )
    };
    let mut p = poller(with_ca(Some(ca_file)));
    let set = p.poll().await;
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(1.0));
    assert!(running_jobs(&set) > 0.0);

    let mut p = poller(with_ca(None));
    let set = p.poll().await;
    assert_eq!(
        errors(&set, "version", "tls"),
        1.0,
        "an unknown CA is refused"
    );
}

/// Prometheus asks for gzip and gets the compressed snapshot; a client
/// without gzip gets the same bytes uncompressed; OpenMetrics likewise.
#[tokio::test]
async fn metrics_gzip_negotiation() {
    use std::io::Read as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let state = mock(vec![(V44, recording(V44))]);
    let url = start_tcp(state).await;
    let mut p = default_poller(&url, TokenSource::None);
    let set = p.poll().await;
    let publisher = Publisher::new();
    publisher.publish(&set);
    let web = server::WebServer::bind(&local_web(), "127.0.0.1:0")
        .await
        .unwrap();
    let addr = web.local_addr().unwrap();
    let srv = tokio::spawn(web.serve("test", vec![publisher], std::future::pending()));
    async fn raw(addr: std::net::SocketAddr, headers: &str) -> (String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&out[..split]).to_lowercase(),
            out[split + 4..].to_vec(),
        )
    }
    let gunzip = |b: &[u8]| {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let (head, body) = raw(addr, "Accept-Encoding: gzip, deflate\r\n").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(gunzip(&body), set.encode_text());
    let (head, body) = raw(addr, "").await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(String::from_utf8(body).unwrap(), set.encode_text());
    let (head, _) = raw(addr, "Accept-Encoding: gzip;q=0, identity\r\n").await;
    assert!(!head.contains("content-encoding"), "{head}");
    let (head, body) = raw(
        addr,
        "Accept: application/openmetrics-text;version=1.0.0\r\nAccept-Encoding: gzip\r\n",
    )
    .await;
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert_eq!(gunzip(&body), set.encode_openmetrics());
    srv.abort();
}

/// A JWT as `scontrol token` makes it (HS256; the signature is never checked here).
fn jwt_with_exp(exp: i64) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"exp":{exp},"iat":{},"sun":"root"}}"#,
            exp - 60
        ))
    )
}

/// Slurm 22.05 answers an expired JWT with HTTP 500 "Unspecified error"
/// (seen live): the token's own `exp` tells it from other 500s, so the
/// failure is counted as `auth`. The expiry is exported for alerting.
#[tokio::test]
async fn expired_token_is_an_auth_error_whatever_the_status() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let unspecified = JobsFault::Status(
        500,
        "application/json",
        r#"{"errors":[{"error":"Unspecified error","errno":-1}],"jobs":[]}"#,
    );
    for (exp, kind) in [(now - 10, "auth"), (now + 86_400, "http_5xx")] {
        let token = jwt_with_exp(exp);
        let state = mock(vec![(V44, recording(V44))]);
        state.lock().unwrap().token = Some(token.clone());
        let url = start_tcp(state.clone()).await;
        let mut p = default_poller(&url, TokenSource::Static(Secret::new(token)));
        let good = p.poll().await;
        assert_eq!(
            good.value("slurm_exporter_token_expiry_timestamp_seconds", &[]),
            Some(exp as f64)
        );
        state.lock().unwrap().jobs_fault = unspecified.clone();
        let bad = p.poll().await;
        assert_eq!(up(&bad, "jobs"), Some(0.0));
        assert_eq!(
            errors(&bad, "jobs", kind),
            1.0,
            "exp {exp} -> {kind}: {}",
            bad.encode_text()
                .lines()
                .filter(|l| l.contains("errors_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Without a JWT (no claims) the series is absent.
    let state = mock(vec![(V44, recording(V44))]);
    let url = start_tcp(state).await;
    let mut p = default_poller(&url, TokenSource::None);
    let set = p.poll().await;
    assert_eq!(
        set.value("slurm_exporter_token_expiry_timestamp_seconds", &[]),
        None
    );
}

/// The web flags of a server on a free local port, without a web config.
fn local_web() -> server::WebArgs {
    server::WebArgs {
        listen_address: Some("127.0.0.1:0".to_string()),
        telemetry_path: "/metrics".to_string(),
        config_file: None,
    }
}

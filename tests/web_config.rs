//! `--web.config.file`: TLS, client certificates and basic auth against a
//! real TLS client, with certificates generated at test time.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
#[path = "support/pki.rs"]
mod pki;

use pki::Ca;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use slurm_gpu_exporter::cli::WebArgs;
use slurm_gpu_exporter::exposition::{Kind, MetricDesc, MetricSet};
use slurm_gpu_exporter::server::{Publisher, WebConfig, WebServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A CA, a server certificate for 127.0.0.1 and localhost, and files for them.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA");
        let (cert, key) = ca.leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::write(dir.path().join("server.crt"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        Pki { dir, ca }
    }

    fn write_config(&self, yaml: &str) -> std::path::PathBuf {
        let p = self.dir.path().join("web-config.yml");
        std::fs::write(&p, yaml).unwrap();
        p
    }

    fn client(&self, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca.cert_pem, identity)
    }
}

fn client_config(ca_pem: &str, identity: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
                .unwrap()
                .unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(cfg)
}

fn metrics() -> Publisher {
    let mut set = MetricSet::new();
    const UP: MetricDesc = MetricDesc {
        name: "slurm_test_up",
        help: "Test metric.",
        kind: Kind::Gauge,
        labels: &["cluster"],
    };
    set.add(&UP, vec![("cluster", "c1".to_string())], 1.0);
    let p = Publisher::new();
    p.publish(&set);
    p
}

/// Starts the server the way the programs do: `WebServer::bind(&WebArgs, ..)`.
async fn start(config: Option<&Path>) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let web = WebArgs {
        listen_address: Some("127.0.0.1:0".to_string()),
        telemetry_path: "/metrics".to_string(),
        config_file: config.map(Path::to_path_buf),
    };
    let srv = WebServer::bind(&web, "127.0.0.1:0").await?;
    let addr = srv.local_addr()?;
    let task = tokio::spawn(async move {
        srv.serve("test", vec![metrics()], std::future::pending())
            .await
            .unwrap();
    });
    Ok((addr, task))
}

struct Resp {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

/// One connection, one request per `paths` entry (keep-alive); `Err` on any
/// TLS or HTTP failure.
async fn requests(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    user: Option<(&str, &str)>,
    paths: &[&str],
) -> Result<Vec<Resp>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    match tls {
        None => send(tcp, user, paths).await,
        Some(cfg) => {
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            send(stream, user, paths).await
        }
    }
}

async fn send<S>(io: S, user: Option<(&str, &str)>, paths: &[&str]) -> Result<Vec<Resp>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut out = Vec::new();
    for path in paths {
        let mut req = http::Request::get(*path).header("host", "127.0.0.1");
        if let Some((u, p)) = user {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("authorization", format!("Basic {b}"));
        }
        tx.ready().await.map_err(|e| format!("HTTP: {e}"))?;
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            tx.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
        )
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        out.push(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(out)
}

async fn get(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    user: Option<(&str, &str)>,
    path: &str,
) -> Result<Resp, String> {
    Ok(requests(addr, tls, user, &[path]).await?.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth() {
    let pki = Pki::new();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let cfg = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{hash}'\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    ));
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();
    let tls = Some(pki.client(None));

    let ok = get(
        addr,
        tls.clone(),
        Some(("prometheus", "s3cret")),
        "/metrics",
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert!(
        ok.body.contains("slurm_test_up{cluster=\"c1\"} 1"),
        "{}",
        ok.body
    );
    assert_eq!(ok.headers["x-content-type-options"], "nosniff");

    for user in [
        Some(("prometheus", "wrong")),
        Some(("nobody", "s3cret")),
        Some(("", "")),
        None,
    ] {
        let r = get(addr, tls.clone(), user, "/metrics").await.unwrap();
        assert_eq!(r.status, 401, "{user:?}");
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("Basic"), "{www}");
        assert!(!r.body.contains("slurm_test_up"));
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    // The landing page is protected too; the probes are not.
    let r = get(addr, tls.clone(), None, "/").await.unwrap();
    assert_eq!(r.status, 401);
    let r = get(addr, tls.clone(), None, "/healthz").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = get(addr, tls.clone(), None, "/readyz").await.unwrap();
    assert_eq!(r.status, 200);

    // A client that does not trust the CA fails the handshake...
    let other = client_config(&Ca::new("other CA").cert_pem, None);
    let e = get(addr, Some(other), None, "/healthz")
        .await
        .err()
        .unwrap();
    assert!(e.contains("TLS"), "{e}");
    // ...and the server goes on serving.
    let ok = get(addr, tls, Some(("prometheus", "s3cret")), "/metrics")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_fails() {
    let pki = Pki::new();
    let cfg =
        pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();

    // hyper over plain TCP: no metrics.
    let r = get(addr, None, None, "/metrics").await.unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("HTTP request to an HTTPS server"),
        "{}",
        r.body
    );
    // Raw bytes: Go's answer, then the connection closes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.0 400"), "{out}");
    assert!(!out.contains("slurm_test_up"));

    // Garbage that is not HTTP either: the connection is dropped.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x00\x01\x02\x03 not tls\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&buf).contains("slurm_test_up"));

    // Still serving TLS.
    let r = get(addr, Some(pki.client(None)), None, "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates() {
    let pki = Pki::new();
    let clients = Ca::new("client CA");
    std::fs::write(pki.dir.path().join("clients.crt"), &clients.cert_pem).unwrap();
    let good = clients.leaf(&["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);
    let rogue = Ca::new("rogue CA").leaf(&["prometheus"], ExtendedKeyUsagePurpose::ClientAuth);

    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n",
    );
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();
    // TLS 1.3 reports a rejected client certificate on the first read, so
    // the whole request must fail, whichever step it is.
    assert!(get(addr, Some(pki.client(None)), None, "/metrics")
        .await
        .is_err());
    assert!(get(
        addr,
        Some(pki.client(Some(rogue.clone()))),
        None,
        "/metrics"
    )
    .await
    .is_err());
    let r = get(addr, Some(pki.client(Some(good.clone()))), None, "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("slurm_test_up"));

    // VerifyClientCertIfGiven: no certificate is fine, a bad one is not.
    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.crt\n  \
         min_version: TLS13\n",
    );
    let (addr, _srv2) = start(Some(&cfg)).await.unwrap();
    for (identity, ok) in [(None, true), (Some(good), true), (Some(rogue), false)] {
        let r = get(addr, Some(pki.client(identity)), None, "/metrics").await;
        assert_eq!(r.is_ok(), ok, "{:?}", r.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_and_inline_pem() {
    let pki = Pki::new();
    let (cert, key) = pki
        .ca
        .leaf(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let cfg = pki.write_config(&format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}  min_version: TLS12\n  max_version: TLS12\n  \
         cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n  \
         curve_preferences: [X25519, CurveP256]\n",
        indent(&cert),
        indent(&key)
    ));
    let web = WebConfig::load(&cfg).unwrap();
    assert!(web.tls_enabled());
    assert!(
        web.warnings().iter().any(|w| w.contains("CBC_SHA")),
        "{:?}",
        web.warnings()
    );
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client(None))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite()),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_do_not_block_others() {
    let pki = Pki::new();
    let cfg =
        pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();

    // Ten clients connect and say nothing.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A real client is still served (liveness, with a generous bound).
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        get(addr, Some(pki.client(None)), None, "/metrics"),
    )
    .await
    .expect("served while ten handshakes stall")
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_closes_idle_connections() {
    use slurm_gpu_exporter::server::tls::TlsListener;
    let pki = Pki::new();
    let cfg =
        pki.write_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let tls = WebConfig::load(&cfg).unwrap().rustls_config().unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = TlsListener::new(tcp, tls, Duration::from_millis(300)).unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// 50 scrapers at once with basic auth over TLS: after the first check of a
/// password, requests are served from the verification cache, so the number
/// of bcrypt runs (each ~100 ms at cost 10) does not grow with scrapes.
/// Latency is measured by the benchmarks, not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_scrapers_with_basic_auth() {
    let pki = Pki::new();
    let hash = bcrypt::hash("s3cret", 10).unwrap();
    let cfg = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();
    let before = slurm_gpu_exporter::server::auth::bcrypt_verifications();
    let tls = pki.client(None);
    let per_client = 20;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await
                .unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            use base64::Engine as _;
            let auth = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("prometheus:s3cret")
            );
            let mut ok = 0;
            for _ in 0..per_client {
                let req = http::Request::get("/metrics")
                    .header("host", "127.0.0.1")
                    .header("authorization", &auth)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                tx.ready().await.unwrap();
                let resp = tx.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
                ok += 1;
            }
            ok
        }));
    }
    let mut served = 0;
    for t in tasks {
        served += t.await.unwrap();
    }
    assert_eq!(served, 50 * per_client);
    let runs = slurm_gpu_exporter::server::auth::bcrypt_verifications() - before;
    // Concurrent first requests share one verification; other tests in this
    // binary may run a few of their own at the same time.
    assert!(runs <= 8, "{runs} bcrypt runs for {served} requests");
}

#[test]
fn bad_config_files_are_rejected_with_clear_messages() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let other = pki.ca.leaf(&["x"], ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.join("other.key"), &other.1).unwrap();
    let cases: Vec<(String, &[&str])> = vec![
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            &["cert_file", "missing.crt"],
        ),
        (
            "tls_server_config:\n  key_file: server.key\n".into(),
            &["certificate is required"],
        ),
        ("tls_server_config: [oops\n".into(), &["YAML"]),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_fiel: x\n"
                .into(),
            &["unknown field `cert_fiel`"],
        ),
        ("basic_auth_user:\n  a: b\n".into(), &["unknown field `basic_auth_user`"]),
        (
            "basic_auth_users:\n  alice: hunter2\n".into(),
            &["alice", "bcrypt"],
        ),
        (
            "tls_server_config:\n  cert_file: ca.crt\n  key_file: server.key\n".into(),
            &["certificate and key"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(),
            &["certificate and key"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".into(),
            &["key", "PRIVATE KEY"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n".into(),
            &["client_ca_file"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n".into(),
            &["NoClientCert"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n".into(),
            &["not supported"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n".into(),
            &["unknown client_auth_type"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS11\n".into(),
            &["max_version"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n".into(),
            &["min_version"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: SSL3\n".into(),
            &["unknown TLS version"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n".into(),
            &["cipher_suites"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [Curve25519x]\n".into(),
            &["curve"],
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_allowed_sans: [a]\n".into(),
            &["client_allowed_sans"],
        ),
        (
            format!("basic_auth_users:\n  alice: '{hash}'\nhttp_server_config:\n  headers:\n    Server: x\n"),
            &["Server", "cannot be configured"],
        ),
    ];
    for (yaml, wants) in cases {
        let path = pki.write_config(&yaml);
        let e = format!("{:#}", WebConfig::load(&path).unwrap_err());
        assert!(e.contains("web-config.yml"), "{e}");
        for w in wants {
            assert!(e.contains(w), "{yaml:?}: {e:?} lacks {w:?}");
        }
    }
    let e = format!("{:#}", WebConfig::load(&dir.join("nope.yml")).unwrap_err());
    assert!(e.contains("cannot read") && e.contains("nope.yml"), "{e}");
}

#[tokio::test]
async fn bad_config_stops_the_server_before_it_listens() {
    let pki = Pki::new();
    let cfg = pki.write_config("basic_auth_users:\n  alice: plain\n");
    let e = format!("{:#}", start(Some(&cfg)).await.err().unwrap());
    assert!(e.contains("bcrypt"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_plain_http_and_no_config() {
    let pki = Pki::new();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let cfg = pki.write_config(&format!(
        "basic_auth_users:\n  alice: '{hash}'\nrate_limit:\n  interval: 1m\n  burst: 3\n"
    ));
    let web = WebConfig::load(&cfg).unwrap();
    assert!(!web.tls_enabled() && web.basic_auth_enabled());
    let (addr, _srv) = start(Some(&cfg)).await.unwrap();
    let statuses: Vec<u16> = requests(
        addr,
        None,
        Some(("alice", "pw")),
        &["/metrics", "/metrics", "/metrics", "/metrics"],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);

    // Without a config file: plain HTTP, no auth, as before.
    let (addr, _srv) = start(None).await.unwrap();
    let r = get(addr, None, None, "/metrics").await.unwrap();
    assert_eq!(r.status, 200);
}

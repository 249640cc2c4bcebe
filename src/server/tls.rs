//! TLS for the metrics server: builds the rustls server config from
//! `tls_server_config`, and a listener that does handshakes concurrently
//! (bounded in time and number) in front of axum.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{NamedGroup, RootCertStore, SupportedProtocolVersion};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::web_config::RawTls;

/// Longest a client may take from connecting to finishing the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel backlog.
const MAX_HANDSHAKES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

fn parse_version(field: &str, s: &str) -> anyhow::Result<Version> {
    Ok(match s {
        "TLS10" => Version::Tls10,
        "TLS11" => Version::Tls11,
        "TLS12" => Version::Tls12,
        "TLS13" => Version::Tls13,
        _ => bail!("{field}: unknown TLS version {s:?}; use TLS10, TLS11, TLS12 or TLS13"),
    })
}

fn read_pem(
    what: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
) -> anyhow::Result<Option<Vec<u8>>> {
    match (inline, file) {
        (Some(_), Some(_)) => bail!("both {what} and {what}_file are set; use one"),
        (Some(s), None) => Ok(Some(s.as_bytes().to_vec())),
        (None, Some(p)) => {
            let p = base.join(p);
            std::fs::read(&p)
                .map(Some)
                .with_context(|| format!("{what}_file {}: cannot read", p.display()))
        }
        (None, None) => Ok(None),
    }
}

fn parse_certs(what: &str, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{what}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        bail!("{what}: no CERTIFICATE PEM block found");
    }
    Ok(certs)
}

/// Builds the rustls config; `warnings` collects settings rustls cannot honour exactly.
pub(crate) fn server_config(
    raw: &RawTls,
    base: &Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<rustls::ServerConfig> {
    let cert_pem = read_pem("cert", &raw.cert, &raw.cert_file, base)?
        .ok_or_else(|| anyhow!("a certificate is required: set cert_file (or cert)"))?;
    let key_pem = read_pem("key", &raw.key, &raw.key_file, base)?
        .ok_or_else(|| anyhow!("a private key is required: set key_file (or key)"))?;
    let certs = parse_certs("cert", &cert_pem)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| anyhow!("key: invalid PEM: {e}"))?
        .ok_or_else(|| anyhow!("key: no PRIVATE KEY PEM block found"))?;

    // Protocol versions. rustls speaks only TLS 1.2 and 1.3.
    let min = match &raw.min_version {
        Some(v) => parse_version("min_version", v)?,
        None => Version::Tls12,
    };
    let max = match &raw.max_version {
        Some(v) => parse_version("max_version", v)?,
        None => Version::Tls13,
    };
    if min > max {
        bail!("min_version {min:?} is above max_version {max:?}");
    }
    if max < Version::Tls12 {
        bail!("max_version {max:?}: TLS 1.0 and 1.1 are not supported; the lowest is TLS12");
    }
    if min < Version::Tls12 {
        warnings.push(format!(
            "tls_server_config.min_version {min:?}: TLS 1.0/1.1 are not supported, TLS 1.2 is the minimum"
        ));
    }
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if min <= Version::Tls13 && max >= Version::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let tls12 = max >= Version::Tls12 && min <= Version::Tls12;
    if tls12 {
        versions.push(&rustls::version::TLS12);
    }

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &raw.cipher_suites {
        select_cipher_suites(&mut provider, names, tls12, warnings)?;
    }
    if let Some(names) = &raw.curve_preferences {
        select_groups(&mut provider, names, warnings)?;
    }
    let provider = Arc::new(provider);

    // Client certificates.
    let ca_pem = read_pem("client_ca", &raw.client_ca, &raw.client_ca_file, base)?;
    if raw
        .client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("client_allowed_sans is not supported; restrict clients with client_ca_file instead");
    }
    let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verifier = match auth_type {
        "" | "NoClientCert" => {
            if ca_pem.is_some() {
                bail!("client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert");
            }
            WebPkiClientVerifier::no_client_auth()
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let pem = ca_pem.ok_or_else(|| {
                anyhow!("client_auth_type {auth_type} needs client_ca_file (or client_ca)")
            })?;
            let mut roots = RootCertStore::empty();
            for c in parse_certs("client_ca", &pem)? {
                roots
                    .add(c)
                    .map_err(|e| anyhow!("client_ca: unusable certificate: {e}"))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if auth_type == "VerifyClientCertIfGiven" {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| anyhow!("client_ca: cannot build a verifier: {e}"))?
        }
        "RequestClientCert" | "RequireAnyClientCert" => bail!(
            "client_auth_type {auth_type} accepts certificates without verifying them and is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        ),
        other => bail!(
            "unknown client_auth_type {other:?}; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        ),
    };

    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| anyhow!("inconsistent TLS versions and cipher suites: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("certificate and key: {e}"))?;
    cfg.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    // HTTP/1.1 only; an ALPN-aware client then knows not to try h2.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Keeps the TLS 1.3 suites (Go's `cipher_suites` does not apply to 1.3
/// either) and the listed TLS 1.2 suites in the listed order.
fn select_cipher_suites(
    provider: &mut CryptoProvider,
    names: &[String],
    tls12: bool,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let all = provider.cipher_suites.clone();
    let mut chosen: Vec<_> = all
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .copied()
        .collect();
    let mut n12 = 0;
    for name in names {
        // Go's legacy aliases without the _SHA256 suffix.
        let canonical = match name.as_str() {
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
                format!("{name}_SHA256")
            }
            _ => name.clone(),
        };
        let found = all.iter().find(|s| format!("{:?}", s.suite()) == canonical);
        match found {
            Some(s) if s.version() == &rustls::version::TLS12 => {
                if !chosen.iter().any(|c| c.suite() == s.suite()) {
                    chosen.push(*s);
                    n12 += 1;
                }
            }
            Some(_) => {}
            None if matches!(
                name.as_str(),
                "TLS_AES_128_GCM_SHA256"
                    | "TLS_AES_256_GCM_SHA384"
                    | "TLS_CHACHA20_POLY1305_SHA256"
            ) => {}
            None => warnings.push(format!(
                "tls_server_config.cipher_suites: {name} is not supported by rustls; ignored"
            )),
        }
    }
    if tls12 && n12 == 0 {
        bail!(
            "cipher_suites: none of the listed suites is supported for TLS 1.2; supported: {}",
            all.iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    provider.cipher_suites = chosen;
    Ok(())
}

fn select_groups(
    provider: &mut CryptoProvider,
    names: &[String],
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let all = provider.kx_groups.clone();
    let mut chosen = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "CurveP256" => NamedGroup::secp256r1,
            "CurveP384" => NamedGroup::secp384r1,
            "X25519" => NamedGroup::X25519,
            "CurveP521" | "X25519MLKEM768" => {
                warnings.push(format!(
                    "tls_server_config.curve_preferences: {name} is not supported here; ignored"
                ));
                continue;
            }
            other => bail!(
                "curve_preferences: unknown curve {other:?}; use CurveP256, CurveP384 or X25519"
            ),
        };
        if let Some(g) = all.iter().find(|g| g.name() == group) {
            if !chosen
                .iter()
                .any(|c: &&dyn rustls::crypto::SupportedKxGroup| c.name() == group)
            {
                chosen.push(*g);
            }
        }
    }
    if chosen.is_empty() {
        bail!("curve_preferences: none of the listed curves is supported");
    }
    provider.kx_groups = chosen;
    Ok(())
}

/// An `axum::serve::Listener` yielding completed TLS streams. A background
/// task accepts TCP connections and runs each handshake in its own task,
/// under [`HANDSHAKE_TIMEOUT`]; a failed or slow handshake only drops that
/// connection. The task stops when the listener is dropped.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            handshake_timeout,
            tx,
        ));
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task ended (it only does when aborted): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = tx.closed() => return,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // e.g. EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(handshake_timeout, handshake(acceptor, stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Answers a plain-HTTP request on the TLS port with a 400 that says so,
/// like Go's net/http; anything else goes to rustls.
async fn handshake(
    acceptor: TlsAcceptor,
    mut stream: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 1 && first[0].is_ascii_uppercase() {
        let _ = stream
            .write_all(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
                  Client sent an HTTP request to an HTTPS server.\n",
            )
            .await;
        let _ = stream.shutdown().await;
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "plain HTTP request on the TLS port",
        ));
    }
    acceptor.accept(stream).await
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

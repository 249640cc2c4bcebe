//! `--web.listen-address`, parsed the way node_exporter (Go's `net.Listen("tcp", addr)`) parses it,
//! so that the usual exporter forms work:
//!
//! | Form | Listens on |
//! |---|---|
//! | `:9342` | every interface: `[::]` dual-stack (IPv4 too), or `0.0.0.0` where IPv6 is off |
//! | `[::]:9342` | every interface, dual-stack (as Go does) |
//! | `0.0.0.0:9342` | every IPv4 interface |
//! | `127.0.0.1:9342`, `[::1]:9342` | that address |
//! | `localhost:9342`, `host.example:9342` | the name's first IPv4 address, else its first address (as Go does) |
//!
//! Rejected with a message that shows a valid form: no port (`localhost`, `9342`), an empty or
//! non-numeric port (`localhost:`, `:http`), a port above 65535, an IPv6 address without brackets
//! (`::1:9342`), IPv6 zones, and host names that are not DNS names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

/// Longest address accepted (a DNS name is at most 253 bytes).
const MAX_LEN: usize = 300;
/// Bound on resolving a host name at start.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Same backlog as std and Go (SOMAXCONN on Linux is 4096; the kernel caps it).
const BACKLOG: u32 = 1024;

const EXAMPLES: &str = "e.g. :9342, 0.0.0.0:9342, [::]:9342, localhost:9342";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenHost {
    /// `:port`: every interface.
    Any,
    Ip(IpAddr),
    /// A DNS name, resolved when binding.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: ListenHost,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListenAddressError {
    #[error("empty listen address ({EXAMPLES})")]
    Empty,
    #[error("listen address of {0} bytes is too long")]
    TooLong(usize),
    #[error("listen address {0:?} has no port: use host:port or :port ({EXAMPLES})")]
    MissingPort(String),
    #[error("listen address {addr:?}: port {port:?} is not a number from 0 to 65535")]
    BadPort { addr: String, port: String },
    #[error("listen address {0:?}: an IPv6 address needs brackets, e.g. [::]:9342 or [::1]:9342")]
    UnbracketedIpv6(String),
    #[error("listen address {addr:?}: {host:?} is not an IP address or host name ({EXAMPLES})")]
    BadHost { addr: String, host: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot resolve listen address {name}: {source}")]
    Resolve {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve listen address {name}: no answer within {RESOLVE_TIMEOUT:?}")]
    ResolveTimeout { name: String },
    #[error("listen address {name} resolves to no address")]
    NoAddress { name: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            ListenHost::Any => write!(f, ":{}", self.port),
            ListenHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            ListenHost::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            ListenHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = ListenAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses `[host]:port` (see the module docs for the accepted forms).
pub fn parse(input: &str) -> Result<ListenAddress, ListenAddressError> {
    // Environment files and YAML often carry stray blanks; nothing valid has them.
    let s = input.trim();
    if s.is_empty() {
        return Err(ListenAddressError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(ListenAddressError::TooLong(s.len()));
    }
    let owned = || s.to_string();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err(ListenAddressError::BadHost {
                addr: owned(),
                host: s.to_string(),
            });
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(if after.is_empty() {
                ListenAddressError::MissingPort(owned())
            } else {
                ListenAddressError::BadHost {
                    addr: owned(),
                    host: s.to_string(),
                }
            });
        };
        let ip: Ipv6Addr = inner.parse().map_err(|_| ListenAddressError::BadHost {
            addr: owned(),
            host: inner.to_string(),
        })?;
        (ListenHost::Ip(IpAddr::V6(ip)), port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(ListenAddressError::MissingPort(owned()));
        };
        if host.contains(':') {
            let ipv6_like = host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            return Err(if ipv6_like {
                ListenAddressError::UnbracketedIpv6(owned())
            } else {
                ListenAddressError::BadHost {
                    addr: owned(),
                    host: host.to_string(),
                }
            });
        }
        let host = if host.is_empty() {
            ListenHost::Any
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            ListenHost::Ip(IpAddr::V4(ip))
        } else if is_dns_name(host) {
            ListenHost::Name(host.to_ascii_lowercase())
        } else {
            return Err(ListenAddressError::BadHost {
                addr: owned(),
                host: host.to_string(),
            });
        };
        (host, port)
    };
    if port.is_empty() {
        return Err(ListenAddressError::MissingPort(owned()));
    }
    // Digits only: u16::from_str would also take "+80". Go's service names (":http") are not
    // supported; an exporter port is always a number.
    let port = if port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok()
    } else {
        None
    }
    .ok_or_else(|| ListenAddressError::BadPort {
        addr: owned(),
        port: port.to_string(),
    })?;
    Ok(ListenAddress { host, port })
}

/// Clap value parser: validates at argument parsing, keeps the text.
pub fn validate(s: &str) -> Result<String, String> {
    parse(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1-63 bytes, 253 bytes at most
/// (a trailing dot allowed). Rejects all-numeric names such as `1.2.3` or `9342`.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    labels_ok && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Binds the listener. `:port` tries IPv6 dual-stack first and falls back to IPv4 only where
/// the host has IPv6 off (pods with IPv6 disabled are common).
pub async fn bind(addr: &ListenAddress) -> Result<TcpListener, BindError> {
    match &addr.host {
        ListenHost::Any => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr.port);
            match listen(v6) {
                Ok(l) => Ok(l),
                Err(BindError::Listen { source, .. }) if ipv6_unavailable(&source) => {
                    tracing::debug!(error = %source, "IPv6 unavailable: listening on IPv4 only");
                    listen(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        addr.port,
                    ))
                }
                Err(e) => Err(e),
            }
        }
        ListenHost::Ip(ip) => listen(SocketAddr::new(*ip, addr.port)),
        ListenHost::Name(name) => {
            let resolved =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
                    .await
                    .map_err(|_| BindError::ResolveTimeout { name: name.clone() })?
                    .map_err(|source| BindError::Resolve {
                        name: name.clone(),
                        source,
                    })?;
            let ips: Vec<IpAddr> = resolved.map(|a| a.ip()).collect();
            // Go listens on the first IPv4 address of a name, else its first address.
            let ip = ips
                .iter()
                .find(|ip| ip.is_ipv4())
                .or_else(|| ips.first())
                .copied()
                .ok_or_else(|| BindError::NoAddress { name: name.clone() })?;
            listen(SocketAddr::new(ip, addr.port))
        }
    }
}

fn ipv6_unavailable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

fn listen(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let err = |source| BindError::Listen { addr, source };
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .map_err(err)?;
    // As std and Go do: a restarted exporter can rebind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        // `[::]` and `:port` take IPv4 connections too, whatever net.ipv6.bindv6only says.
        set_v6only(&socket, false).map_err(err)?;
    }
    socket.bind(addr).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

fn set_v6only(socket: &TcpSocket, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let value: libc::c_int = on.into();
    // SAFETY: a valid socket descriptor owned by `socket`, and a c_int option value of the
    // size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn ok(s: &str) -> ListenAddress {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn node_exporter_forms() {
        assert_eq!(
            ok(":9100"),
            ListenAddress {
                host: ListenHost::Any,
                port: 9100
            }
        );
        assert_eq!(
            ok("[::]:9342").host,
            ListenHost::Ip(Ipv6Addr::UNSPECIFIED.into())
        );
        assert_eq!(
            ok("0.0.0.0:9342").host,
            ListenHost::Ip(Ipv4Addr::UNSPECIFIED.into())
        );
        assert_eq!(
            ok("127.0.0.1:9342").host,
            ListenHost::Ip(Ipv4Addr::LOCALHOST.into())
        );
        assert_eq!(
            ok("[::1]:9342").host,
            ListenHost::Ip(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            ok("localhost:9342").host,
            ListenHost::Name("localhost".into())
        );
        assert_eq!(
            ok("GPU-001.cluster.example.:9343").host,
            ListenHost::Name("gpu-001.cluster.example.".into())
        );
        assert_eq!(ok("slurm_exporter:1").port, 1);
        assert_eq!(ok(":0").port, 0);
        assert_eq!(ok(":65535").port, 65535);
        assert_eq!(ok(" :9342\n").port, 9342);
        assert_eq!(ok("[::ffff:127.0.0.1]:9342").port, 9342);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            ":9100",
            "[::]:9342",
            "0.0.0.0:9342",
            "[::1]:1",
            "localhost:9342",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn bad_forms_have_clear_errors() {
        use ListenAddressError as E;
        type Case = (&'static str, fn(&E) -> bool, &'static str);
        let cases: &[Case] = &[
            ("", |e| matches!(e, E::Empty), "empty"),
            ("   ", |e| matches!(e, E::Empty), "empty"),
            ("9342", |e| matches!(e, E::MissingPort(_)), "no port"),
            ("localhost", |e| matches!(e, E::MissingPort(_)), "no port"),
            ("localhost:", |e| matches!(e, E::MissingPort(_)), "no port"),
            (":", |e| matches!(e, E::MissingPort(_)), "no port"),
            ("[::1]", |e| matches!(e, E::MissingPort(_)), "no port"),
            ("[::1]:", |e| matches!(e, E::MissingPort(_)), "no port"),
            (":65536", |e| matches!(e, E::BadPort { .. }), "0 to 65535"),
            (
                ":99999999999",
                |e| matches!(e, E::BadPort { .. }),
                "0 to 65535",
            ),
            (":http", |e| matches!(e, E::BadPort { .. }), "not a number"),
            (":+80", |e| matches!(e, E::BadPort { .. }), "not a number"),
            (":-1", |e| matches!(e, E::BadPort { .. }), "not a number"),
            (":93 42", |e| matches!(e, E::BadPort { .. }), "not a number"),
            (
                "::1:9342",
                |e| matches!(e, E::UnbracketedIpv6(_)),
                "needs brackets",
            ),
            (
                "::9342",
                |e| matches!(e, E::UnbracketedIpv6(_)),
                "needs brackets",
            ),
            ("[::1:9342", |e| matches!(e, E::BadHost { .. }), "not an IP"),
            ("[::1]9342", |e| matches!(e, E::BadHost { .. }), "not an IP"),
            (
                "[127.0.0.1]:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            (
                "[fe80::1%eth0]:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            (
                "256.1.1.1:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            (
                "1.2.3:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            (
                "http://localhost:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            (
                "-bad-.example:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
            ("a..b:9342", |e| matches!(e, E::BadHost { .. }), "not an IP"),
            (
                "h\u{e9}te:9342",
                |e| matches!(e, E::BadHost { .. }),
                "not an IP",
            ),
        ];
        for (input, is, words) in cases {
            let e = parse(input).expect_err(input);
            assert!(is(&e), "{input:?}: unexpected error {e:?}");
            assert!(e.to_string().contains(words), "{input:?}: {e}");
        }
        let long = format!("{}:9342", "a".repeat(400));
        assert!(matches!(parse(&long), Err(ListenAddressError::TooLong(_))));
        let label = format!("{}.example:9342", "a".repeat(64));
        assert!(matches!(
            parse(&label),
            Err(ListenAddressError::BadHost { .. })
        ));
    }

    #[test]
    fn clap_validator_keeps_text() {
        assert_eq!(validate(" :9342 ").unwrap(), ":9342");
        let e = validate("localhost").unwrap_err();
        assert!(e.contains("no port") && e.contains(":9342"), "{e}");
    }

    fn roundtrip(port: u16, connect: SocketAddr) {
        let mut c = std::net::TcpStream::connect_timeout(
            &SocketAddr::new(connect.ip(), port),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("connect {connect} port {port}: {e}"));
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"y");
    }

    async fn serve_one(l: TcpListener) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(b"y").await.unwrap();
    }

    async fn check_reachable(addr: &str, connect_to: &[IpAddr]) {
        for ip in connect_to {
            let l = bind(&ok(addr))
                .await
                .unwrap_or_else(|e| panic!("{addr}: {e}"));
            let port = l.local_addr().unwrap().port();
            let server = tokio::spawn(serve_one(l));
            let target = SocketAddr::new(*ip, 0);
            tokio::task::spawn_blocking(move || roundtrip(port, target))
                .await
                .unwrap();
            server.await.unwrap();
        }
    }

    fn ipv6_loopback_works() -> bool {
        std::net::TcpListener::bind("[::1]:0").is_ok()
    }

    #[tokio::test]
    async fn binds_every_form() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let has_v6 = ipv6_loopback_works();
        // `:port` and `[::]:port` take IPv4 connections (dual-stack, or the IPv4 fallback).
        let mut any = vec![v4];
        if has_v6 {
            any.push(v6);
        }
        check_reachable(":0", &any).await;
        if has_v6 {
            check_reachable("[::]:0", &any).await;
            check_reachable("[::1]:0", &[v6]).await;
        }
        check_reachable("0.0.0.0:0", &[v4]).await;
        check_reachable("127.0.0.1:0", &[v4]).await;
        // localhost: the first IPv4 address, as Go picks it.
        let l = bind(&ok("localhost:0")).await.unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), v4);
        check_reachable("localhost:0", &[v4]).await;
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let taken = bind(&ok("127.0.0.1:0")).await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(&ok(&format!("127.0.0.1:{port}"))).await.unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        // A name that cannot resolve (.invalid is reserved, RFC 6761).
        let e = bind(&ok("no-such-host.invalid:0")).await.unwrap_err();
        assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
        // An address of no interface here (TEST-NET-1, RFC 5737).
        let e = bind(&ok("192.0.2.1:0")).await.unwrap_err();
        assert!(
            e.to_string().contains("cannot listen on 192.0.2.1:0"),
            "{e}"
        );
    }
}

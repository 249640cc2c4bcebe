//! `--web.config.file`: the Prometheus exporter-toolkit web configuration
//! format (TLS, basic auth, response headers, rate limit), validated once at
//! start. See docs/security.md for what is honoured and what is not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::auth::BasicAuth;
use super::tls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
}

/// `tls_server_config`, field names as in exporter-toolkit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

impl RawTls {
    fn is_empty(&self) -> bool {
        self.cert.is_none()
            && self.key.is_none()
            && self.client_ca.is_none()
            && self.cert_file.is_none()
            && self.key_file.is_none()
            && self.client_auth_type.is_none()
            && self.client_ca_file.is_none()
            && self.client_allowed_sans.is_none()
            && self.min_version.is_none()
            && self.max_version.is_none()
            && self.cipher_suites.is_none()
            && self.prefer_server_cipher_suites.is_none()
            && self.curve_preferences.is_none()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<String>,
    burst: Option<u32>,
}

/// Token bucket settings: `burst` requests at once, refilled one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// The response headers exporter-toolkit lets a config set (any other is an error).
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// A validated web configuration.
pub struct WebConfig {
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) basic_auth: Option<Arc<BasicAuth>>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) rate_limit: Option<RateLimit>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the users' hashes or the key.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.basic_auth.as_ref().map(|a| a.user_count()),
            )
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebConfig {
    /// Reads and validates the file; relative paths in it are relative to
    /// the file's directory (as in exporter-toolkit). Errors name the file
    /// and the offending setting. Warnings are logged and kept in `warnings()`.
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let yaml = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read web config file {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let cfg = Self::from_yaml(&yaml, dir)
            .with_context(|| format!("invalid web config file {}", path.display()))?;
        for w in &cfg.warnings {
            tracing::warn!(file = %path.display(), "web config: {w}");
        }
        Ok(cfg)
    }

    /// Parses and validates YAML text; relative paths are joined to `base_dir`.
    pub fn from_yaml(yaml: &str, base_dir: &Path) -> anyhow::Result<WebConfig> {
        let raw: RawConfig = if is_blank_yaml(yaml) {
            RawConfig::default()
        } else {
            serde_norway::from_str(yaml).map_err(|e| anyhow!("YAML: {e}"))?
        };
        let mut warnings = Vec::new();

        let tls = match raw.tls_server_config {
            Some(t) if !t.is_empty() => Some(Arc::new(
                tls::server_config(&t, base_dir, &mut warnings).context("tls_server_config")?,
            )),
            _ => None,
        };

        let basic_auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => {
                Some(Arc::new(BasicAuth::new(users).context("basic_auth_users")?))
            }
            _ => None,
        };
        if basic_auth.is_some() && tls.is_none() {
            warnings.push(
                "basic_auth_users without tls_server_config: passwords travel in clear text"
                    .to_string(),
            );
        }

        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            if http.http2 == Some(true) {
                warnings.push(
                    "http_server_config.http2: HTTP/2 is not supported; serving HTTP/1.1"
                        .to_string(),
                );
            }
            for (name, value) in http.headers.unwrap_or_default() {
                headers.push(header(&name, &value).context("http_server_config.headers")?);
            }
        }

        let rate_limit = match raw.rate_limit {
            None => None,
            Some(r) => {
                let interval = match r.interval.as_deref() {
                    None => Duration::ZERO,
                    Some(s) => crate::duration::parse_duration(s)
                        .map_err(|e| anyhow!("rate_limit.interval: {e}"))?,
                };
                let burst = r.burst.unwrap_or(0);
                if interval.is_zero() {
                    None
                } else if burst == 0 {
                    bail!("rate_limit.burst must be at least 1 when rate_limit.interval is set");
                } else {
                    Some(RateLimit { interval, burst })
                }
            }
        };

        Ok(WebConfig {
            tls,
            basic_auth,
            headers,
            rate_limit,
            warnings,
        })
    }

    /// Whether the server speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The rustls server config, when TLS is on (for a custom listener,
    /// e.g. [`super::tls::TlsListener`]).
    pub fn rustls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }

    /// Whether requests need `Authorization: Basic`.
    pub fn basic_auth_enabled(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// Settings that were accepted but cannot be honoured exactly.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Empty or comment-only YAML is an empty config (exporter-toolkit accepts it).
fn is_blank_yaml(yaml: &str) -> bool {
    yaml.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}

fn header(name: &str, value: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let Some(canonical) = ALLOWED_HEADERS
        .iter()
        .find(|h| h.eq_ignore_ascii_case(name))
    else {
        bail!(
            "header {name:?} cannot be configured; allowed: {}",
            ALLOWED_HEADERS.join(", ")
        );
    };
    let lower = value.trim().to_ascii_lowercase();
    match *canonical {
        "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
            bail!("X-Frame-Options must be deny or sameorigin, not {value:?}")
        }
        "X-Content-Type-Options" if lower != "nosniff" => {
            bail!("X-Content-Type-Options must be nosniff, not {value:?}")
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| anyhow!("header {canonical}: invalid value {value:?}"))?;
    Ok((HeaderName::from_static(lower_static(canonical)), value))
}

fn lower_static(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> anyhow::Result<WebConfig> {
        WebConfig::from_yaml(yaml, Path::new("/nonexistent"))
    }

    fn err(yaml: &str) -> String {
        format!("{:#}", parse(yaml).unwrap_err())
    }

    #[test]
    fn empty_config_is_plain_http() {
        for y in ["", "# nothing\n", "---\n", "tls_server_config:\n", "{}"] {
            let c = parse(y).unwrap();
            assert!(!c.tls_enabled() && !c.basic_auth_enabled(), "{y:?}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(err("tls_server_config:\n  certfile: x\n").contains("unknown field `certfile`"));
        assert!(err("basic_auth: {}\n").contains("unknown field `basic_auth`"));
        assert!(err("tls_server_config: [\n").contains("YAML"));
    }

    #[test]
    fn hashes_must_be_bcrypt() {
        let e = err("basic_auth_users:\n  alice: plaintext\n");
        assert!(e.contains("alice") && e.contains("bcrypt"), "{e}");
        let h = bcrypt::hash("pw", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: '{h}'\n")).unwrap();
        assert!(c.basic_auth_enabled());
        assert!(c.warnings().iter().any(|w| w.contains("clear text")));
    }

    #[test]
    fn headers_are_restricted() {
        let c = parse(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
        )
        .unwrap();
        assert_eq!(c.headers.len(), 2);
        assert!(err("http_server_config:\n  headers:\n    X-Custom: a\n").contains("X-Custom"));
        assert!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n")
                .contains("deny or sameorigin")
        );
    }

    #[test]
    fn rate_limit() {
        let c = parse("rate_limit:\n  interval: 1s\n  burst: 20\n").unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                interval: Duration::from_secs(1),
                burst: 20
            })
        );
        assert!(parse("rate_limit:\n  interval: 0s\n  burst: 5\n")
            .unwrap()
            .rate_limit
            .is_none());
        assert!(err("rate_limit:\n  interval: 1s\n").contains("burst"));
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let e = err("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert!(e.contains("cert_file"), "{e}");
        let e = err("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
        assert!(e.contains("/nonexistent/server.crt"), "{e}");
    }
}

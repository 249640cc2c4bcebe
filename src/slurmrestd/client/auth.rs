//! Secrets and the token: where the JWT comes from, re-reading its file,
//! reading its `exp` claim, and the headers that carry it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::error::FetchError;

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

/// The token in use and the user name, sent with every request.
#[derive(Debug)]
pub(super) struct Auth {
    source: TokenSource,
    cached: Mutex<Secret>,
    /// The token file was read empty (warned once until it is not).
    pub(super) empty_token_warned: AtomicBool,
    user_name: Option<String>,
}

impl Auth {
    pub(super) fn new(source: TokenSource, user_name: Option<String>) -> Auth {
        let initial = match &source {
            TokenSource::Static(s) => s.clone(),
            _ => Secret::default(),
        };
        Auth {
            source,
            cached: Mutex::new(initial),
            empty_token_warned: AtomicBool::new(false),
            user_name,
        }
    }

    /// Re-reads the token file; on failure the previous token is kept. An
    /// empty file is read as no token, with a warning (once until it fills).
    pub(super) fn refresh(&self) -> Result<(), FetchError> {
        if let TokenSource::File(path) = &self.source {
            let raw = read_token_file(path)?;
            let empty = raw.is_empty();
            let was = self.empty_token_warned.swap(empty, Ordering::Relaxed);
            if empty && !was {
                tracing::warn!(path = %path.display(), "slurmrestd token file is empty: requests go without a token until it holds one");
            }
            *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = raw;
        }
        Ok(())
    }

    pub(super) fn token(&self) -> Secret {
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `X-SLURM-USER-TOKEN` (marked sensitive) and `X-SLURM-USER-NAME`.
    pub(super) fn apply(&self, mut b: http::request::Builder) -> http::request::Builder {
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
        b
    }

    /// `raw` with the token replaced by `<redacted>`.
    pub(super) fn scrub(&self, s: String) -> String {
        let token = self.token();
        if !token.is_empty() && s.contains(token.expose()) {
            s.replace(token.expose(), "<redacted>")
        } else {
            s
        }
    }
}

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `exp` of a JWT (`header.payload.signature`, base64url JSON payload).
pub(super) fn jwt_expiry(token: &str) -> Option<i64> {
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

pub(super) fn read_token_file(path: &Path) -> Result<Secret, FetchError> {
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

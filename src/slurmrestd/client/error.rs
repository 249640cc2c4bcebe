//! Why a request to slurmrestd failed, with a stable `kind()` for the
//! `errors_total{kind}` label.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::slurmrestd::error::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid slurmrestd URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {target} failed: {source}")]
    Tls {
        target: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to {target}: {source}")]
    Http {
        target: String,
        source: hyper::Error,
    },
    #[error("GET {path} timed out after {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("GET {path}: HTTP {status}: {snippet}")]
    Status {
        path: String,
        status: StatusCode,
        snippet: String,
        /// `errors[].error_number` (or `errno`) of a JSON error body.
        slurm_errors: Vec<i64>,
    },
    #[error("GET {path}: expected JSON, got content type {content_type:?}: {snippet}")]
    NotJson {
        path: String,
        content_type: String,
        snippet: String,
    },
    #[error(
        "GET {path}: response exceeds the {limit}-byte limit (--slurmrestd-max-response-bytes)"
    )]
    TooLarge { path: String, limit: u64 },
    #[error("GET {path}: cannot parse response: {source}")]
    Parse { path: String, source: ParseError },
    /// An error answer while the token's own `exp` claim lies in the past:
    /// Slurm 22.05 answers an expired JWT with HTTP 500 "Unspecified error",
    /// later releases with 401, so the claim is what tells it apart.
    #[error("GET {path}: HTTP {status}: the slurmrestd token expired at {expired_at} (Unix time); renew it (scontrol token, or Slinky's Token resource)")]
    TokenExpired {
        path: String,
        status: StatusCode,
        expired_at: i64,
    },
    /// A write (`POST`, `DELETE`) that slurmrestd refused, or that did not complete.
    #[error("{method} {path}: {reason}")]
    Write {
        method: http::Method,
        path: String,
        reason: String,
        slurm_errors: Vec<i64>,
    },
    #[error("cannot read token file {path:?}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FetchError {
    /// Stable label value for `errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl { .. } => "config",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Http { .. } => "http",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Status { status, .. } => match status.as_u16() {
                401 | 403 | 511 => "auth",
                404 => "not_found",
                500..=599 => "http_5xx",
                _ => "http_status",
            },
            FetchError::NotJson { .. } => "not_json",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Parse { source, .. } => match source {
                ParseError::Slurm(_) => "slurm_error",
                _ => "parse",
            },
            FetchError::TokenFile { .. } => "token",
            FetchError::Write { method, .. } => match *method {
                http::Method::POST => "post",
                http::Method::DELETE => "delete",
                _ => "write",
            },
            FetchError::TokenExpired { .. } => "auth",
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Slurm error numbers slurmrestd gave with an HTTP error status, or in
    /// a 200 whose list came back empty with `errors[]`.
    pub fn slurm_errors(&self) -> Vec<i64> {
        match self {
            FetchError::Status { slurm_errors, .. } | FetchError::Write { slurm_errors, .. } => {
                slurm_errors.clone()
            }
            FetchError::Parse {
                source: ParseError::Slurm(msg),
                ..
            } => crate::slurmrestd::body::error_numbers_in_message(msg),
            _ => Vec::new(),
        }
    }
}

use super::ApiVersion;

/// Why a slurmrestd response could not be turned into the model.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The response carried Slurm `errors[]` and no data.
    #[error("slurmrestd reported errors: {0}")]
    Slurm(String),
    /// The response had neither its data member nor `errors[]`.
    #[error("response has no `{0}` member")]
    Missing(&'static str),
    #[error("{what} is not available in API {version}")]
    Unsupported {
        what: &'static str,
        version: ApiVersion,
    },
}

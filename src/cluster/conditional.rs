//! What conditional polling (`?update_time=`) of `/jobs` and `/nodes`
//! shares: the margin for our own clock, and telling a refused query from
//! other failures.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::slurmrestd::client::FetchError;

/// Margin for an `update_time` taken from our own clock (v0.0.38): a 304 is
/// trusted only while slurmctld's clock is less than this behind ours.
pub const OWN_CLOCK_MARGIN_S: i64 = 60;

/// Slurm's `ESLURM_REST_INVALID_QUERY` ("Query empty or not RFC7320 compliant").
pub const ESLURM_REST_INVALID_QUERY: i64 = 9000;
/// Slurm's `ESLURM_DATA_CONV_FAILED` ("Parsing of … for timestamp failed").
pub const ESLURM_DATA_CONV_FAILED: i64 = 9202;

/// Whether slurmrestd refused a conditional request's query itself, as
/// 24.11 does for `?update_time=<epoch>` (`/jobs`: HTTP 422, `/nodes`: 500,
/// each with errors 9202 and 9000): sending it again can never work. A 422
/// is a refused query whatever the body says.
pub fn rejects_update_time(e: &FetchError) -> bool {
    let refused = |n: &i64| matches!(*n, ESLURM_REST_INVALID_QUERY | ESLURM_DATA_CONV_FAILED);
    match e {
        FetchError::Status { status, .. } if status.as_u16() == 422 => true,
        FetchError::Status { .. } | FetchError::Parse { .. } => {
            e.slurm_errors().iter().any(refused)
        }
        _ => false,
    }
}

/// Our clock, Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

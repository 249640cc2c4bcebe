//! `/diag` statistics. The shape is the same from v0.0.38 to v0.0.45 apart
//! from plain versus object numbers (which [`Number`] absorbs) and fields
//! that some versions lack (v0.0.38 has no `bf_last_depth`, v0.0.40 no
//! `bf_cycle_max`); those read as 0.

use std::io::Read;

use serde::Deserialize;

use super::body::{self, string_or_null};
use super::number::Number;
use super::ParseError;
use crate::model::{Diag, RpcStat};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Statistics {
    server_thread_count: Number,
    agent_queue_size: Number,
    agent_count: Number,
    dbd_agent_queue_size: Number,
    jobs_submitted: Number,
    jobs_started: Number,
    jobs_completed: Number,
    jobs_canceled: Number,
    jobs_failed: Number,
    schedule_cycle_last: Number,
    schedule_cycle_max: Number,
    schedule_cycle_mean: Number,
    schedule_cycle_total: Number,
    schedule_queue_length: Number,
    bf_active: bool,
    bf_cycle_last: Number,
    bf_cycle_max: Number,
    bf_cycle_mean: Number,
    bf_cycle_counter: Number,
    bf_last_depth: Number,
    bf_queue_len: Number,
    bf_backfilled_jobs: Number,
    rpcs_by_message_type: Option<Vec<Rpc>>,
    rpcs_by_user: Option<Vec<Rpc>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Rpc {
    #[serde(deserialize_with = "string_or_null")]
    message_type: String,
    #[serde(deserialize_with = "string_or_null")]
    user: String,
    count: Number,
    /// Microseconds.
    total_time: Number,
}

pub(crate) fn parse(body: &mut dyn Read) -> Result<Diag, ParseError> {
    let s: Statistics = body::read_member(body, "statistics", |_| false)?;
    Ok(normalize(s))
}

fn count(n: Number) -> u64 {
    n.as_u64().unwrap_or(0)
}

fn micros(n: Number) -> f64 {
    n.as_f64().filter(|v| *v >= 0.0).unwrap_or(0.0) / 1e6
}

fn rpcs(rows: Option<Vec<Rpc>>, by_user: bool) -> Vec<RpcStat> {
    rows.unwrap_or_default()
        .into_iter()
        .map(|r| RpcStat {
            name: if by_user { r.user } else { r.message_type },
            count: count(r.count),
            total_time_seconds: micros(r.total_time),
        })
        .collect()
}

fn normalize(s: Statistics) -> Diag {
    Diag {
        server_thread_count: count(s.server_thread_count),
        agent_queue_size: count(s.agent_queue_size),
        agent_count: count(s.agent_count),
        dbd_agent_queue_size: count(s.dbd_agent_queue_size),
        jobs_submitted: count(s.jobs_submitted),
        jobs_started: count(s.jobs_started),
        jobs_completed: count(s.jobs_completed),
        jobs_canceled: count(s.jobs_canceled),
        jobs_failed: count(s.jobs_failed),
        schedule_cycle_last_seconds: micros(s.schedule_cycle_last),
        schedule_cycle_max_seconds: micros(s.schedule_cycle_max),
        schedule_cycle_mean_seconds: micros(s.schedule_cycle_mean),
        schedule_cycle_total: count(s.schedule_cycle_total),
        schedule_queue_length: count(s.schedule_queue_length),
        backfill_active: s.bf_active,
        backfill_cycle_last_seconds: micros(s.bf_cycle_last),
        backfill_cycle_max_seconds: micros(s.bf_cycle_max),
        backfill_cycle_mean_seconds: micros(s.bf_cycle_mean),
        backfill_cycle_total: count(s.bf_cycle_counter),
        backfill_last_depth: count(s.bf_last_depth),
        backfill_queue_length: count(s.bf_queue_len),
        backfilled_jobs_total: count(s.bf_backfilled_jobs),
        rpcs_by_type: rpcs(s.rpcs_by_message_type, false),
        rpcs_by_user: rpcs(s.rpcs_by_user, true),
    }
}

//! v0.0.40 – v0.0.45 adapter (Slurm 23.11 – 26.05). These versions share one
//! wire shape apart from:
//!
//! * number objects `{set, infinite, number}` everywhere (all read via [`Number`]);
//! * `job_resources`: v0.0.40 keeps v0.0.38's `{nodes: "<hostlist>", allocated_nodes}`,
//!   v0.0.41+ reshaped it to `{nodes: {list, allocation: [{cpus: {count}, memory: {allocated}}]}}`;
//! * shares: `effective_usage` and `fairshare.{factor,level}` are plain floats in
//!   v0.0.40/v0.0.41 (level `4294967294.0`/`1.8e19` meaning unset) and number
//!   objects from v0.0.42;
//! * diag: v0.0.40 has no `bf_cycle_max`;
//! * v0.0.45 adds fields this exporter does not read (`partition.exclusive`, ...).
//!
//! Its job and node readers also read v0.0.38 (plain numbers, node
//! `state_flags` and `free_memory`), so that shape is written once.

use std::io::Read;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::body::{self, state_words, string_or_null, strings_or_null, ListMeta};
use super::normalize::{self, JobFields, JobResources, NodeFields, PartitionFields};
use super::number::Number;
use super::v0038::WireJobResources as JobResources40;
use super::{ApiVersion, JobSink, ParseError};
use crate::model::{Diag, Node, Partition, Share};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireJob<R> {
    job_id: Number,
    array_job_id: Number,
    array_task_id: Number,
    #[serde(deserialize_with = "string_or_null")]
    array_task_string: String,
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    #[serde(deserialize_with = "string_or_null")]
    user_name: String,
    #[serde(deserialize_with = "string_or_null")]
    account: String,
    #[serde(deserialize_with = "string_or_null")]
    partition: String,
    #[serde(deserialize_with = "string_or_null")]
    qos: String,
    #[serde(deserialize_with = "state_words")]
    job_state: Vec<String>,
    #[serde(deserialize_with = "string_or_null")]
    state_reason: String,
    #[serde(deserialize_with = "string_or_null")]
    nodes: String,
    submit_time: Number,
    start_time: Number,
    end_time: Number,
    #[serde(deserialize_with = "string_or_null")]
    tres_alloc_str: String,
    #[serde(deserialize_with = "strings_or_null")]
    gres_detail: Vec<String>,
    job_resources: Option<R>,
}

/// v0.0.41+ `job_resources`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JobResources41 {
    nodes: Option<Nodes41>,
    cpus: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Nodes41 {
    count: Number,
    #[serde(deserialize_with = "string_or_null")]
    list: String,
    #[serde(deserialize_with = "allocation41")]
    allocation: Vec<Allocation41>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Allocation41 {
    cpus: Option<Count41>,
    memory: Option<Memory41>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Count41 {
    count: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Memory41 {
    allocated: Number,
}

fn allocation41<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Allocation41>, D::Error> {
    Option::<Vec<Allocation41>>::deserialize(d).map(Option::unwrap_or_default)
}

impl From<JobResources41> for JobResources {
    fn from(r: JobResources41) -> Self {
        let nodes = r.nodes.unwrap_or_default();
        let per_node_cpus = nodes
            .allocation
            .iter()
            .filter_map(|a| a.cpus.as_ref()?.count.as_u64())
            .fold(0u64, u64::saturating_add);
        JobResources {
            cpus: r.cpus.as_u64().unwrap_or(per_node_cpus),
            memory_mb: nodes
                .allocation
                .iter()
                .filter_map(|a| a.memory.as_ref()?.allocated.as_u64())
                .fold(0u64, u64::saturating_add),
            node_count: nodes
                .count
                .as_u64()
                .unwrap_or(nodes.allocation.len() as u64),
            nodes: nodes.list,
        }
    }
}

impl<R: Into<JobResources>> From<WireJob<R>> for JobFields {
    fn from(j: WireJob<R>) -> Self {
        JobFields {
            job_id: j.job_id.as_u64(),
            array_job_id: j.array_job_id.as_u64(),
            array_task_id: j.array_task_id.as_u64(),
            array_task_string: j.array_task_string,
            name: j.name,
            user: j.user_name,
            account: j.account,
            partition: j.partition,
            qos: j.qos,
            state_words: j.job_state,
            state_reason: j.state_reason,
            nodes: j.nodes,
            submit_time: j.submit_time.as_time(),
            start_time: j.start_time.as_time(),
            end_time: j.end_time.as_time(),
            tres_alloc_str: j.tres_alloc_str,
            gres_detail: j.gres_detail,
            resources: j.job_resources.map(Into::into),
        }
    }
}

/// v0.0.40+ only: v0.0.38 goes through [`super::v0038::parse_jobs`].
pub fn parse_jobs(
    version: ApiVersion,
    body: &mut dyn Read,
    sink: &mut dyn JobSink,
) -> Result<body::ListMeta, ParseError> {
    match version {
        ApiVersion::V0040 => stream_jobs::<JobResources40>(body, sink),
        _ => stream_jobs::<JobResources41>(body, sink),
    }
}

/// `/jobs` of any version, `R` being its `job_resources` shape (v0.0.38's
/// job record is v0.0.40's).
pub(super) fn stream_jobs<R>(
    body: &mut dyn Read,
    sink: &mut dyn JobSink,
) -> Result<body::ListMeta, ParseError>
where
    R: DeserializeOwned + Default + Into<JobResources>,
{
    body::read_elements_meta(body, "jobs", |j: WireJob<R>| {
        sink.job(normalize::job(j.into()))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireJobState {
    #[serde(deserialize_with = "string_or_null")]
    job_id: String,
    #[serde(deserialize_with = "state_words")]
    state: Vec<String>,
}

/// `/slurm/vX/jobs/state/` (v0.0.40+): `(job id as listed, state words)`.
pub fn parse_jobs_state(body: &mut dyn Read) -> Result<Vec<(String, Vec<String>)>, ParseError> {
    let mut out = Vec::new();
    body::read_elements_meta(body, "jobs", |j: WireJobState| {
        out.push((j.job_id, j.state))
    })?;
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireNode {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    #[serde(deserialize_with = "state_words")]
    state: Vec<String>,
    /// v0.0.38: the flags beside a one-word `state`; later in `state`.
    #[serde(deserialize_with = "state_words")]
    state_flags: Vec<String>,
    #[serde(deserialize_with = "string_or_null")]
    reason: String,
    #[serde(deserialize_with = "strings_or_null")]
    partitions: Vec<String>,
    cpus: Number,
    alloc_cpus: Number,
    real_memory: Number,
    alloc_memory: Number,
    free_mem: Number,
    /// v0.0.38's name of `free_mem` (not an alias: a body with both must
    /// not fail the list).
    free_memory: Number,
    cpu_load: Number,
    #[serde(deserialize_with = "string_or_null")]
    gres: String,
    #[serde(deserialize_with = "string_or_null")]
    gres_used: String,
}

pub fn parse_nodes(
    version: ApiVersion,
    body: &mut dyn Read,
) -> Result<(Vec<Node>, ListMeta), ParseError> {
    let mut nodes = Vec::new();
    let meta = body::read_elements_meta(body, "nodes", |n: WireNode| {
        let mut state_words = n.state;
        state_words.extend(n.state_flags);
        nodes.push(normalize::node(NodeFields {
            name: n.name,
            state_words,
            reason: n.reason,
            partitions: n.partitions,
            cpus: n.cpus.as_u64(),
            alloc_cpus: n.alloc_cpus.as_u64(),
            real_memory_mb: n.real_memory.as_u64(),
            alloc_memory_mb: n.alloc_memory.as_u64(),
            free_memory_mb: if version == ApiVersion::V0038 {
                n.free_memory.as_u64()
            } else {
                n.free_mem.as_u64()
            },
            cpu_load: n.cpu_load.as_f64(),
            gres: n.gres,
            gres_used: n.gres_used,
        }))
    })?;
    Ok((nodes, meta))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WirePartition {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    nodes: Option<PartitionNodes>,
    cpus: Option<PartitionCpus>,
    partition: Option<PartitionState>,
    tres: Option<PartitionTres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartitionTres {
    #[serde(deserialize_with = "string_or_null")]
    configured: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartitionNodes {
    #[serde(deserialize_with = "string_or_null")]
    configured: String,
    total: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartitionCpus {
    total: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PartitionState {
    #[serde(deserialize_with = "state_words")]
    state: Vec<String>,
}

pub fn parse_partitions(
    _version: ApiVersion,
    body: &mut dyn Read,
) -> Result<Vec<Partition>, ParseError> {
    let parts: Vec<WirePartition> = body::read_member(body, "partitions", Vec::is_empty)?;
    Ok(parts
        .into_iter()
        .map(|p| {
            let nodes = p.nodes.unwrap_or_default();
            normalize::partition(PartitionFields {
                name: p.name,
                nodes: nodes.configured,
                total_cpus: p.cpus.and_then(|c| c.total.as_u64()),
                total_nodes: nodes.total.as_u64(),
                state_words: p.partition.map(|s| s.state).unwrap_or_default(),
                tres: p.tres.map(|t| t.configured).unwrap_or_default(),
            })
        })
        .collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireShares {
    shares: Option<Vec<WireShare>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireShare {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    #[serde(deserialize_with = "string_or_null")]
    parent: String,
    shares: Number,
    shares_normalized: Number,
    usage: Number,
    effective_usage: Number,
    fairshare: Option<Fairshare>,
    #[serde(rename = "type", deserialize_with = "state_words")]
    kind: Vec<String>,
    tres: Option<ShareTres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShareTres {
    run_seconds: Option<Vec<ShareTresValue>>,
    usage: Option<Vec<ShareTresValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShareTresValue {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    value: Number,
}

/// Most TRES one share row may list (a cluster has a few dozen).
const MAX_SHARE_TRES: usize = 256;

fn share_tres(list: Option<Vec<ShareTresValue>>) -> Vec<(String, f64)> {
    list.unwrap_or_default()
        .into_iter()
        .take(MAX_SHARE_TRES)
        .filter(|t| !t.name.is_empty())
        .filter_map(|t| Some((t.name, t.value.as_f64().filter(|v| *v >= 0.0)?)))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fairshare {
    factor: Number,
    level: Number,
}

pub fn parse_shares(_version: ApiVersion, body: &mut dyn Read) -> Result<Vec<Share>, ParseError> {
    let shares: WireShares = body::read_member(body, "shares", |s: &WireShares| {
        s.shares.as_ref().is_none_or(Vec::is_empty)
    })?;
    Ok(shares
        .shares
        .unwrap_or_default()
        .into_iter()
        .map(share)
        .collect())
}

/// A `USER` row is the association of user `name` under account `parent`;
/// any other row is the account `name`. As in `sshare -l`, a user's
/// fairshare is its factor and an account's is its Level FS.
fn share(s: WireShare) -> Share {
    let is_user = s.kind.iter().any(|k| k == "USER");
    let fs = s.fairshare.unwrap_or_default();
    let tres = s.tres.unwrap_or_default();
    let (account, user, fairshare) = if is_user {
        (s.parent.clone(), Some(s.name), fs.factor.as_f64_or_inf())
    } else {
        (s.name, None, fs.level.as_f64_or_inf())
    };
    Share {
        account,
        user,
        parent: s.parent,
        raw_shares: s.shares.as_f64(),
        normalized_shares: s.shares_normalized.as_f64().unwrap_or(0.0),
        raw_usage: s.usage.as_f64().unwrap_or(0.0),
        effective_usage: s.effective_usage.as_f64().unwrap_or(0.0),
        fairshare,
        tres_usage_seconds: share_tres(tres.usage),
        tres_run_seconds: share_tres(tres.run_seconds),
    }
}

pub fn parse_diag(_version: ApiVersion, body: &mut dyn Read) -> Result<Diag, ParseError> {
    super::diag::parse(body)
}

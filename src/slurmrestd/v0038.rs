//! v0.0.38 adapter (Slurm 22.05): plain integers (sentinels such as
//! `cpu_load: 4294967294` and `free_memory: -2` mean unknown), `job_state`
//! as one string, node `state` as a lower-case base word plus `state_flags`
//! (v0.0.40's node reader takes both), `job_resources.nodes` as a host list
//! string. No `/shares` endpoint.

use std::io::Read;

use serde::Deserialize;

use super::body::{self, state_words, string_or_null};
use super::normalize::{self, JobResources, PartitionFields};
use super::number::Number;
use super::{JobSink, ParseError};
use crate::model::{Diag, Partition};

/// Also v0.0.40's shape; v0.0.41 reshaped it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireJobResources {
    #[serde(deserialize_with = "string_or_null")]
    nodes: String,
    allocated_cores: Number,
    allocated_hosts: Number,
    #[serde(deserialize_with = "allocated_nodes")]
    allocated_nodes: Vec<WireAllocatedNode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireAllocatedNode {
    memory_allocated: Number,
}

/// v0.0.38 lists allocated nodes as an array; earlier parsers used an
/// object keyed by index. Accept both, and `null`. (A visitor, not an
/// untagged enum: that would buffer every node's sockets/cores map.)
fn allocated_nodes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<WireAllocatedNode>, D::Error> {
    use serde::de::{MapAccess, SeqAccess, Visitor};
    struct Nodes;
    impl<'de> Visitor<'de> for Nodes {
        type Value = Vec<WireAllocatedNode>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list or map of allocated nodes, or null")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(n) = seq.next_element()? {
                out.push(n);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // Keyed by index: order by key as the BTreeMap this replaced did.
            let mut out = std::collections::BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, WireAllocatedNode>()? {
                out.insert(k, v);
            }
            Ok(out.into_values().collect())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_any(Nodes)
}

impl From<WireJobResources> for JobResources {
    fn from(r: WireJobResources) -> Self {
        JobResources {
            nodes: r.nodes,
            cpus: r.allocated_cores.as_u64().unwrap_or(0),
            memory_mb: r
                .allocated_nodes
                .iter()
                .filter_map(|n| n.memory_allocated.as_u64())
                .fold(0u64, u64::saturating_add),
            node_count: r.allocated_hosts.as_u64().unwrap_or(0),
        }
    }
}

/// The job record is v0.0.40's (one wire struct, generic over `job_resources`).
pub fn parse_jobs(
    body: &mut dyn Read,
    sink: &mut dyn JobSink,
) -> Result<body::ListMeta, ParseError> {
    super::v0040::stream_jobs::<WireJobResources>(body, sink)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WirePartition {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    #[serde(deserialize_with = "string_or_null")]
    nodes: String,
    total_cpus: Number,
    total_nodes: Number,
    #[serde(deserialize_with = "state_words")]
    state: Vec<String>,
    #[serde(deserialize_with = "string_or_null")]
    tres: String,
}

pub fn parse_partitions(body: &mut dyn Read) -> Result<Vec<Partition>, ParseError> {
    let parts: Vec<WirePartition> = body::read_member(body, "partitions", Vec::is_empty)?;
    Ok(parts
        .into_iter()
        .map(|p| {
            normalize::partition(PartitionFields {
                name: p.name,
                nodes: p.nodes,
                total_cpus: p.total_cpus.as_u64(),
                total_nodes: p.total_nodes.as_u64(),
                state_words: p.state,
                tres: p.tres,
            })
        })
        .collect())
}

pub fn parse_diag(body: &mut dyn Read) -> Result<Diag, ParseError> {
    super::diag::parse(body)
}

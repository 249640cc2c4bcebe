//! Placeholder until the v0.0.40+ adapter lands.
use std::io::Read;

use super::{ApiVersion, JobSink, ParseError};
use crate::model::{Diag, Node, Partition, Share};

fn todo() -> ParseError {
    ParseError::Slurm("v0.0.40+ adapter not implemented".into())
}
pub fn parse_jobs(_: ApiVersion, _: &mut dyn Read, _: &mut dyn JobSink) -> Result<(), ParseError> {
    Err(todo())
}
pub fn parse_nodes(_: ApiVersion, _: &mut dyn Read) -> Result<Vec<Node>, ParseError> {
    Err(todo())
}
pub fn parse_partitions(_: ApiVersion, _: &mut dyn Read) -> Result<Vec<Partition>, ParseError> {
    Err(todo())
}
pub fn parse_shares(_: ApiVersion, _: &mut dyn Read) -> Result<Vec<Share>, ParseError> {
    Err(todo())
}
pub fn parse_diag(_: ApiVersion, _: &mut dyn Read) -> Result<Diag, ParseError> {
    Err(todo())
}

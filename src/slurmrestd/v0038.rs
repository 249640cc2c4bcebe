//! Placeholder until the v0.0.38 adapter lands.
use std::io::Read;

use super::{JobSink, ParseError};
use crate::model::{Diag, Node, Partition};

fn todo() -> ParseError {
    ParseError::Slurm("v0.0.38 adapter not implemented".into())
}
pub fn parse_jobs(_: &mut dyn Read, _: &mut dyn JobSink) -> Result<(), ParseError> {
    Err(todo())
}
pub fn parse_nodes(_: &mut dyn Read) -> Result<Vec<Node>, ParseError> {
    Err(todo())
}
pub fn parse_partitions(_: &mut dyn Read) -> Result<Vec<Partition>, ParseError> {
    Err(todo())
}
pub fn parse_diag(_: &mut dyn Read) -> Result<Diag, ParseError> {
    Err(todo())
}

//! Reading slurmrestd response bodies: the top-level object (`meta`,
//! `errors`, `warnings`, and one data member), streamed from a `Read`, plus
//! lenient field helpers shared by the version adapters.

use std::fmt;
use std::io::{BufReader, Read};
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};

use super::ParseError;

/// One `errors[]` entry; v0.0.38 uses `errno`, later versions `error_number`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SlurmError {
    #[serde(deserialize_with = "string_or_null")]
    error: String,
    #[serde(deserialize_with = "string_or_null")]
    description: String,
    #[serde(deserialize_with = "string_or_null")]
    source: String,
    error_number: Option<i64>,
    errno: Option<i64>,
}

impl fmt::Display for SlurmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<&str> = [&self.error, &self.description]
            .into_iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        parts.dedup();
        f.write_str(&parts.join(": "))?;
        if !self.source.is_empty() {
            write!(f, " [{}]", self.source)?;
        }
        if let Some(n) = self.error_number.or(self.errno) {
            write!(f, " (error {n})")?;
        }
        Ok(())
    }
}

/// Slurm error numbers (`errors[].error_number`, or v0.0.38's `errno`) of a
/// whole JSON error body; empty when it is not one.
pub fn error_numbers(raw: &[u8]) -> Vec<i64> {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Option<Vec<SlurmError>>,
    }
    serde_json::from_slice::<Errors>(raw)
        .ok()
        .and_then(|e| e.errors)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.error_number.or(e.errno))
        .collect()
}

/// The numbers [`SlurmError`]'s `Display` wrote into a `ParseError::Slurm`
/// message (`... (error 1900)`).
pub(crate) fn error_numbers_in_message(msg: &str) -> Vec<i64> {
    msg.split("(error ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.trim().parse().ok())
        .collect()
}

/// Reads the top-level object of `body`, deserializing only member `field`
/// through `seed` and collecting `errors[]`; everything else is skipped
/// unparsed. A body whose `errors[]` is non-empty and whose data member is
/// missing or empty (`is_empty`) is a [`ParseError::Slurm`].
pub(crate) fn read<S, V>(
    body: &mut dyn Read,
    field: &'static str,
    seed: S,
    is_empty: impl FnOnce(&V) -> bool,
) -> Result<V, ParseError>
where
    S: for<'de> DeserializeSeed<'de, Value = V>,
{
    // Bare `Infinity`/`NaN` (≤ 24.11) become strings `Number` reads.
    let mut de = serde_json::Deserializer::from_reader(BufReader::new(
        super::nonfinite::NonFinite::new(body),
    ));
    let (data, errors) = de.deserialize_map(TopLevel {
        field,
        seed: Some(seed),
    })?;
    de.end()?;
    let data_empty = data.as_ref().is_none_or(is_empty);
    if !errors.is_empty() && data_empty {
        return Err(slurm_errors(&errors));
    }
    data.ok_or(ParseError::Missing(field))
}

/// What [`read_elements_meta`] found besides the elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListMeta {
    /// Elements handed out.
    pub count: usize,
    /// slurmctld's `last_update` (v0.0.39+; absent in v0.0.38), Unix seconds.
    pub last_update: Option<i64>,
    /// `warnings[]` descriptions (e.g. "No job changes since update_time=...").
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SlurmWarning {
    #[serde(deserialize_with = "string_or_null")]
    description: String,
    #[serde(deserialize_with = "string_or_null")]
    source: String,
}

/// Like [`read`] for an array member: each element of `field` is
/// deserialized as a `T` and handed to `each` as soon as it is read (see
/// [`super::scan`]), so the array is never held in memory. Returns the
/// element count, `last_update` and `warnings[]`.
pub(crate) fn read_elements_meta<T: DeserializeOwned>(
    body: &mut dyn Read,
    field: &'static str,
    each: impl FnMut(T),
) -> Result<ListMeta, ParseError> {
    // Bare `Infinity`/`NaN` are handled inside the scanner, only where
    // serde_json rejects a value (this path carries /jobs and /nodes).
    let top = super::scan::read_array(body, field, each)?;
    let last_update = match &top.last_update {
        Some(raw) => serde_json::from_slice::<super::number::Number>(raw)?.as_time(),
        None => None,
    };
    let warnings = match &top.warnings {
        Some(raw) => serde_json::from_slice::<Option<Vec<SlurmWarning>>>(raw)?
            .unwrap_or_default()
            .into_iter()
            .map(|w| {
                if w.source.is_empty() {
                    w.description
                } else {
                    format!("{} [{}]", w.description, w.source)
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let errors = match &top.errors {
        Some(raw) => serde_json::from_slice::<Option<Vec<SlurmError>>>(raw)?.unwrap_or_default(),
        None => Vec::new(),
    };
    if !errors.is_empty() && top.count.unwrap_or(0) == 0 {
        return Err(slurm_errors(&errors));
    }
    let count = top.count.ok_or(ParseError::Missing(field))?;
    Ok(ListMeta {
        count,
        last_update,
        warnings,
    })
}

/// Reads member `field` of the top-level object as a `T`.
pub(crate) fn read_member<T: DeserializeOwned>(
    body: &mut dyn Read,
    field: &'static str,
    is_empty: impl FnOnce(&T) -> bool,
) -> Result<T, ParseError> {
    read(body, field, PhantomData::<T>, is_empty)
}

struct TopLevel<S> {
    field: &'static str,
    seed: Option<S>,
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for TopLevel<S> {
    type Value = (Option<S::Value>, Vec<SlurmError>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a slurmrestd response object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut data = None;
        let mut errors = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field {
                match self.seed.take() {
                    Some(seed) => data = Some(map.next_value_seed(seed)?),
                    None => return Err(de::Error::duplicate_field(self.field)),
                }
            } else if key == "errors" {
                errors = map
                    .next_value::<Option<Vec<SlurmError>>>()?
                    .unwrap_or_default();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((data, errors))
    }
}

/// A string that v0.0.38 may send as `null`.
pub(crate) fn string_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d).map(Option::unwrap_or_default)
}

/// State words: an array of strings (v0.0.40+), one string such as
/// `"RUNNING"` or `"DOWN+DRAIN"` (v0.0.38), or `null`. Upper-cased.
pub(crate) fn state_words<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Words;
    impl<'de> Visitor<'de> for Words {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a state string, a list of state strings, or null")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(s.split('+').filter_map(word).collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(w) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                out.extend(word(&w));
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
            d.deserialize_any(self)
        }
    }
    fn word(w: &str) -> Option<String> {
        let w = w.trim();
        (!w.is_empty()).then(|| w.to_ascii_uppercase())
    }
    d.deserialize_any(Words)
}

/// A list of strings that may be `null`.
pub(crate) fn strings_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Option::unwrap_or_default)
}

/// The `errors[]` of an answer without data, as one error.
fn slurm_errors<E: ToString>(errors: &[E]) -> ParseError {
    let msg = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    ParseError::Slurm(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_of_error_bodies() {
        // 22.05's answer to /nodes?update_time= when partitions did not change.
        let v38 = include_bytes!(
            "../../tests/fixtures/slurmrestd/v0.0.38/_err_nodes_update_time_partitions_unchanged.json"
        );
        assert_eq!(error_numbers(v38), vec![-1]);
        let v44 = br#"{"nodes":[],"errors":[{"description":"Failure to query nodes","error_number":1900,"error":"Data has not changed since time specified","source":"_dump_nodes"}],"meta":{}}"#;
        assert_eq!(error_numbers(v44), vec![1900]);
        for not_json in [&b"Authentication failure"[..], b"", b"{\"errors\":", b"[]"] {
            assert!(error_numbers(not_json).is_empty());
        }
    }

    #[test]
    fn error_numbers_survive_the_display_round_trip() {
        let e: SlurmError = serde_json::from_str(
            r#"{"error":"Data has not changed since time specified","description":"Failure to query nodes","error_number":1900}"#,
        )
        .unwrap();
        let msg = format!("{e}; {e}");
        assert_eq!(error_numbers_in_message(&msg), vec![1900, 1900]);
        assert!(error_numbers_in_message("no numbers (error x)").is_empty());
    }
}

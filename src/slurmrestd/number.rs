//! Slurm's number objects (`{"set": true, "infinite": false, "number": 5}`, v0.0.39+).
//!
//! [`Number`] also accepts a plain JSON number or `null`, so one field type
//! reads v0.0.38's plain integers and v0.0.40+'s objects alike. Plain values
//! that are Slurm's C sentinels (`NO_VAL`, `INFINITE`, their 64-bit forms,
//! and `-2` as v0.0.38 prints `NO_VAL64` signed) read as unset.
//!
//! [`Lenient`] is the same number for records where one odd field must not
//! fail the whole list (slurmdbd's job records): any other JSON reads as unset.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

const NO_VAL: u64 = 0xffff_fffe;
const INFINITE: u64 = 0xffff_ffff;
const NO_VAL64: u64 = u64::MAX - 1;
const INFINITE64: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Number {
    /// `set: false`, `null`, absent, or a sentinel.
    #[default]
    Unset,
    Infinite,
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Number {
    fn classify(self) -> Number {
        match self {
            Number::Uint(NO_VAL | NO_VAL64) => Number::Unset,
            Number::Uint(INFINITE | INFINITE64) => Number::Infinite,
            Number::Int(-2) => Number::Unset,
            Number::Float(f) if !f.is_finite() => Number::Unset,
            Number::Float(f) if f == NO_VAL as f64 || f == NO_VAL64 as f64 => Number::Unset,
            Number::Float(f) if f == INFINITE as f64 => Number::Infinite,
            n => n,
        }
    }

    /// A non-negative count; `None` when unset, infinite, negative or not integral-sized.
    pub fn as_u64(self) -> Option<u64> {
        match self.classify() {
            Number::Uint(u) => Some(u),
            Number::Int(i) => u64::try_from(i).ok(),
            Number::Float(f) if (0.0..u64::MAX as f64).contains(&f) => Some(f as u64),
            _ => None,
        }
    }

    /// A signed integer (times); `None` when unset, infinite or out of range.
    pub fn as_i64(self) -> Option<i64> {
        match self.classify() {
            Number::Uint(u) => i64::try_from(u).ok(),
            Number::Int(i) => Some(i),
            Number::Float(f) if (i64::MIN as f64..i64::MAX as f64).contains(&f) => Some(f as i64),
            _ => None,
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        match self.classify() {
            Number::Uint(u) => Some(u as f64),
            Number::Int(i) => Some(i as f64),
            Number::Float(f) => Some(f),
            _ => None,
        }
    }

    /// A float where infinity is a real value (fairshare level and factor:
    /// an association with shares and no usage has Level FS = ∞, which
    /// `sshare` prints as `inf`). ∞ arrives as `{"infinite": true}`
    /// (v0.0.42+), a bare `Infinity` (≤ 24.11), or the placeholder
    /// `(double) INFINITE64` = 1.8446744073709552e19 (25.05+ serializer,
    /// v0.0.40/v0.0.41 and plain floats of v0.0.43+, logged by slurmrestd as
    /// "Dumping (0xffffffffffffffff) as place holder for Infinity"). Unset,
    /// NaN and `(double) NO_VAL` (4294967294.0) are `None`.
    pub fn as_f64_or_inf(self) -> Option<f64> {
        match self {
            Number::Infinite => Some(f64::INFINITY),
            Number::Float(f) if f.is_nan() => None,
            Number::Float(f) if f.is_infinite() => Some(f),
            Number::Float(f) if f == INFINITE64 as f64 => Some(f64::INFINITY),
            n => match n.classify() {
                Number::Infinite => Some(f64::INFINITY),
                n => n.as_f64(),
            },
        }
    }

    /// A Unix time: 0 and unset mean "never" in Slurm.
    pub fn as_time(self) -> Option<i64> {
        self.as_i64().filter(|t| *t > 0)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, null, or a Slurm number object {set, infinite, number}")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number::Uint(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(if v >= 0 {
            Number::Uint(v as u64)
        } else {
            Number::Int(v)
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number::Float(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number::Unset)
    }
    /// Only the strings [`super::nonfinite`] writes for bare `Infinity`,
    /// `-Infinity` and `NaN`; any other string is not a number.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        match super::nonfinite::marker_value(v) {
            Some(f) => Ok(Number::Float(f)),
            None => Err(E::invalid_type(de::Unexpected::Str(v), &self)),
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number::Unset)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Number, A::Error> {
        // A nested object as `number` is malformed; reject rather than recurse.
        number_object::<A, bool, PlainNumber>(map)
    }
}

/// Reads a number object's members: `set` and `infinite` as `B`, `number`
/// as `N` (strict or lenient), others skipped.
fn number_object<'de, A, B, N>(mut map: A) -> Result<Number, A::Error>
where
    A: MapAccess<'de>,
    B: Deserialize<'de> + Into<Option<bool>>,
    N: Deserialize<'de> + Into<Number>,
{
    let (mut set, mut infinite, mut number) = (None, None, Number::Unset);
    while let Some(key) = map.next_key::<KeyName>()? {
        match key {
            KeyName::Set => set = map.next_value::<B>()?.into(),
            KeyName::Infinite => infinite = map.next_value::<B>()?.into(),
            KeyName::Number => number = map.next_value::<N>()?.into(),
            KeyName::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(if infinite == Some(true) {
        Number::Infinite
    } else if set == Some(false) {
        Number::Unset
    } else {
        number
    })
}

enum KeyName {
    Set,
    Infinite,
    Number,
    Other,
}

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                Ok(match v {
                    "set" => KeyName::Set,
                    "infinite" => KeyName::Infinite,
                    "number" => KeyName::Number,
                    _ => KeyName::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// The `number` member: a plain number or null only.
struct PlainNumber(Number);

impl From<PlainNumber> for Number {
    fn from(n: PlainNumber) -> Number {
        n.0
    }
}

impl From<LenientPlain> for Number {
    fn from(n: LenientPlain) -> Number {
        n.0
    }
}

impl From<LenientBool> for Option<bool> {
    fn from(b: LenientBool) -> Option<bool> {
        b.0
    }
}

impl<'de> Deserialize<'de> for PlainNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PlainNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a plain number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PlainNumber, E> {
                NumberVisitor.visit_u64(v).map(PlainNumber)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PlainNumber, E> {
                NumberVisitor.visit_i64(v).map(PlainNumber)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PlainNumber, E> {
                Ok(PlainNumber(Number::Float(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<PlainNumber, E> {
                Ok(PlainNumber(Number::Unset))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PlainNumber, E> {
                NumberVisitor.visit_str(v).map(PlainNumber)
            }
        }
        d.deserialize_any(V)
    }
}

/// A [`Number`] where any other JSON (a string, a boolean, a list, an
/// object with odd members) reads as [`Number::Unset`] instead of failing
/// the document; for slurmdbd's job records, where one odd field must not
/// lose a month of accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lenient(pub Number);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor { plain: false })
            .map(Lenient)
    }
}

/// The `number` member of a lenient number object: an object there is as
/// odd as a string.
struct LenientPlain(Number);

impl<'de> Deserialize<'de> for LenientPlain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor { plain: true })
            .map(LenientPlain)
    }
}

struct LenientVisitor {
    /// Objects read as unset (inside a number object).
    plain: bool,
}

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        NumberVisitor.visit_u64(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        NumberVisitor.visit_i64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        NumberVisitor.visit_f64(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number::Unset)
    }
    fn visit_none<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number::Unset)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Number, E> {
        Ok(Number::Unset)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        Ok(super::nonfinite::marker_value(v).map_or(Number::Unset, Number::Float))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Number, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Number::Unset)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Number, A::Error> {
        if self.plain {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Number::Unset);
        }
        number_object::<A, LenientBool, LenientPlain>(map)
    }
}

/// A boolean member of a number object; anything else reads as absent.
struct LenientBool(Option<bool>);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
                Ok(Some(v))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<bool>, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<bool>, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<bool>, E> {
                Ok(None)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<bool>, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
                Ok(None)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Option<bool>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Option<bool>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        d.deserialize_any(V).map(LenientBool)
    }
}

#[cfg(test)]
mod tests {
    use super::Number;

    fn n(json: &str) -> Number {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn objects_and_plain_values() {
        assert_eq!(
            n(r#"{"set":true,"infinite":false,"number":5}"#).as_u64(),
            Some(5)
        );
        assert_eq!(
            n(r#"{"set":false,"infinite":false,"number":5}"#).as_u64(),
            None
        );
        assert_eq!(
            n(r#"{"set":false,"infinite":true,"number":0}"#),
            Number::Infinite
        );
        assert_eq!(
            n(r#"{"set":true,"infinite":false,"number":0.5}"#).as_f64(),
            Some(0.5)
        );
        assert_eq!(n(r#"{"number":7,"extra":[1]}"#).as_u64(), Some(7));
        assert_eq!(n("42").as_u64(), Some(42));
        assert_eq!(n("1.25").as_f64(), Some(1.25));
        assert_eq!(n("null"), Number::Unset);
        assert_eq!(n("1795374559").as_time(), Some(1795374559));
        assert_eq!(n("0").as_time(), None);
    }

    #[test]
    fn infinity_where_it_is_a_value() {
        // Recorded v0.0.40/v0.0.41 (25.05, 25.11): root user's level is the
        // INFINITE64 placeholder (sshare: inf), root's is NO_VAL (sshare: empty).
        assert_eq!(
            n("1.8446744073709552e+19").as_f64_or_inf(),
            Some(f64::INFINITY)
        );
        assert_eq!(
            n("18446744073709552000").as_f64_or_inf(),
            Some(f64::INFINITY)
        );
        assert_eq!(n("4294967294.0").as_f64_or_inf(), None);
        assert_eq!(
            n(r#"{"set":false,"infinite":true,"number":0.0}"#).as_f64_or_inf(),
            Some(f64::INFINITY)
        );
        assert_eq!(
            n(r#"{"set":true,"infinite":false,"number":18446744073709552000}"#).as_f64_or_inf(),
            Some(f64::INFINITY)
        );
        assert_eq!(
            n(r#"{"set":false,"infinite":false,"number":0.0}"#).as_f64_or_inf(),
            None
        );
        assert_eq!(n("1.25").as_f64_or_inf(), Some(1.25));
        assert_eq!(n("0").as_f64_or_inf(), Some(0.0));
        // The strings NonFinite writes for bare literals.
        assert_eq!(n(r#""+inf  ""#).as_f64_or_inf(), Some(f64::INFINITY));
        assert_eq!(n(r#""-inf   ""#).as_f64_or_inf(), Some(f64::NEG_INFINITY));
        assert_eq!(n(r#""N""#).as_f64_or_inf(), None);
        assert_eq!(
            n(r#"{"number":"+inf  "}"#).as_f64_or_inf(),
            Some(f64::INFINITY)
        );
        // Elsewhere infinity is not a count or a float value.
        assert_eq!(n(r#""+inf  ""#).as_f64(), None);
        assert_eq!(n("1.8446744073709552e+19").as_f64(), None);
    }

    #[test]
    fn sentinels_and_hostile_values() {
        // v0.0.38 prints cpu_load NO_VAL and free_memory NO_VAL64 as -2.
        assert_eq!(n("4294967294").as_u64(), None);
        assert_eq!(n("-2").as_u64(), None);
        assert_eq!(n("4294967295"), Number::Uint(4294967295));
        assert_eq!(n("4294967295").as_u64(), None);
        assert_eq!(n("18446744073709551615").as_u64(), None);
        // v0.0.40 prints fairshare level NO_VAL/INFINITE64 as floats.
        assert_eq!(n("4294967294.0").as_f64(), None);
        assert_eq!(n("1.8446744073709552e19").as_f64(), None);
        assert_eq!(n("-1").as_u64(), None);
        assert_eq!(n("-1").as_i64(), Some(-1));
        assert_eq!(n("-5").as_time(), None);
        assert_eq!(n("1e300").as_u64(), None);
        assert_eq!(n("1e300").as_i64(), None);
        assert_eq!(n("-1e300").as_f64(), Some(-1e300));
        assert_eq!(n("12.9").as_u64(), Some(12));
        for bad in [
            r#""5""#,
            r#""inf""#,
            r#""Infinity""#,
            "true",
            "[1]",
            r#"{"number":{"number":1}}"#,
            r#"{"set":"yes"}"#,
        ] {
            assert!(serde_json::from_str::<Number>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lenient_reads_odd_json_as_unset_and_numbers_as_number() {
        use super::Lenient;
        let l = |json: &str| serde_json::from_str::<Lenient>(json).unwrap().0;
        assert_eq!(l("7").as_u64(), Some(7));
        assert_eq!(l("4.5").as_f64(), Some(4.5));
        assert_eq!(
            l(r#"{"set":true,"infinite":false,"number":9}"#).as_u64(),
            Some(9)
        );
        assert_eq!(l(r#"{"set":false,"number":3}"#), Number::Unset);
        assert_eq!(l(r#"{"infinite":true}"#), Number::Infinite);
        assert_eq!(l("4294967294").as_u64(), None, "NO_VAL is unset");
        for odd in [
            r#""two""#,
            "true",
            "[1,2]",
            "null",
            r#"{"set":"yes","number":"x"}"#,
            r#"{"number":{"number":5}}"#,
            r#"{"number":[5]}"#,
        ] {
            assert_eq!(l(odd).as_f64(), None, "{odd}");
        }
        // A string set flag is absent, the number still counts.
        assert_eq!(l(r#"{"set":"yes","number":2}"#).as_u64(), Some(2));
        // Truncated JSON is still an error, not a silent zero.
        assert!(serde_json::from_str::<Lenient>(r#"{"number":"#).is_err());
    }
}

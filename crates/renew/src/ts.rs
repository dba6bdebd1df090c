//! RFC 3339 (UTC) timestamps in the JSON state files, so they stay readable by people and
//! by `jq`; written by hand to avoid turning on `time`'s serde feature for the whole workspace.

use serde::{Deserialize, Deserializer, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn parse<E: serde::de::Error>(s: &str) -> Result<OffsetDateTime, E> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| E::custom(format!("bad timestamp {s:?}: {e}")))
}

pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*t))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    parse(&String::deserialize(d)?)
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&format(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| parse(&s)).transpose()
    }
}

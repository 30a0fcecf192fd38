use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A room's id.
///
/// Clients of the original protocol send room ids either as JSON numbers or
/// as strings of digits (`"room":"1"`); both decode to the same `RoomId`.
/// Events always carry it as a number, replies as a string, exactly as the
/// original did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub i64);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RoomIdVisitor)
    }
}

struct RoomIdVisitor;

impl Visitor<'_> for RoomIdVisitor {
    type Value = RoomId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a room id: an integer or a string of digits")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RoomId, E> {
        Ok(RoomId(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RoomId, E> {
        i64::try_from(v)
            .map(RoomId)
            .map_err(|_| E::custom("room id out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RoomId, E> {
        // Only plain digits, as the original's `int(room_id)` on ids it had
        // handed out: no sign, no spaces, no exponent.
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom("room id is not a string of digits"));
        }
        v.parse()
            .map(RoomId)
            .map_err(|_| E::custom("room id out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RoomId, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn numbers_and_digit_strings_decode_alike() {
        assert_eq!(parse("12").unwrap(), RoomId(12));
        assert_eq!(parse("\"12\"").unwrap(), RoomId(12));
    }

    #[test]
    fn non_digit_strings_floats_and_huge_numbers_are_refused() {
        for bad in [
            "\"\"",
            "\"-1\"",
            "\"1e3\"",
            "\" 1\"",
            "1.5",
            "true",
            "null",
            "[1]",
            "\"99999999999999999999999\"",
            "18446744073709551615",
        ] {
            assert!(parse(bad).is_err(), "{bad} should not decode");
        }
    }

    #[test]
    fn encodes_as_a_number() {
        assert_eq!(serde_json::to_string(&RoomId(3)).unwrap(), "3");
    }
}

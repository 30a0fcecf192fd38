//! Presence in Redis: one hash per room, shared by every node.
//!
//! The hash `{prefix}:presence:{room id}` maps a user id to a small JSON
//! object. Every write sets the hash's expiry to the presence TTL again, so
//! a room's presence vanishes `presence_ttl` after its last update, whichever
//! node made it, exactly like the in-memory table. The expiry is set in
//! milliseconds (PEXPIRE): TTLs shorter than a second are honoured too.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use whisper_protocol::PresenceEntry;

use crate::presence::unix_now;

/// One hash value. The field order is part of the format: `left` and
/// `last_update` come first, so [`LEAVE_SCRIPT`] can replace them without
/// decoding the rest.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEntry<'a> {
    left: bool,
    last_update: f64,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// The head [`LEAVE_SCRIPT`] swaps in: the fields of [`StoredEntry`] before
/// `username`.
#[derive(Serialize)]
struct StoredHead {
    left: bool,
    last_update: f64,
}

/// Marks one entry as left, if it exists, and refreshes the room's expiry.
///
/// A script, because it reads and then writes: done as two commands, a
/// `touch` from another node in between (the user rejoining from another
/// tab) could be overwritten by a stale entry. Redis runs a script without
/// interleaving anything else.
///
/// The script does not parse JSON: values start with
/// `{"left":...,"last_update":...` (see [`StoredEntry`]), so it keeps
/// everything from `,"username":` on and puts the new head (`ARGV[2]`,
/// encoded by serde_json, so the timestamp keeps its full precision) in
/// front. The first `,"username":` is always the real field: nothing before
/// it is user-supplied.
///
/// `KEYS[1]`: the room's hash; `ARGV[1]`: user id; `ARGV[2]`: new head;
/// `ARGV[3]`: TTL in milliseconds.
const LEAVE_SCRIPT: &str = r#"
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
local rest = string.find(entry, ',"username":', 1, true)
if not rest then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. string.sub(entry, rest))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Records the user as present now and restarts the room's expiry, in one
/// MULTI/EXEC so the entry never exists without its expiry.
pub(super) fn touch(
    key: &str,
    user_id: i64,
    username: &str,
    name: &str,
    ttl: Duration,
) -> redis::Pipeline {
    let entry = StoredEntry {
        left: false,
        last_update: unix_now(),
        username: Cow::Borrowed(username),
        name: Cow::Borrowed(name),
    };
    let mut pipeline = redis::pipe();
    pipeline
        .atomic()
        .cmd("HSET")
        .arg(key)
        .arg(user_id)
        .arg(encode(&entry))
        .ignore()
        .cmd("PEXPIRE")
        .arg(key)
        .arg(ttl_millis(ttl))
        .ignore();
    pipeline
}

/// Marks the user's entry as left now, if there is one (see
/// [`LEAVE_SCRIPT`]).
pub(super) fn leave(key: &str, user_id: i64, ttl: Duration) -> redis::Cmd {
    let mut head = encode(&StoredHead {
        left: true,
        last_update: unix_now(),
    });
    // Drop the closing brace: the rest of the stored entry follows.
    head.pop();
    let mut command = redis::cmd("EVAL");
    command
        .arg(LEAVE_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(user_id)
        .arg(head)
        .arg(ttl_millis(ttl));
    command
}

/// The room's entries from its `HGETALL` reply, ordered by user id.
///
/// A field that is not ours (not a user id, or not an entry) is skipped
/// with a warning rather than failing the whole list: one bad value should
/// not hide everyone else in the room.
pub(super) fn decode(key: &str, fields: Vec<(String, String)>) -> Vec<PresenceEntry> {
    let mut entries: Vec<PresenceEntry> = fields
        .iter()
        .filter_map(|(user_id, value)| {
            let decoded = user_id
                .parse::<i64>()
                .ok()
                .zip(serde_json::from_str::<StoredEntry<'_>>(value).ok());
            if decoded.is_none() {
                tracing::warn!(key, field = %user_id, "skipping an undecodable presence entry");
            }
            let (user_id, entry) = decoded?;
            Some(PresenceEntry {
                user_id,
                username: entry.username.into_owned(),
                name: entry.name.into_owned(),
                left: entry.left,
                last_update: entry.last_update,
            })
        })
        .collect();
    entries.sort_unstable_by_key(|entry| entry.user_id);
    entries
}

fn encode(value: &impl Serialize) -> String {
    // Serializing these structs cannot fail: plain fields, string keys, and
    // a finite timestamp (serde_json would write NaN as null, not fail).
    serde_json::to_string(value).unwrap_or_default()
}

/// The TTL for PEXPIRE: whole milliseconds, at least one (zero would delete
/// the key at once).
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_start_with_the_head_the_leave_script_replaces() {
        let entry = encode(&StoredEntry {
            left: false,
            last_update: 1700000000.25,
            username: Cow::Borrowed("ann"),
            name: Cow::Borrowed(r#"Ann ,"username":"#),
        });
        assert_eq!(
            entry,
            r#"{"left":false,"last_update":1700000000.25,"username":"ann","name":"Ann ,\"username\":"}"#
        );
        let mut head = encode(&StoredHead {
            left: true,
            last_update: 1700000001.5,
        });
        head.pop();
        // What the script does, in Rust.
        let rest = entry.find(r#","username":"#).expect("the field is there");
        let left = format!("{head}{}", &entry[rest..]);
        let fields = vec![("7".to_owned(), left)];
        let decoded = decode("key", fields);
        assert_eq!(
            decoded,
            [PresenceEntry {
                user_id: 7,
                username: "ann".to_owned(),
                name: r#"Ann ,"username":"#.to_owned(),
                left: true,
                last_update: 1700000001.5,
            }]
        );
    }

    #[test]
    fn decode_sorts_by_user_id_and_skips_what_is_not_an_entry() {
        let entry = |name: &str| {
            encode(&StoredEntry {
                left: false,
                last_update: 1.0,
                username: Cow::Borrowed(name),
                name: Cow::Borrowed(""),
            })
        };
        let fields = vec![
            ("10".to_owned(), entry("ten")),
            ("9".to_owned(), entry("nine")),
            ("x".to_owned(), entry("not a user id")),
            ("11".to_owned(), "not json".to_owned()),
        ];
        let usernames: Vec<_> = decode("key", fields)
            .into_iter()
            .map(|entry| (entry.user_id, entry.username))
            .collect();
        assert_eq!(usernames, [(9, "nine".to_owned()), (10, "ten".to_owned())]);
    }

    #[test]
    fn ttls_are_whole_milliseconds_and_never_zero() {
        assert_eq!(ttl_millis(Duration::from_millis(400)), 400);
        assert_eq!(ttl_millis(Duration::from_secs(3600)), 3_600_000);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
    }
}

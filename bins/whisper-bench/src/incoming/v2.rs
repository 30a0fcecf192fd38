//! Reading protocol v2 frames the way [`super`] reads v1's.
//!
//! The frames a v2 bench socket receives by the thousand are `message`
//! events and `send` results, both written by the protocol crate's encoders
//! with a fixed field order (`whisper_protocol::v2::encode`):
//!
//! ```text
//! {"event":"message","room":R,"seq":S,"ts":T,"user":{"id":I,"username":"U","name":"N"},"text":"..."
//! {"id":N,"result":{"room":R,"seq":S,"ts":T}}
//! ```
//!
//! Those are read by slicing, like v1's messages: the seq and the stamp's
//! leading digits are all a bench looks at, with no JSON parser, UTF-8 pass
//! or allocation. Join and history results (one per request) and anything
//! else go through serde_json.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use whisper_protocol::v2::{Epoch, Seq};

use super::{HistoryPage, Incoming, JoinResult, error_code};
use crate::stamp::Stamp;

/// Classifies one v2 text frame's payload.
pub fn classify(frame: &[u8]) -> Incoming {
    if let Some(rest) = frame.strip_prefix(br#"{"event":"#) {
        if let Some((seq, text)) = message_event(rest) {
            return Incoming::Numbered {
                seq,
                stamp: text.and_then(Stamp::parse),
            };
        }
        if !rest.starts_with(br#""message""#) {
            return Incoming::Event;
        }
    } else if let Some((id, seq)) = send_result(frame) {
        return Incoming::Sent { id, seq };
    } else if let Some(code) = error_head(frame) {
        return Incoming::Error(error_code(code));
    }
    match std::str::from_utf8(frame) {
        Ok(text) => classify_slowly(text),
        Err(_) => Incoming::Other,
    }
}

/// The seq and the (still escaped) text of a `message` event in the
/// encoder's layout, `rest` following `{"event":`. `Some((seq, None))` for
/// a deleted message, which has no text.
fn message_event(rest: &[u8]) -> Option<(Seq, Option<&[u8]>)> {
    let rest = rest.strip_prefix(br#""message","room":"#)?;
    let (_, rest) = integer(rest)?;
    let (seq, rest) = integer(rest.strip_prefix(br#","seq":"#)?)?;
    let (_, rest) = integer(rest.strip_prefix(br#","ts":"#)?)?;
    let (_, rest) = integer(rest.strip_prefix(br#","user":{"id":"#)?)?;
    let rest = rest.strip_prefix(br#","username":""#)?;
    // Usernames hold no quote or backslash; display names may.
    let quote = rest.iter().position(|&byte| byte == b'"')?;
    let rest = rest[quote..].strip_prefix(br#"","name":""#)?;
    let rest = &rest[string_end(rest)?..];
    let seq = Seq(u64::try_from(seq).ok()?);
    if rest.starts_with(br#""},"deleted":true"#) {
        return Some((seq, None));
    }
    Some((seq, Some(rest.strip_prefix(br#""},"text":""#)?)))
}

/// The id and seq of a `send` result: `{"id":N,"result":{"room":R,"seq":S,"ts":`.
fn send_result(frame: &[u8]) -> Option<(Option<u64>, Seq)> {
    let (id, rest) = match frame.strip_prefix(br#"{"id":"#) {
        Some(rest) => {
            let (id, rest) = integer(rest)?;
            (Some(u64::try_from(id).ok()?), rest.strip_prefix(b",")?)
        }
        None => (None, frame.strip_prefix(b"{")?),
    };
    let (_, rest) = integer(rest.strip_prefix(br#""result":{"room":"#)?)?;
    let (seq, rest) = integer(rest.strip_prefix(br#","seq":"#)?)?;
    rest.starts_with(br#","ts":"#)
        .then(|| Some((id, Seq(u64::try_from(seq).ok()?))))
        .flatten()
}

/// The code of an error reply: `{"id":N,"error":{"code":"C"` or
/// `{"error":{"code":"C"`.
fn error_head(frame: &[u8]) -> Option<&[u8]> {
    let rest = match frame.strip_prefix(br#"{"id":"#) {
        Some(rest) => {
            let (_, rest) = integer(rest)?;
            rest.strip_prefix(b",")?
        }
        None => frame.strip_prefix(b"{")?,
    };
    let rest = rest.strip_prefix(br#""error":{"code":""#)?;
    let quote = rest.iter().position(|&byte| byte == b'"')?;
    Some(&rest[..quote])
}

/// A decimal integer (optionally negative) at the start of `bytes`, and
/// what follows it; at most 18 digits, so it cannot overflow.
fn integer(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let (negative, digits_from) = match bytes.first() {
        Some(b'-') => (true, 1),
        _ => (false, 0),
    };
    let digits = bytes[digits_from..]
        .iter()
        .take(19)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let end = digits_from + digits;
    let value = bytes[digits_from..end]
        .iter()
        .fold(0i64, |value, &digit| value * 10 + i64::from(digit - b'0'));
    Some((if negative { -value } else { value }, &bytes[end..]))
}

/// Where the JSON string whose body starts `bytes` ends: the index of its
/// closing quote (escaped quotes skipped).
fn string_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    None
}

/// The fields a bench looks at in any v2 frame.
#[derive(Deserialize)]
struct Loose<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    result: Option<LooseResult<'a>>,
    #[serde(borrow)]
    error: Option<LooseError<'a>>,
}

#[derive(Deserialize)]
struct LooseResult<'a> {
    seq: Option<u64>,
    title: Option<IgnoredAny>,
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    recovered: Option<bool>,
    messages: Option<Vec<SeqOnly>>,
    has_more: Option<bool>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

#[derive(Deserialize)]
struct LooseError<'a> {
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

/// The seqs of a result's messages.
fn seqs(messages: Option<Vec<SeqOnly>>) -> Vec<Seq> {
    messages
        .unwrap_or_default()
        .into_iter()
        .map(|message| Seq(message.seq))
        .collect()
}

/// The general case: any field order, any spacing; join and history
/// results.
fn classify_slowly(text: &str) -> Incoming {
    let Ok(frame) = serde_json::from_str::<Loose<'_>>(text) else {
        return Incoming::Other;
    };
    match frame {
        Loose {
            event: Some(event),
            seq,
            text,
            ..
        } => match (event.as_ref(), seq) {
            ("message", Some(seq)) => Incoming::Numbered {
                seq: Seq(seq),
                stamp: text.as_deref().map(str::as_bytes).and_then(Stamp::parse),
            },
            _ => Incoming::Event,
        },
        Loose {
            error: Some(error), ..
        } => Incoming::Error(error.code.and_then(|code| error_code(code.as_bytes()))),
        Loose {
            id,
            result: Some(result),
            ..
        } => match result {
            LooseResult {
                title: Some(_),
                epoch: Some(epoch),
                seq: Some(seq),
                recovered,
                messages,
                has_more: _,
            } => Incoming::JoinResult(Box::new(JoinResult {
                id,
                epoch: Epoch(epoch.into_owned()),
                seq: Seq(seq),
                recovered: recovered.unwrap_or(false),
                messages: seqs(messages),
            })),
            LooseResult {
                title: None,
                epoch: Some(epoch),
                has_more: Some(has_more),
                messages,
                ..
            } => Incoming::History(Box::new(HistoryPage {
                id,
                epoch: Epoch(epoch.into_owned()),
                messages: seqs(messages),
                has_more,
            })),
            LooseResult {
                seq: Some(seq),
                epoch: None,
                ..
            } => Incoming::Sent { id, seq: Seq(seq) },
            _ => Incoming::Other,
        },
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use whisper_protocol::v2::{EventHead, Message, UserRef, encode, peek_event};
    use whisper_protocol::{ErrorCode, RoomId};

    use super::*;

    fn user(name: &str) -> UserRef {
        UserRef {
            id: 12,
            username: "bench-a1-0".into(),
            name: name.into(),
        }
    }

    fn message(seq: u64, name: &str, text: Option<&str>) -> Message {
        Message {
            room: RoomId(4),
            seq: Seq(seq),
            ts: 1_700_000_000_123,
            user: user(name),
            text: text.map(String::from),
        }
    }

    #[test]
    fn message_events_are_read_by_slicing_as_the_server_peeks_them() {
        let stamp = Stamp {
            sender: 3,
            seq: 9,
            sent_ns: 1234,
        };
        for name in ["", "Ann", r#"a "quoted" \ name"#, "é"] {
            let frame = encode::message(&message(77, name, Some(&stamp.to_text(80))), None);
            assert_eq!(
                peek_event(&frame),
                EventHead::Message {
                    room: RoomId(4),
                    seq: Seq(77)
                }
            );
            let (seq, text) = message_event(&frame.as_bytes()[9..]).expect("fast path");
            assert_eq!((seq, text.map(<[u8]>::len)), (Seq(77), Some(80 + 2)));
            assert_eq!(
                classify(frame.as_bytes()),
                Incoming::Numbered {
                    seq: Seq(77),
                    stamp: Some(stamp)
                },
                "{frame}"
            );
        }
        let nonce = encode::message(&message(5, "", Some("1 2 3 x")), Some("n-1"));
        assert!(matches!(
            classify(nonce.as_bytes()),
            Incoming::Numbered {
                seq: Seq(5),
                stamp: Some(_)
            }
        ));
        let deleted = encode::message(&message(6, "", None), None);
        assert_eq!(
            classify(deleted.as_bytes()),
            Incoming::Numbered {
                seq: Seq(6),
                stamp: None
            }
        );
    }

    #[test]
    fn send_results_and_errors_are_read_by_slicing() {
        let result = encode::send_result(Some(41), RoomId(4), Seq(900), 1_700_000_000_000);
        assert_eq!(send_result(result.as_bytes()), Some((Some(41), Seq(900))));
        assert_eq!(
            classify(result.as_bytes()),
            Incoming::Sent {
                id: Some(41),
                seq: Seq(900)
            }
        );
        let anonymous = encode::send_result(None, RoomId(4), Seq(1), 5);
        assert_eq!(
            classify(anonymous.as_bytes()),
            Incoming::Sent {
                id: None,
                seq: Seq(1)
            }
        );
        for id in [Some(3), None] {
            let error = encode::error(id, ErrorCode::RateLimited, Some(RoomId(4)));
            assert_eq!(error_head(error.as_bytes()), Some(&b"RATE_LIMITED"[..]));
            assert_eq!(
                classify(error.as_bytes()),
                Incoming::Error(Some(ErrorCode::RateLimited))
            );
        }
    }

    #[test]
    fn join_results_carry_epoch_seq_and_message_seqs() {
        let frame = encode::join_result(
            Some(1),
            RoomId(4),
            "Lobby \"x\"",
            &Epoch("Zt4kQ9".into()),
            Seq(8),
            true,
            &[message(7, "", Some("a")), message(8, "Ann", None)],
        );
        assert_eq!(
            classify(frame.as_bytes()),
            Incoming::JoinResult(Box::new(JoinResult {
                id: Some(1),
                epoch: Epoch("Zt4kQ9".into()),
                seq: Seq(8),
                recovered: true,
                messages: vec![Seq(7), Seq(8)],
            }))
        );
    }

    #[test]
    fn history_results_carry_epoch_seqs_and_has_more() {
        let epoch = Epoch("Zt4kQ9".into());
        let frame = encode::history_result(
            Some(9),
            RoomId(4),
            &epoch,
            &[message(54, "Ann", Some("lunch?")), message(55, "", None)],
            true,
        );
        assert_eq!(
            classify(frame.as_bytes()),
            Incoming::History(Box::new(HistoryPage {
                id: Some(9),
                epoch: epoch.clone(),
                messages: vec![Seq(54), Seq(55)],
                has_more: true,
            }))
        );
        let empty = encode::history_result(Some(10), RoomId(4), &epoch, &[], false);
        assert_eq!(
            classify(empty.as_bytes()),
            Incoming::History(Box::new(HistoryPage {
                id: Some(10),
                epoch,
                messages: Vec::new(),
                has_more: false,
            }))
        );
    }

    #[test]
    fn other_frames_are_told_apart() {
        let room = RoomId(4);
        for event in [
            encode::enter(room, &user(""), 5),
            encode::leave(room, &user(""), 5),
            encode::typing(room, &user("")),
        ] {
            assert_eq!(classify(event.as_bytes()), Incoming::Event, "{event}");
        }
        assert_eq!(
            classify(encode::leave_result(Some(2), room).as_bytes()),
            Incoming::Other
        );
        assert_eq!(classify(b"not json"), Incoming::Other);
        // Another field order still reads, through serde_json.
        assert_eq!(
            classify(br#"{"seq":3,"text":"1 2 3 ","event":"message","room":4}"#),
            Incoming::Numbered {
                seq: Seq(3),
                stamp: Some(Stamp {
                    sender: 1,
                    seq: 2,
                    sent_ns: 3
                })
            }
        );
        assert_eq!(
            classify(br#"{ "result" : {"ts":1, "seq":2, "room":4}, "id":9 }"#),
            Incoming::Sent {
                id: Some(9),
                seq: Seq(2)
            }
        );
    }
}

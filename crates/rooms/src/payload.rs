//! The unit the layer carries: an already-encoded frame.

use bytes::Bytes;

/// An already-encoded frame, immutable and shared by reference count.
///
/// A broadcast is encoded once (by `whisper_protocol::encode`) and every
/// receiver gets a clone of the same `Payload`: cloning bumps a reference
/// count, it never copies the text. This is what keeps a message to a room of
/// ten thousand connections at one serialization and one allocation.
///
/// The frame is kept as [`Bytes`], the form a socket writer wants, and is
/// always valid UTF-8 because the only constructors take a `String` or a
/// `&'static str`. Turning a `String` into a `Payload` takes over its buffer
/// without copying it.
///
/// ```
/// use whisper_rooms::Payload;
///
/// let payload = Payload::from(String::from(r#"{"join":"1"}"#));
/// let copy = payload.clone();
/// // The clone shares the bytes; nothing was copied.
/// assert_eq!(payload.as_bytes().as_ptr(), copy.as_bytes().as_ptr());
/// assert_eq!(copy.as_str(), r#"{"join":"1"}"#);
/// ```
///
/// A payload may be marked [expendable](Payload::expendable): a notice
/// (someone entered, someone is typing) whose loss costs a receiver little,
/// which the layer drops for a receiver that is falling behind rather than
/// close that receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    bytes: Bytes,
    expendable: bool,
}

impl Payload {
    /// The frame as text, for text WebSocket frames, logs and tests.
    ///
    /// This re-checks that the bytes are UTF-8: a linear scan, never a copy
    /// or an allocation. We keep only the `Bytes` (rather than an `Arc<str>`
    /// beside them) because the socket writer must hand the bytes to its
    /// WebSocket library, which validates them anyway; caching a `&str` would
    /// save nothing on the delivery path and cost a second reference count.
    pub fn as_str(&self) -> &str {
        // Cannot fail: every constructor takes a `String` or `&str`.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The frame's bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The frame's bytes as a shared [`Bytes`] handle, for socket writers;
    /// no copy is made.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Length of the frame in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Marks the payload as one a receiver can do without: when a
    /// receiver's queue is half full, the layer drops expendable payloads
    /// to it (new ones, and then those already queued) so that the ones
    /// that matter still fit. Presence and typing notices are expendable;
    /// messages never are.
    ///
    /// ```
    /// use whisper_rooms::Payload;
    ///
    /// let notice = Payload::from(r#"{"msg_type":4}"#).expendable();
    /// assert!(notice.is_expendable());
    /// assert!(!Payload::from("a message").is_expendable());
    /// ```
    #[must_use]
    pub fn expendable(mut self) -> Self {
        self.expendable = true;
        self
    }

    /// Whether the layer may drop this payload for a receiver that is
    /// falling behind (see [`Payload::expendable`]).
    pub fn is_expendable(&self) -> bool {
        self.expendable
    }

    /// The parts before and after the first `delimiter`, sharing these
    /// bytes (no copy); `None` when there is none. For payloads that carry
    /// a frame in several encodings, each receiver taking its own: one
    /// broadcast still reaches every kind of receiver. `delimiter` must be
    /// ASCII, so both parts stay UTF-8.
    ///
    /// ```
    /// use whisper_rooms::Payload;
    ///
    /// let both = Payload::from("{\"v\":2}\0{\"v\":1}");
    /// let (v2, v1) = both.split_once('\0').unwrap();
    /// assert_eq!((v2.as_str(), v1.as_str()), (r#"{"v":2}"#, r#"{"v":1}"#));
    /// ```
    pub fn split_once(&self, delimiter: char) -> Option<(Payload, Payload)> {
        if !delimiter.is_ascii() {
            return None;
        }
        let delimiter = delimiter as u8;
        // Every v2 member of a room splits every event: a byte-by-byte scan
        // was 14% of a loaded server's time, memchr's is negligible.
        let at = memchr::memchr(delimiter, &self.bytes)?;
        let part = |bytes| Payload {
            bytes,
            expendable: self.expendable,
        };
        Some((
            part(self.bytes.slice(..at)),
            part(self.bytes.slice(at + 1..)),
        ))
    }
}

impl From<String> for Payload {
    /// Takes over the string's buffer; no copy.
    fn from(text: String) -> Self {
        Payload {
            bytes: Bytes::from(text),
            expendable: false,
        }
    }
}

impl From<&'static str> for Payload {
    /// Points at the static text; no copy, no allocation.
    fn from(text: &'static str) -> Self {
        Payload {
            bytes: Bytes::from_static(text.as_bytes()),
            expendable: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_becomes_a_payload_without_a_copy() {
        let text = String::from("hello");
        let address = text.as_ptr();
        let payload = Payload::from(text);
        assert_eq!(payload.as_bytes().as_ptr(), address);
        assert_eq!(payload.into_bytes().as_ptr(), address);
    }

    #[test]
    fn clones_share_the_bytes() {
        let payload = Payload::from("static frame");
        let clone = payload.clone();
        assert_eq!(payload.as_bytes().as_ptr(), clone.as_bytes().as_ptr());
        assert_eq!(payload, clone);
    }

    #[test]
    fn split_parts_share_the_bytes() {
        let payload = Payload::from(String::from("é\0ü\0"));
        let (first, rest) = payload.split_once('\0').expect("a delimiter");
        assert_eq!((first.as_str(), rest.as_str()), ("é", "ü\0"));
        assert_eq!(first.as_bytes().as_ptr(), payload.as_bytes().as_ptr());
        assert_eq!(Payload::from("none").split_once('\0'), None);
        assert_eq!(payload.split_once('é'), None, "only ASCII delimiters");
    }

    #[test]
    fn split_parts_stay_expendable() {
        let notice = Payload::from("a\0b").expendable();
        let (first, rest) = notice.split_once('\0').expect("a delimiter");
        assert!(first.is_expendable() && rest.is_expendable());
    }

    #[test]
    fn text_and_lengths() {
        let payload = Payload::from(String::from("héllo"));
        assert_eq!(payload.as_str(), "héllo");
        assert_eq!(payload.len(), 6);
        assert!(!payload.is_empty());
        assert!(Payload::from("").is_empty());
    }
}

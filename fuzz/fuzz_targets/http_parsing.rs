//! The HTTP parsers of untrusted input: `Cookie` headers and form bodies.
//!
//! The input is read twice. Split at newlines (which no header value may
//! hold), each line that is a valid header value becomes one `Cookie`
//! header; the whole input is also a form body.

#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use whisper_server::parsing::{cookie, parse_form};

fuzz_target!(|data: &[u8]| {
    check_cookies(data);
    check_form(data);
});

fn check_cookies(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    // The first name in the input, so that lookups that hit are common too.
    let first_name = data
        .split(|&b| b == b'=' || b == b';' || b == b'\n')
        .next()
        .and_then(|name| std::str::from_utf8(name).ok())
        .unwrap_or_default()
        .trim();
    for name in [first_name, "sessionid", "csrftoken", ""] {
        if let Some(value) = cookie(&headers, name) {
            assert!(!value.contains(';'), "{value:?} holds a separator");
            assert_eq!(value.trim(), value, "{value:?} is not trimmed");
        }
    }
}

fn check_form(data: &[u8]) {
    let Some(form) = parse_form(data) else {
        return;
    };
    // What was read must read back the same once encoded as a browser would.
    let encoded = serde_urlencoded::to_string(&form).expect("a map of strings encodes");
    assert_eq!(parse_form(encoded.as_bytes()), Some(form), "{encoded:?}");
}

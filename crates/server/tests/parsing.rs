//! Properties of the parsers that read untrusted HTTP input: form bodies and
//! `Cookie` headers. Neither may panic on anything a client sends, a form a
//! browser would encode reads back as it was filled in, and a cookie is found
//! wherever it sits among the others.

use std::collections::HashMap;

use http::{HeaderMap, HeaderValue, header};
use proptest::collection::{hash_set, vec};
use proptest::prelude::*;
use whisper_server::parsing::{cookie, parse_form};

/// Field names and values as a user might fill them in: any text, including
/// the characters form encoding has to escape.
fn field_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..24).prop_map(String::from_iter),
        "[&=+%; \\x00-\\x1f#?/aé漢😀]{0,16}",
    ]
}

/// Bodies that look like forms, with broken and overlong percent escapes.
fn form_like_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        "([a-z=&+;%]|%[0-9a-fA-FgG]{0,2}|%[cC][0-3]|%[eE][0-9]%[89ab][0-9]){0,40}"
            .prop_map(String::into_bytes),
    ]
}

/// A cookie name: an RFC 6265 token.
fn cookie_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A cookie value as browsers send them: visible ASCII without `;`, and
/// with no surrounding blanks (they would be trimmed).
fn cookie_value() -> impl Strategy<Value = String> {
    "([!-:<-~]([ !-:<-~]{0,14}[!-:<-~])?)?"
}

/// Bytes that make a valid header value (`HeaderValue::from_bytes` accepts
/// them), visible ASCII or not.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[ -~\\t]{0,64}".prop_map(String::into_bytes),
        vec(
            prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
            0..64
        ),
        vec(any::<u8>(), 0..64),
    ]
    .prop_filter_map("not a header value", |bytes| {
        HeaderValue::from_bytes(&bytes).ok()
    })
}

/// Puts `pairs` into one or more `Cookie` headers, split where `splits`
/// says, separated by `;` with the blanks `spacing` picks, and with junk
/// (pairs without `=`, empty names, empty segments) between them.
fn cookie_headers(pairs: &[(String, String)], splits: &[bool], spacing: &[u8]) -> HeaderMap {
    const JUNK: [&str; 4] = ["", "novalue", "=orphan", "  "];
    let mut headers = HeaderMap::new();
    let mut line = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let pick = usize::from(spacing[i % spacing.len()]);
        if !line.is_empty() {
            line.push_str([";", "; ", " ;", " ; "][pick % 4]);
        }
        if pick % 3 == 0 {
            line.push_str(JUNK[pick % JUNK.len()]);
            line.push(';');
        }
        line.push_str(&format!("{name}={value}"));
        if splits[i % splits.len()] {
            headers.append(
                header::COOKIE,
                HeaderValue::from_str(&line).expect("cookie pairs make a header value"),
            );
            line.clear();
        }
    }
    if !line.is_empty() {
        headers.append(
            header::COOKIE,
            HeaderValue::from_str(&line).expect("cookie pairs make a header value"),
        );
    }
    headers
}

proptest! {
    #[test]
    fn parse_form_never_panics(body in form_like_body()) {
        let _ = parse_form(&body);
    }

    #[test]
    fn an_encoded_form_reads_back_with_the_last_value_winning(
        pairs in vec((field_text(), field_text()), 0..8),
        repeat in any::<prop::sample::Index>(),
        last in field_text(),
    ) {
        let mut pairs = pairs;
        // Repeat one of the names, so that duplicates are always exercised.
        if !pairs.is_empty() {
            let name = pairs[repeat.index(pairs.len())].0.clone();
            pairs.push((name, last));
        }
        let body = serde_urlencoded::to_string(&pairs).unwrap();
        let expected: HashMap<String, String> = pairs.into_iter().collect();
        prop_assert_eq!(parse_form(body.as_bytes()), Some(expected), "{}", body);
    }

    #[test]
    fn cookie_never_panics_on_any_header(
        values in vec(header_value(), 0..4),
        name in prop_oneof![cookie_name(), any::<String>()],
    ) {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, value);
        }
        for name in [name.as_str(), "sessionid", "csrftoken", ""] {
            if let Some(value) = cookie(&headers, name) {
                prop_assert!(!value.contains(';'), "{:?}", value);
                prop_assert_eq!(value.trim(), value.as_str());
            }
        }
    }

    #[test]
    fn a_cookie_is_found_among_others(
        names in hash_set(cookie_name(), 1..8),
        values in vec(cookie_value(), 8),
        target in any::<prop::sample::Index>(),
        splits in vec(any::<bool>(), 1..8),
        spacing in vec(any::<u8>(), 1..8),
    ) {
        let pairs: Vec<(String, String)> = names.into_iter().zip(values).collect();
        let headers = cookie_headers(&pairs, &splits, &spacing);
        let (name, value) = &pairs[target.index(pairs.len())];
        prop_assert_eq!(cookie(&headers, name), Some(value.clone()), "{:?}", headers);
        prop_assert_eq!(cookie(&headers, "no-such-cookie"), None);
    }
}

/// Browsers send every cookie of a site in one `Cookie` header, and a page's
/// script may set a cookie holding UTF-8 (`document.cookie = "theme=café"`).
/// Such a neighbour must not hide the session cookie.
#[test]
fn a_non_ascii_neighbour_does_not_hide_a_cookie() {
    let mut headers = HeaderMap::new();
    let line = "theme=caf\u{e9}; sessionid=abc";
    headers.append(
        header::COOKIE,
        HeaderValue::from_bytes(line.as_bytes()).unwrap(),
    );
    assert_eq!(cookie(&headers, "sessionid").as_deref(), Some("abc"));
}

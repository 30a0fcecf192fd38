//! The client address behind proxies: `client_address` must never panic,
//! must answer the peer itself when the peer is not trusted, and otherwise
//! an address that the peer or one of the forwarding headers named.
//!
//! The input's first line lists trusted proxies (comma-separated, as
//! `--trusted-proxies` takes them), the second is the peer, and every
//! further line is an `X-Forwarded-For` value, or `X-Real-IP` when it
//! starts with `r:`.

#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use whisper_server::TrustedProxy;
use whisper_server::parsing::client_address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let trusted: Vec<TrustedProxy> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(|proxy| proxy.parse().ok())
        .collect();
    let Some(peer) = lines
        .next()
        .and_then(|peer| peer.trim().parse::<IpAddr>().ok())
    else {
        return;
    };
    let mut headers = HeaderMap::new();
    let mut named = vec![peer.to_canonical()];
    for line in lines {
        let (name, value) = match line.strip_prefix("r:") {
            Some(value) => ("x-real-ip", value),
            None => ("x-forwarded-for", line),
        };
        if let Ok(header) = HeaderValue::from_str(value) {
            headers.append(name, header);
            named.extend(
                value
                    .split(',')
                    .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
                    .map(|address| address.to_canonical()),
            );
        }
    }
    let client = client_address(peer, &headers, &trusted);
    assert!(
        named.contains(&client),
        "{client} was named by nobody in {text:?}"
    );
    if trusted.is_empty() {
        assert_eq!(client, peer.to_canonical());
    }
});

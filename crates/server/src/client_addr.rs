//! Who the client is: the peer of the TCP connection, or, when that peer
//! is a proxy the operator trusts, the address the proxy says it serves.
//!
//! The throttles count per client address, so this decides whom a limit
//! hits. Forwarding headers are believed only from trusted peers: from
//! anyone else they are whatever the client chose to write.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`)
/// whose peers are proxies that set `X-Forwarded-For` or `X-Real-IP`
/// truthfully ([`crate::Config::trusted_proxies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&address)
    }
}

/// Why a trusted proxy could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a network like 10.0.0.0/8")]
pub struct InvalidProxy(String);

impl FromStr for TrustedProxy {
    type Err = InvalidProxy;

    fn from_str(text: &str) -> Result<Self, InvalidProxy> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|network| TrustedProxy(network.trunc()))
            .map_err(|_| InvalidProxy(text.to_owned()))
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The client's address for a request from `peer`.
///
/// From a trusted peer, `X-Forwarded-For` is read from the right (each
/// proxy appends the address it was reached from), skipping the trusted
/// proxies of a chain: the first other address is the client. Without that
/// header, `X-Real-IP`. A value that does not parse ends the walk at the
/// last address known good, so a forged or garbled entry never names
/// someone else. From any other peer, the peer itself.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let is_trusted = |address: IpAddr| trusted.iter().any(|proxy| proxy.contains(address));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    if forwarded.is_empty() {
        return headers
            .get("x-real-ip")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<IpAddr>().ok())
            .map_or(peer, |address| address.to_canonical());
    }
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        let Ok(address) = hop.parse::<IpAddr>() else {
            break;
        };
        client = address.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter()
            .map(|text| text.parse().expect("a proxy"))
            .collect()
    }

    #[test]
    fn proxies_are_addresses_or_networks() {
        assert_eq!(proxies(&["10.1.2.3/8"]), proxies(&["10.0.0.0/8"]));
        assert!(proxies(&["::1"])[0].contains(ip("::1")));
        for bad in ["", "nginx", "10.0.0.0/33", "10.0.0.1:80"] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let claims = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-real-ip", "198.51.100.8"),
        ]);
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("203.0.113.1"), &claims, &trusted),
            ip("203.0.113.1")
        );
        assert_eq!(client_address(ip("10.0.0.5"), &claims, &[]), ip("10.0.0.5"));
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("127.0.0.1");
        // A client's own claim is on the left; the proxies' on the right.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(client_address(peer, &chain, &trusted), ip("198.51.100.7"));
        let split = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(client_address(peer, &split, &trusted), ip("198.51.100.7"));
        let real_ip = headers(&[("x-real-ip", "2001:db8::1")]);
        assert_eq!(client_address(peer, &real_ip, &trusted), ip("2001:db8::1"));
        assert_eq!(client_address(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn garbage_ends_the_walk_at_the_last_good_hop() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let garbled = headers(&[("x-forwarded-for", "198.51.100.7, junk, 10.0.0.9")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &garbled, &trusted),
            ip("10.0.0.9")
        );
        let mapped = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &mapped, &trusted),
            ip("198.51.100.7")
        );
    }
}

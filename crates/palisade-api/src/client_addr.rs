//! The client's address and scheme. Behind a proxy listed in `trusted_proxies`, `Forwarded`
//! (RFC 7239) or `X-Forwarded-For` / `X-Forwarded-Proto` are believed, walking the chain from
//! the nearest hop and skipping trusted proxies; from anyone else they are ignored and the
//! socket's peer address is the client everywhere (rate limits, audit, API-key allow-lists).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use forwarded_header_value::{ForwardedHeaderValue, Protocol};
use ipnet::IpNet;

/// Where a request came from, as this server believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// A trusted proxy said the client spoke HTTPS to it.
    pub forwarded_https: bool,
}

/// Marks a request that arrived over this server's own TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

/// The proxies whose forwarding headers are believed (CIDR networks).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8`-style networks (a bare address is one host); names the bad entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let net = entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                format!("trusted_proxies: {entry:?} is not an address or CIDR network (e.g. 10.0.0.0/8)")
            })?;
            networks.push(net);
        }
        Ok(Self(Arc::new(networks)))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, from the forwarding headers when `peer` is trusted.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return ClientAddr { ip: peer, forwarded_https: false };
        }
        let forwarded = headers
            .get("forwarded")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| ForwardedHeaderValue::from_forwarded(v).ok())
            .or_else(|| {
                headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| ForwardedHeaderValue::from_x_forwarded_for(v).ok())
            });
        let https = match forwarded.as_ref().and_then(|chain| chain.proximate().forwarded_proto) {
            Some(proto) => proto == Protocol::Https,
            None => headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.trim() == "https"),
        };
        let Some(chain) = forwarded else { return ClientAddr { ip: peer, forwarded_https: https } };
        let hops: Vec<IpAddr> = chain.iter().filter_map(|stanza| stanza.forwarded_for_ip()).map(canonical).collect();
        // Nearest first: the first address that is not one of our proxies is the client. If
        // every hop is a trusted proxy, the remotest one is the best we know.
        let ip = hops.iter().rev().find(|ip| !self.trusts(**ip)).or(hops.first()).copied().unwrap_or(peer);
        ClientAddr { ip, forwarded_https: https }
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) as plain IPv4, so lists and limits see one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub async fn middleware(State(trusted): State<TrustedProxies>, mut request: Request, next: Next) -> Response {
    if let Some(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip()) {
        let client = trusted.resolve(peer, request.headers());
        request.extensions_mut().insert(client);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        let client = trusted.resolve("203.0.113.9".parse().unwrap(), &spoofed);
        assert_eq!(client, ClientAddr { ip: "203.0.113.9".parse().unwrap(), forwarded_https: false });
        let nobody = TrustedProxies::default().resolve("10.1.1.1".parse().unwrap(), &spoofed);
        assert_eq!(nobody.ip, "10.1.1.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_trusted_chain_yields_the_nearest_untrusted_hop() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).unwrap();
        // The client forged the first entry; our proxies appended the real one.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2"), ("x-forwarded-proto", "https")]);
        let client = trusted.resolve("10.0.0.1".parse().unwrap(), &chain);
        assert_eq!(client, ClientAddr { ip: "198.51.100.7".parse().unwrap(), forwarded_https: true });
        let rfc7239 = headers(&[("forwarded", "for=198.51.100.8;proto=https, for=\"[2001:db8::1]:4711\"")]);
        let client = trusted.resolve("192.0.2.1".parse().unwrap(), &rfc7239);
        assert_eq!(client.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        let mapped =
            trusted.resolve("::ffff:10.0.0.1".parse().unwrap(), &headers(&[("x-forwarded-for", "198.51.100.9")]));
        assert_eq!(mapped.ip, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
    }
}

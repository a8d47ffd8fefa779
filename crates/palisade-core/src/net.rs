//! Which network peers are this machine: the one rule for "plaintext is acceptable here" shared
//! by the database, Redis and SMTP links.

/// Whether `host` (a name or an IP address, IPv6 with or without brackets) is this machine:
/// `localhost` or a loopback address. Any other name counts as another machine, even one that
/// happens to resolve to a loopback address: a name proves nothing about where it points.
pub fn is_this_machine(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_this_machine;

    #[test]
    fn only_localhost_and_loopback_addresses_are_this_machine() {
        for local in ["localhost", "127.0.0.1", "127.0.0.9", "::1", "[::1]"] {
            assert!(is_this_machine(local), "{local}");
        }
        for remote in ["db.internal", "10.0.0.7", "localhost.example.com", "::ffff:10.0.0.7", ""] {
            assert!(!is_this_machine(remote), "{remote}");
        }
    }
}

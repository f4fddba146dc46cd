//! Which network addresses a media fetch may connect to.
//!
//! Only globally routable unicast addresses are public. Everything a server-side request forgery
//! would aim at is not: loopback, private (RFC 1918, unique-local), link-local, carrier-grade
//! NAT, multicast, broadcast, unspecified, documentation and benchmarking ranges, and IPv6
//! addresses that embed one of those IPv4 addresses (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
//!
//! Hosts are compared after WHATWG URL parsing (the `url` crate), which already turns every
//! IPv4 spelling (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`) into one address, so the
//! checks here see the address the connection would really use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public (for error messages).
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified/\"this network\""),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved/broadcast"),
    ];
    RANGES.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, why)| *why)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d (IPv4-mapped) and ::a.b.c.d (IPv4-compatible, deprecated): the v4 rules.
    if s[0..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return v4_reason(embedded_v4(s[6], s[7])).map(|_| "IPv4-mapped non-public");
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // ::/96 IPv4-compatible addresses are deprecated and never routed.
        return Some("IPv4-compatible");
    }
    // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765).
    if s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some("IPv4-translated");
    }
    // NAT64 64:ff9b::/96 embeds an IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_reason(embedded_v4(s[6], s[7])).map(|_| "NAT64 of a non-public IPv4 address");
    }
    // 6to4 2002:AABB:CCDD::/48 embeds an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return v4_reason(embedded_v4(s[1], s[2])).map(|_| "6to4 of a non-public IPv4 address");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("unique-local (private)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("link-local");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("site-local");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("multicast");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation");
    }
    if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        return Some("discard-only");
    }
    // 2001::/23 holds IETF assignments (Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID...).
    if s[0] == 0x2001 && s[1] < 0x0200 {
        return Some("IETF protocol assignment");
    }
    None
}

/// Host names that always mean this machine (never resolved).
pub fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost") || h == "localhost.localdomain" || h.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn private_and_special_ranges_are_refused() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "2001::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not be public");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn local_names() {
        for h in
            ["localhost", "LOCALHOST", "localhost.", "a.localhost", "localhost.localdomain", ""]
        {
            assert!(is_local_name(h), "{h}");
        }
        assert!(!is_local_name("localhost.example.com"));
        assert!(!is_local_name("example.com"));
    }
}

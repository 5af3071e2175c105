//! The address rule: which IP addresses a script may reach.
//!
//! A script runs inside the operator's network, so an outbound request to an
//! internal address would let any tenant probe or call what the operator
//! keeps private: the loopback interface (PiCloud's own API, a database on
//! `127.0.0.1`), the private LAN, and above all a cloud's metadata service,
//! which hands out the machine's credentials to whoever asks. The rule is
//! one pure function, [`refusal`], that says whether an address is one of
//! those and why; [`EgressAllow`] (the operator's `PICLOUD_EGRESS_ALLOW`)
//! names the ranges that may be reached anyway, and [`EgressAllow::check`]
//! combines the two.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:0:0/96`,
//! IPv4-translated `::ffff:0:0:0/96`, IPv4-compatible `::/96`, NAT64
//! `64:ff9b::/96` and 6to4 `2002::/16`) reach, or are routed towards, that
//! IPv4 address, so they are judged by it: `::ffff:127.0.0.1` is a loopback
//! address. IPv6 outside the global unicast space `2000::/3` is refused as
//! reserved once the specific ranges are judged, since no public host has
//! such an address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Why an address may not be reached.
///
/// [`Refusal::reason`] (and `Display`) names it for a person, as a noun
/// phrase that completes "`<ip>` is …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// `0.0.0.0/8` ("this network"; on Linux, connecting to it reaches the
    /// local host) and `::`.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// The private ranges of RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// The carrier-grade NAT range `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// A cloud's instance metadata service: `169.254.169.254` (AWS, GCP,
    /// Azure, …), `169.254.170.2` (AWS ECS), `100.100.100.200` (Alibaba),
    /// `192.0.0.192` (Oracle) and `fd00:ec2::254` (AWS over IPv6).
    CloudMetadata,
    /// `169.254.0.0/16` and `fe80::/10`.
    LinkLocal,
    /// IPv6 unique local addresses, `fc00::/7`.
    UniqueLocal,
    /// The deprecated IPv6 site-local range `fec0::/10`.
    SiteLocal,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// The limited broadcast address `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4`, and IPv6 outside the global unicast space `2000::/3`.
    Reserved,
    /// The documentation ranges `192.0.2.0/24`, `198.51.100.0/24`,
    /// `203.0.113.0/24`, `2001:db8::/32` and `3fff::/20`.
    Documentation,
    /// The benchmarking ranges `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// The IETF protocol assignments `192.0.0.0/24`.
    ProtocolAssignment,
    /// The IPv6 discard-only prefix `100::/64`.
    DiscardOnly,
    /// The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215), which the
    /// operator's own translator maps to addresses of its choosing.
    LocalNat64,
}

impl Refusal {
    /// The reason for a person: "a loopback address", "the cloud metadata
    /// address", …
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedAddressSpace => "a carrier-grade NAT address",
            Self::CloudMetadata => "the cloud metadata address",
            Self::LinkLocal => "a link-local address",
            Self::UniqueLocal => "a unique local address",
            Self::SiteLocal => "a site-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::ProtocolAssignment => "an IETF protocol assignment address",
            Self::DiscardOnly => "a discard-only address",
            Self::LocalNat64 => "a local-use NAT64 address",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The rule itself, without any allowance: `None` if a script may reach
/// `ip`, otherwise why not.
#[must_use]
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

/// Whether `ip` lies in `net`/`len` (`net` must have no host bits).
fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    ip.to_bits() & mask == u32::from_be_bytes(net)
}

/// Whether `ip` lies in `net`/`len` (`net` must have no host bits).
fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits()
}

/// The IPv4 cloud metadata endpoints.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254),
    // Azure's WireServer: a public address that reaches the platform's
    // internal services.
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];

/// AWS's IPv6 metadata endpoint.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    // Named first: each lies inside a broader range below.
    if METADATA_V4.contains(&ip) {
        return Some(Refusal::CloudMetadata);
    }
    if ip == Ipv4Addr::BROADCAST {
        return Some(Refusal::Broadcast);
    }
    const RANGES: [([u8; 4], u32, Refusal); 14] = [
        ([0, 0, 0, 0], 8, Refusal::Unspecified),
        ([127, 0, 0, 0], 8, Refusal::Loopback),
        ([10, 0, 0, 0], 8, Refusal::Private),
        ([172, 16, 0, 0], 12, Refusal::Private),
        ([192, 168, 0, 0], 16, Refusal::Private),
        ([100, 64, 0, 0], 10, Refusal::SharedAddressSpace),
        ([169, 254, 0, 0], 16, Refusal::LinkLocal),
        ([192, 0, 0, 0], 24, Refusal::ProtocolAssignment),
        ([192, 0, 2, 0], 24, Refusal::Documentation),
        ([198, 51, 100, 0], 24, Refusal::Documentation),
        ([203, 0, 113, 0], 24, Refusal::Documentation),
        ([198, 18, 0, 0], 15, Refusal::Benchmarking),
        ([224, 0, 0, 0], 4, Refusal::Multicast),
        ([240, 0, 0, 0], 4, Refusal::Reserved),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, why)| *why)
}

/// The IPv4 address an IPv6 form carries and is judged by: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, other than `::` and `::1`), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::/48`).
#[must_use]
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    // The low 32 bits: truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let low = Ipv4Addr::from_bits(bits as u32);
    let prefix_96 = |net: Ipv6Addr| in_v6(ip, net, 96);
    if prefix_96(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0))
        || prefix_96(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0))
        || prefix_96(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0))
    {
        return Some(low);
    }
    if prefix_96(Ipv6Addr::UNSPECIFIED) && ip != Ipv6Addr::UNSPECIFIED && ip != Ipv6Addr::LOCALHOST
    {
        return Some(low);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        // Bits 16..48 hold the IPv4 address.
        #[allow(clippy::cast_possible_truncation)]
        return Some(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    None
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some(Refusal::Unspecified);
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some(Refusal::Loopback);
    }
    if ip == METADATA_V6 {
        return Some(Refusal::CloudMetadata);
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return refusal_v4(v4);
    }
    let ranges = [
        (
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            Refusal::LocalNat64,
        ),
        (
            Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            64,
            Refusal::DiscardOnly,
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            Refusal::UniqueLocal,
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            Refusal::LinkLocal,
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            Refusal::SiteLocal,
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            Refusal::Multicast,
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            Refusal::Documentation,
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            Refusal::Documentation,
        ),
        (
            Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
            48,
            Refusal::Benchmarking,
        ),
    ];
    if let Some((_, _, why)) = ranges.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(*why);
    }
    if !in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Some(Refusal::Reserved);
    }
    None
}

/// The addresses scripts may reach despite [`refusal`]: the operator's
/// `PICLOUD_EGRESS_ALLOW`, a comma-separated list of IP addresses and CIDR
/// ranges, IPv4 and IPv6 (`10.0.0.5, 192.168.1.0/24, fd00::/8`).
///
/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`) is a member when its
/// IPv4 address is: a dual-stack socket connects to that address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressAllow {
    nets: Vec<IpNet>,
}

/// A `PICLOUD_EGRESS_ALLOW` entry that is neither an IP address nor a CIDR
/// range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{var}: entry {position} `{entry}` is neither an IP address nor a CIDR range \
     (examples: 10.0.0.5, 10.0.0.0/8, fd00::/8)",
    var = EgressAllow::ENV
)]
pub struct EgressAllowError {
    /// The entry as written, trimmed.
    pub entry: String,
    /// Its position in the list, counting from 1.
    pub position: usize,
}

impl EgressAllow {
    /// The environment variable the server reads the list from.
    pub const ENV: &'static str = "PICLOUD_EGRESS_ALLOW";

    /// The allowance made of these ranges (host bits are cleared).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().map(|net| net.trunc()).collect(),
        }
    }

    /// Parses the `PICLOUD_EGRESS_ALLOW` syntax: entries separated by
    /// commas, whitespace around them ignored, empty entries skipped (so an
    /// empty or blank variable allows nothing extra). An entry is an IP
    /// address (one host) or a CIDR range; the first bad entry is an error
    /// naming it.
    ///
    /// # Errors
    /// [`EgressAllowError`] for an entry that is neither.
    pub fn parse(list: &str) -> Result<Self, EgressAllowError> {
        let mut nets = Vec::new();
        for (index, entry) in list.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| EgressAllowError {
                    entry: entry.to_owned(),
                    position: index + 1,
                })?;
            nets.push(net.trunc());
        }
        Ok(Self { nets })
    }

    /// The ranges, host bits cleared.
    #[must_use]
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether nothing is allowed beyond the rule.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a member.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    }

    /// The rule with this allowance: members may be reached, everything
    /// else as [`refusal`] says.
    ///
    /// # Errors
    /// The [`Refusal`] of an address that is neither a member nor allowed
    /// by the rule.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let refused = refusal(ip);
        // A metadata address is reachable only through an entry naming it
        // alone: a broad range (`169.254.0.0/16`, `0.0.0.0/0`) opened for
        // something else does not open it.
        if refused == Some(Refusal::CloudMetadata) {
            let named = self.nets.iter().any(|net| {
                net.prefix_len() == net.max_prefix_len()
                    && (net.addr() == ip
                        || matches!((net.addr(), ip), (IpAddr::V4(a), IpAddr::V6(b)) if b.to_ipv4_mapped() == Some(a)))
            });
            return if named {
                Ok(())
            } else {
                Err(Refusal::CloudMetadata)
            };
        }
        if self.contains(ip) {
            return Ok(());
        }
        refused.map_or(Ok(()), Err)
    }
}

impl FromStr for EgressAllow {
    type Err = EgressAllowError;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::parse(list)
    }
}

impl fmt::Display for EgressAllow {
    /// The list in `PICLOUD_EGRESS_ALLOW` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn why(s: &str) -> Option<Refusal> {
        refusal(ip(s))
    }

    /// Each address with the refusal the rule gives it.
    fn assert_all(cases: &[(&str, Option<Refusal>)]) {
        for (address, expected) in cases {
            assert_eq!(why(address), *expected, "{address}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        assert_all(&[
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("223.255.255.255", None),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001::1", None),
            ("3ffe::1", None),
            // 6to4 and NAT64 of a public address are as public as it.
            ("2002:0808:0808::1", None),
            ("64:ff9b::8.8.8.8", None),
            ("::ffff:8.8.8.8", None),
        ]);
    }

    #[test]
    fn unspecified() {
        assert_all(&[
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Unspecified)),
            ("0.255.255.255", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
        ]);
    }

    #[test]
    fn loopback() {
        assert_all(&[
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.0.0.0", Some(Refusal::Loopback)),
            ("127.1.2.3", Some(Refusal::Loopback)),
            ("127.255.255.255", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
        ]);
    }

    #[test]
    fn private() {
        assert_all(&[
            ("10.0.0.0", Some(Refusal::Private)),
            ("10.255.255.255", Some(Refusal::Private)),
            ("172.16.0.0", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("192.168.0.1", Some(Refusal::Private)),
            ("192.168.255.255", Some(Refusal::Private)),
        ]);
    }

    #[test]
    fn carrier_grade_nat() {
        assert_all(&[
            ("100.64.0.0", Some(Refusal::SharedAddressSpace)),
            ("100.127.255.255", Some(Refusal::SharedAddressSpace)),
        ]);
    }

    #[test]
    fn cloud_metadata_is_named_as_such() {
        assert_all(&[
            ("169.254.169.254", Some(Refusal::CloudMetadata)),
            ("169.254.170.2", Some(Refusal::CloudMetadata)),
            ("100.100.100.200", Some(Refusal::CloudMetadata)),
            ("192.0.0.192", Some(Refusal::CloudMetadata)),
            ("168.63.129.16", Some(Refusal::CloudMetadata)),
            ("fd00:ec2::254", Some(Refusal::CloudMetadata)),
            ("::ffff:169.254.169.254", Some(Refusal::CloudMetadata)),
            ("64:ff9b::a9fe:a9fe", Some(Refusal::CloudMetadata)),
            ("2002:a9fe:a9fe::", Some(Refusal::CloudMetadata)),
        ]);
        assert_eq!(
            Refusal::CloudMetadata.to_string(),
            "the cloud metadata address"
        );
    }

    #[test]
    fn link_local() {
        assert_all(&[
            ("169.254.0.0", Some(Refusal::LinkLocal)),
            ("169.254.169.253", Some(Refusal::LinkLocal)),
            ("169.254.255.255", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("febf:ffff::1", Some(Refusal::LinkLocal)),
        ]);
    }

    #[test]
    fn unique_local_and_site_local() {
        assert_all(&[
            ("fc00::", Some(Refusal::UniqueLocal)),
            ("fd12:3456::1", Some(Refusal::UniqueLocal)),
            (
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some(Refusal::UniqueLocal),
            ),
            ("fd00:ec2::253", Some(Refusal::UniqueLocal)),
            ("fec0::1", Some(Refusal::SiteLocal)),
        ]);
    }

    #[test]
    fn multicast_broadcast_and_reserved() {
        assert_all(&[
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("239.255.255.255", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("ff0e::1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("240.0.0.0", Some(Refusal::Reserved)),
            ("255.255.255.254", Some(Refusal::Reserved)),
            // Outside 2000::/3, nothing public.
            ("4000::1", Some(Refusal::Reserved)),
            ("::1:0:0:0", Some(Refusal::Reserved)),
            ("5f00::1", Some(Refusal::Reserved)),
        ]);
    }

    #[test]
    fn documentation_benchmarking_and_protocol_ranges() {
        assert_all(&[
            ("192.0.2.1", Some(Refusal::Documentation)),
            ("198.51.100.7", Some(Refusal::Documentation)),
            ("203.0.113.255", Some(Refusal::Documentation)),
            ("2001:db8::1", Some(Refusal::Documentation)),
            ("3fff::1", Some(Refusal::Documentation)),
            ("198.18.0.1", Some(Refusal::Benchmarking)),
            ("198.19.255.255", Some(Refusal::Benchmarking)),
            ("2001:2::1", Some(Refusal::Benchmarking)),
            ("192.0.0.8", Some(Refusal::ProtocolAssignment)),
            ("100::1", Some(Refusal::DiscardOnly)),
            ("64:ff9b:1::a00:1", Some(Refusal::LocalNat64)),
        ]);
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_it() {
        assert_all(&[
            // IPv4-mapped.
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("::ffff:10.1.2.3", Some(Refusal::Private)),
            ("::ffff:0.0.0.0", Some(Refusal::Unspecified)),
            ("::ffff:7f00:1", Some(Refusal::Loopback)),
            // IPv4-translated.
            ("::ffff:0:192.168.1.1", Some(Refusal::Private)),
            // IPv4-compatible (deprecated, still parsed).
            ("::127.0.0.1", Some(Refusal::Loopback)),
            ("::10.0.0.1", Some(Refusal::Private)),
            ("::0.0.0.2", Some(Refusal::Unspecified)),
            ("::8.8.8.8", None),
            // NAT64.
            ("64:ff9b::127.0.0.1", Some(Refusal::Loopback)),
            ("64:ff9b::c0a8:101", Some(Refusal::Private)),
            // 6to4.
            ("2002:7f00:1::", Some(Refusal::Loopback)),
            ("2002:0a00:0001:1234::1", Some(Refusal::Private)),
            ("2002:c0a8:0101::", Some(Refusal::Private)),
            ("2002:6440:0001::", Some(Refusal::SharedAddressSpace)),
        ]);
    }

    #[test]
    fn embedded_ipv4_extracts_each_form() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(embedded_ipv4(v6("::ffff:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("::ffff:0:1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("64:ff9b::1.2.3.4")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("2002:102:304:5::6")), v4("1.2.3.4"));
        assert_eq!(embedded_ipv4(v6("::")), None);
        assert_eq!(embedded_ipv4(v6("::1")), None);
        assert_eq!(embedded_ipv4(v6("2001:db8::1.2.3.4")), None);
        assert_eq!(embedded_ipv4(v6("64:ff9b:1::1.2.3.4")), None);
    }

    #[test]
    fn reasons_read_as_phrases() {
        assert_eq!(Refusal::Loopback.reason(), "a loopback address");
        assert_eq!(Refusal::Private.to_string(), "a private address");
        assert_eq!(Refusal::Unspecified.reason(), "an unspecified address");
        assert_eq!(Refusal::Broadcast.reason(), "the broadcast address");
    }

    #[test]
    fn allow_list_parses_addresses_and_ranges_of_both_families() {
        let allow =
            EgressAllow::parse(" 10.0.0.5 ,192.168.1.0/24,\tfd00::/8 , ::1,10.9.9.9/8").unwrap();
        let shown: Vec<String> = allow.nets().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.5/32",
                "192.168.1.0/24",
                "fd00::/8",
                "::1/128",
                "10.0.0.0/8"
            ]
        );
        assert_eq!(
            allow.to_string(),
            "10.0.0.5/32,192.168.1.0/24,fd00::/8,::1/128,10.0.0.0/8"
        );
        assert_eq!(allow.to_string().parse::<EgressAllow>().unwrap(), allow);
    }

    #[test]
    fn an_empty_or_blank_list_allows_nothing_extra() {
        for list in ["", "   ", ",", " , ,"] {
            let allow = EgressAllow::parse(list).unwrap();
            assert!(allow.is_empty(), "{list:?}");
            assert_eq!(allow.check(ip("127.0.0.1")), Err(Refusal::Loopback));
        }
    }

    #[test]
    fn a_bad_entry_is_named() {
        let cases = [
            ("10.0.0.0/33", 1),
            ("10.0.0.1, localhost", 2),
            ("10.0.0.1,,10.0.0.256", 3),
            ("fd00::/129", 1),
            ("10.0.0.0/8/8", 1),
            ("10.0.0.0 /8", 1),
            ("*", 1),
        ];
        for (list, position) in cases {
            let err = EgressAllow::parse(list).unwrap_err();
            assert_eq!(err.position, position, "{list}");
            let message = err.to_string();
            assert!(
                message.starts_with("PICLOUD_EGRESS_ALLOW: entry"),
                "{message}"
            );
            assert!(message.contains(&format!("`{}`", err.entry)), "{message}");
        }
        let err = EgressAllow::parse("10.0.0.1, bogus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "PICLOUD_EGRESS_ALLOW: entry 2 `bogus` is neither an IP address nor a CIDR range \
             (examples: 10.0.0.5, 10.0.0.0/8, fd00::/8)"
        );
    }

    #[test]
    fn members_override_the_rule_and_only_members() {
        let allow =
            EgressAllow::parse("127.0.0.1/32, 10.0.0.0/8, fd00::/8, 169.254.169.254").unwrap();
        assert_eq!(allow.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(allow.check(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(allow.check(ip("::1")), Err(Refusal::Loopback));
        assert_eq!(allow.check(ip("10.200.0.1")), Ok(()));
        assert_eq!(allow.check(ip("172.16.0.1")), Err(Refusal::Private));
        assert_eq!(allow.check(ip("fd12::1")), Ok(()));
        assert_eq!(allow.check(ip("fc00::1")), Err(Refusal::UniqueLocal));
        assert_eq!(allow.check(ip("169.254.169.254")), Ok(()));
        assert_eq!(allow.check(ip("169.254.169.253")), Err(Refusal::LinkLocal));
        // The rule's allowed addresses stay allowed.
        assert_eq!(allow.check(ip("8.8.8.8")), Ok(()));
        // An IPv4-mapped address is a member through its IPv4 address.
        assert_eq!(allow.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(allow.check(ip("::ffff:127.0.0.2")), Err(Refusal::Loopback));
        // Other embeddings are not: they are routed elsewhere.
        assert_eq!(allow.check(ip("2002:7f00:1::")), Err(Refusal::Loopback));
    }

    #[test]
    fn new_clears_host_bits() {
        let net: IpNet = "10.1.2.3/8".parse().unwrap();
        let allow = EgressAllow::new([net]);
        assert_eq!(allow.nets()[0].to_string(), "10.0.0.0/8");
        assert!(allow.contains(ip("10.200.0.1")));
    }

    #[test]
    fn a_broad_allowance_does_not_open_the_metadata_address() {
        let broad: EgressAllow = "169.254.0.0/16, 0.0.0.0/0".parse().unwrap();
        let meta: IpAddr = "169.254.169.254".parse().unwrap();
        assert_eq!(broad.check(meta), Err(Refusal::CloudMetadata));
        assert_eq!(broad.check("169.254.1.1".parse().unwrap()), Ok(()));
        let exact: EgressAllow = "169.254.169.254".parse().unwrap();
        assert_eq!(exact.check(meta), Ok(()));
        assert_eq!(
            exact.check("::ffff:169.254.169.254".parse().unwrap()),
            Ok(())
        );
    }
}

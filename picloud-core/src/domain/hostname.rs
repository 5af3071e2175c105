//! [`Hostname`]: a custom domain an app is served on.

use serde::{Deserialize, Serialize};

/// The longest hostname, in characters.
pub const MAX_HOSTNAME_LEN: usize = 253;
/// The longest label, in characters.
pub const MAX_LABEL_LEN: usize = 63;

/// A custom domain: lowercase, 2–127 labels of `a-z0-9-` (no label starts
/// or ends with `-`), at most 253 characters; no port, no IP literal, no
/// trailing dot. Parsing lowercases it, so `Shop.Example.COM` and
/// `shop.example.com` are one name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

/// Why a hostname was refused (the message says what a valid one is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostnameError(pub String);

impl Hostname {
    /// Checks and lowercases `name`.
    pub fn parse(name: &str) -> Result<Self, HostnameError> {
        let bad = |why: &str| {
            Err(HostnameError(format!(
                "{name:?} is not a hostname: {why} (a name such as shop.example.com: \
                 2 or more labels of a-z, 0-9 and -, no port, no IP address, no trailing dot)"
            )))
        };
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > MAX_HOSTNAME_LEN {
            return bad("it is longer than 253 characters");
        }
        if name.ends_with('.') {
            return bad("it ends with a dot");
        }
        if name.contains(':') {
            return bad("it has a port or is an IPv6 address");
        }
        let lower = name.to_ascii_lowercase();
        if lower.parse::<std::net::Ipv4Addr>().is_ok() {
            return bad("it is an IP address");
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return bad("it has a single label");
        }
        for label in &labels {
            if label.is_empty() {
                return bad("it has an empty label");
            }
            if label.len() > MAX_LABEL_LEN {
                return bad("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return bad("only a-z, 0-9 and - may appear in a label");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label starts or ends with -");
            }
        }
        // An all-numeric last label is an IP address in some form.
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("it is an IP address");
        }
        Ok(Self(lower))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Hostname {
    type Error = HostnameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Hostname> for String {
    fn from(h: Hostname) -> Self {
        h.0
    }
}

impl std::fmt::Display for Hostname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_lowercased() {
        assert_eq!(
            Hostname::parse("Shop.Example.COM").unwrap().as_str(),
            "shop.example.com"
        );
        assert!(Hostname::parse("a-b.c1.example.io").is_ok());
        assert!(Hostname::parse("xn--bcher-kva.example").is_ok());
    }

    #[test]
    fn every_bad_form_is_refused() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", ["abcdefghi"; 26].join("."));
        assert!(long_name.len() > MAX_HOSTNAME_LEN);
        for bad in [
            "",
            "shop.example.com:8080",
            "127.0.0.1",
            "1.2.3",
            "[::1]",
            "::1",
            "shop_1.example.com",
            "shop..example.com",
            ".example.com",
            long_label.as_str(),
            long_name.as_str(),
            "shop.example.com.",
            "shop example.com",
            "localhost",
            "-shop.example.com",
            "shop-.example.com",
            "shöp.example.com",
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad:?}");
        }
    }
}

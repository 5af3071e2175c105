//! Apps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DisplayName, Slug};
use crate::ids::AppId;

/// An app: one tenant, with its scripts, members and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its unique slug, used in URLs (`/run/{slug}/...`).
    pub slug: Slug,
    /// A display name.
    pub name: DisplayName,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// What a store needs to create an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApp {
    /// The id to give it.
    pub id: AppId,
    /// Its slug (unique per instance).
    pub slug: Slug,
    /// Its display name.
    pub name: DisplayName,
    /// Its creation time.
    pub created_at: DateTime<Utc>,
}

impl NewApp {
    /// A new app with a fresh id, created now.
    pub fn new(slug: Slug, name: DisplayName) -> Self {
        Self {
            id: AppId::new(),
            slug,
            name,
            created_at: crate::clock::now(),
        }
    }

    /// The app this will become once stored.
    pub fn to_app(&self) -> App {
        App {
            id: self.id,
            slug: self.slug.clone(),
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// How much of a script error an app's public callers see (a per-app
/// setting; the detail always goes to the invocation record and the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PublicErrors {
    /// The error text, its line and the limit hit (the default).
    #[default]
    Detailed,
    /// Only `{"error": "script error", "request_id": …}`.
    Generic,
}

impl PublicErrors {
    /// `detailed` or `generic`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Detailed => "detailed",
            Self::Generic => "generic",
        }
    }

    /// The setting named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "detailed" => Some(Self::Detailed),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }
}

/// The most entries an app's allowlist of outbound hosts may hold.
pub const MAX_EGRESS_HOSTS: usize = 100;

/// Checks an app's allowlist of outbound hosts and puts it in its stored
/// form: each entry a host name (`api.example.com`), a wildcard for its
/// subdomains (`*.example.com`), or an IP literal; lowercased, without
/// duplicates, at most [`MAX_EGRESS_HOSTS`]. The message names the bad
/// entry.
pub fn validate_egress_hosts(hosts: &[String]) -> Result<Vec<String>, String> {
    if hosts.len() > MAX_EGRESS_HOSTS {
        return Err(format!(
            "egress_hosts may hold at most {MAX_EGRESS_HOSTS} hosts"
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(hosts.len());
    for entry in hosts {
        let host = entry.trim().to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let is_ip = name.parse::<std::net::IpAddr>().is_ok() && !host.starts_with("*.");
        let is_name = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !(is_ip || is_name) {
            return Err(format!(
                "egress_hosts: {entry:?} is not a host name, a *.domain wildcard or an IP address"
            ));
        }
        if !out.contains(&host) {
            out.push(host);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod egress_hosts_tests {
    use super::*;

    #[test]
    fn hosts_are_names_wildcards_or_ips() {
        let ok = validate_egress_hosts(&[
            "API.Example.com ".into(),
            "*.stripe.com".into(),
            "10.0.0.5".into(),
            "::1".into(),
            "api.example.com".into(),
        ])
        .unwrap();
        assert_eq!(ok, ["api.example.com", "*.stripe.com", "10.0.0.5", "::1"]);
        for bad in [
            "",
            "*",
            "a..b",
            "-a.com",
            "http://x.com",
            "x.com/path",
            "*.10.0.0.1x!",
        ] {
            assert!(validate_egress_hosts(&[bad.into()]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_EGRESS_HOSTS)
            .map(|i| format!("h{i}.com"))
            .collect();
        assert!(validate_egress_hosts(&many).is_err());
    }
}

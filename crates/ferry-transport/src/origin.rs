//! The `Origin` allow-list of WebSocket handshakes.

/// Decides whether a browser origin may open a WebSocket.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    patterns: Vec<String>,
    allow_missing: bool,
}

impl OriginPolicy {
    /// A policy from the configured patterns: exact origins (`https://app.example.com`,
    /// compared without case) or a wildcard first label (`https://*.example.com`, any
    /// subdomain, not the bare domain). No patterns: every origin is allowed.
    pub fn new(patterns: &[String], allow_missing: bool) -> Self {
        Self {
            patterns: patterns
                .iter()
                .map(|p| p.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            allow_missing,
        }
    }

    /// Whether a request with this `Origin` header (or none) is let in.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let Some(origin) = origin else {
            return self.allow_missing;
        };
        let origin = origin.trim().to_ascii_lowercase();
        self.patterns.iter().any(|p| matches(p, &origin))
    }
}

fn matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .and_then(|host| host.strip_suffix(domain))
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.') && !sub[..sub.len() - 1].contains('/')),
        None => pattern == origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(p: &[&str]) -> OriginPolicy {
        OriginPolicy::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>(), false)
    }

    #[test]
    fn empty_list_allows_everything() {
        let p = OriginPolicy::new(&[], false);
        assert!(p.allows(Some("https://evil.example")));
        assert!(p.allows(None));
    }

    #[test]
    fn exact_origins_ignore_case_and_trailing_slash() {
        let p = policy(&["https://App.example.com/"]);
        assert!(p.allows(Some("https://app.example.com")));
        assert!(!p.allows(Some("http://app.example.com")));
        assert!(!p.allows(Some("https://app.example.com.evil.net")));
        assert!(!p.allows(None));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["https://*.example.com"]);
        assert!(p.allows(Some("https://a.example.com")));
        assert!(p.allows(Some("https://a.b.example.com")));
        assert!(!p.allows(Some("https://example.com")));
        assert!(!p.allows(Some("https://aexample.com")));
        assert!(!p.allows(Some("http://a.example.com")));
    }

    #[test]
    fn missing_origin_follows_the_setting() {
        let p = OriginPolicy::new(&["https://a.example".into()], true);
        assert!(p.allows(None));
    }
}

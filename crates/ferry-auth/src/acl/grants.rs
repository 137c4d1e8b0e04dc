//! ACL grants carried by a token: the `pub`, `sub` and `all` lists of a JWT's `acl` claim.

use super::pattern::{Namespace, Pattern, PatternError, Vars};
use super::Action;

/// The prefix that makes a claim entry a STOMP queue pattern rather than a topic pattern.
pub const QUEUE_PREFIX: &str = "/queue/";

/// What a client's token allows: publish (for queues, send) and subscribe (for queues,
/// consume) pattern lists, in MQTT syntax with `%u`/`%c`; an entry starting
/// with `/queue/` is a queue name pattern (`/queue/jobs.*`). A list that is absent leaves
/// that action to the ACL file alone; a list that is present (even empty) limits the action
/// to what it covers. See [`crate::acl`] for how grants and the file combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenGrants {
    publish: Option<Vec<Pattern>>,
    subscribe: Option<Vec<Pattern>>,
}

impl TokenGrants {
    /// Grants from the `pub` and `sub` lists; an invalid pattern refuses the lot.
    pub fn new<S: AsRef<str>>(publish: Option<&[S]>, subscribe: Option<&[S]>) -> Result<Self, PatternError> {
        Ok(Self {
            publish: publish.map(parse_list).transpose()?,
            subscribe: subscribe.map(parse_list).transpose()?,
        })
    }

    /// Whether the token says nothing about either action.
    pub fn is_empty(&self) -> bool {
        self.publish.is_none() && self.subscribe.is_none()
    }

    /// The patterns that limit `action`, if the token limits it.
    pub fn for_action(&self, action: Action) -> Option<&[Pattern]> {
        match action {
            Action::Publish => self.publish.as_deref(),
            Action::Subscribe => self.subscribe.as_deref(),
        }
    }

    /// Whether the token limits `action` and none of its patterns covers `requested`.
    pub(crate) fn refuses(&self, action: Action, namespace: Namespace, requested: &str, vars: Vars<'_>) -> bool {
        match self.for_action(action) {
            Some(list) => !list.iter().any(|p| p.namespace() == namespace && p.covers(requested, vars)),
            None => false,
        }
    }
}

fn parse_list<S: AsRef<str>>(entries: &[S]) -> Result<Vec<Pattern>, PatternError> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.as_ref();
            match entry.strip_prefix(QUEUE_PREFIX) {
                Some(queue) => Pattern::with_substitutions(Namespace::Queue, queue),
                None => Pattern::with_substitutions(Namespace::Topic, entry),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_limit() {
        let grants = TokenGrants::new(Some(&["devices/%c/#", "/queue/jobs.*"]), None).unwrap();
        let vars = Vars {
            username: Some("u"),
            client_id: Some("d1"),
        };
        assert!(!grants.refuses(Action::Publish, Namespace::Topic, "devices/d1/x", vars));
        assert!(grants.refuses(Action::Publish, Namespace::Topic, "devices/d2/x", vars));
        assert!(!grants.refuses(Action::Publish, Namespace::Queue, "jobs.eu", vars));
        assert!(grants.refuses(Action::Publish, Namespace::Queue, "devices", vars));
        assert!(!grants.refuses(Action::Subscribe, Namespace::Topic, "anything", vars));
        assert!(!grants.is_empty() && TokenGrants::default().is_empty());
        let none: Option<&[&str]> = None;
        let empty = TokenGrants::new(Some(&[] as &[&str]), none).unwrap();
        assert!(empty.refuses(Action::Publish, Namespace::Topic, "a", vars));
        assert!(TokenGrants::new(Some(&["a/#/b"]), None).is_err());
        assert!(TokenGrants::new(Some(&["/queue/"]), None).is_err());
    }
}

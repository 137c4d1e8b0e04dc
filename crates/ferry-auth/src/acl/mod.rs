//! Authorization: who may publish and subscribe to which topics, and send to or consume
//! from which STOMP queues.
//!
//! The ACL file's syntax is in the crate README. In short, rules sit in sections (`user
//! NAME`, `role NAME`, `anonymous`, `all`), `roles USER ROLE...` lines give users roles, and
//! each rule is `topic|pattern|queue [read|write|readwrite|deny] PATTERN`.
//!
//! # Which rule decides
//!
//! The rules that apply to a client are those of its user section (or `anonymous`), of each
//! of its roles, and of `all`. Of these, the rules whose pattern covers what is asked for —
//! for a publish, matches the topic; for a subscribe, matches every topic the requested
//! filter can match (`sensors/#` covers `sensors/+/temp`, not the other way round) — are
//! candidates, and **the most specific candidate decides** (see [`Specificity`]: longest
//! literal prefix, then most literal levels, then not ending in `#`, then most levels).
//! Candidates of equal specificity pool their access, and a `deny` among them wins. No
//! candidate: the file's `default` (deny unless the file says `default allow`).
//!
//! A subscription a covering rule allows can still span topics a more specific rule takes
//! away (`readwrite sensors/#` with `deny sensors/secret/#`): when
//! [`Acl::needs_delivery_check`] is true, the adapter also checks each message it is about to
//! deliver, as a subscribe to the message's topic.
//!
//! Token grants ([`TokenGrants`], from the JWT `acl` claim) come first: a list that is
//! present must cover the request, or it is denied. Within it, the file's most specific
//! candidate still decides; where the file has no candidate, the grant allows.

mod grants;
mod parse;
mod pattern;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_core::{TopicFilter, TopicName};
use thiserror::Error;

pub use grants::{TokenGrants, QUEUE_PREFIX};
pub use pattern::{Namespace, Pattern, PatternError, Specificity, Vars};

use crate::Identity;

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// MQTT PUBLISH (and the will and retained messages it sets), STOMP SEND. `write` rules.
    Publish,
    /// MQTT SUBSCRIBE, STOMP SUBSCRIBE, and receiving a message on a topic. `read` rules.
    Subscribe,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse (MQTT 5 reason code 0x87, SUBACK 0x80/0x87, STOMP ERROR).
    Deny,
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

/// Why a [`Decision`] was taken, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The most specific covering rule(s) of the file; the line of the first of them.
    Rule {
        /// One-based line number in the ACL file.
        line: usize,
    },
    /// No rule covered the request: the file's default.
    Default,
    /// The token's grants for the action do not cover the request.
    TokenGrants,
    /// The token's grants cover the request and the file has no rule for it.
    TokenGrant,
    /// The topic, filter or queue name is not valid.
    Invalid,
}

/// A decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    /// Allow or deny.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
}

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Subscribe / receive / consume (`read`, `subscribe`).
    Read,
    /// Publish / send (`write`, `publish`).
    Write,
    /// Both (`readwrite`, the default when a rule names no access).
    ReadWrite,
    /// Neither, and it wins ties (`deny`).
    Deny,
}

impl Access {
    fn allows(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Self::ReadWrite, _) | (Self::Read, Action::Subscribe) | (Self::Write, Action::Publish)
        )
    }
}

/// One rule of the file.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) pattern: Pattern,
    pub(crate) access: Access,
    pub(crate) line: usize,
}

/// Why an ACL file is refused.
#[derive(Debug, Error)]
pub enum AclError {
    /// The file could not be read.
    #[error("ACL file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("ACL file line {line}: {kind}")]
    Line {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        kind: AclLineError,
    },
}

/// What is wrong with a line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AclLineError {
    /// The first word is not a keyword.
    #[error("unknown keyword {0:?}: expected user, role, anonymous, all, roles, topic, pattern, queue or default")]
    UnknownKeyword(String),
    /// `user`, `role` or `roles` without its name(s).
    #[error("{0} needs a name")]
    MissingName(&'static str),
    /// A role name with white space in it.
    #[error("a role name cannot contain white space")]
    RoleWithSpace,
    /// `anonymous` or `all` followed by something.
    #[error("{0} takes no argument")]
    UnexpectedArgument(&'static str),
    /// A rule before any section.
    #[error("a rule must come after a `user`, `role`, `anonymous` or `all` line")]
    RuleOutsideSection,
    /// `topic read` with nothing after the access.
    #[error("missing pattern after {0:?}")]
    MissingPattern(String),
    /// The word before a pattern with spaces is not an access.
    #[error("unknown access {0:?}: expected read, write, readwrite or deny (subscribe and publish also work)")]
    UnknownAccess(String),
    /// The pattern is not valid.
    #[error("invalid pattern: {0}")]
    Pattern(#[from] PatternError),
    /// `default` other than `allow` or `deny`, or given twice.
    #[error("`default` takes `allow` or `deny`, once")]
    BadDefault,
}

/// A parsed ACL file.
#[derive(Debug, Clone)]
pub struct Acl {
    default: Decision,
    everyone: Vec<Rule>,
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    roles: HashMap<String, Vec<Rule>>,
    memberships: HashMap<String, Vec<String>>,
}

impl Default for Acl {
    /// An ACL without rules that denies everything.
    fn default() -> Self {
        Self {
            default: Decision::Deny,
            everyone: Vec::new(),
            anonymous: Vec::new(),
            users: HashMap::new(),
            roles: HashMap::new(),
            memberships: HashMap::new(),
        }
    }
}

impl Acl {
    /// An ACL that allows everything (what a broker without an ACL file does); token grants
    /// still limit the clients that have them.
    pub fn allow_all() -> Self {
        Self {
            default: Decision::Allow,
            ..Self::default()
        }
    }

    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        parse::parse(text)
    }

    /// Reads and parses the ACL file at `path`.
    pub fn load(path: &Path) -> Result<Self, AclError> {
        let text = crate::fs::read_text(path).map_err(|source| AclError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The decision when no rule covers a request.
    pub fn default_decision(&self) -> Decision {
        self.default
    }

    /// The number of rules in the file.
    pub fn rule_count(&self) -> usize {
        self.all_rules().count()
    }

    /// The roles the file gives `user` (`roles` lines).
    pub fn roles_of(&self, user: &str) -> &[String] {
        self.memberships.get(user).map_or(&[], Vec::as_slice)
    }

    /// Whether a subscription allowed by [`Acl::check`] may still span topics a more
    /// specific rule takes away (the file has a topic rule that does not grant `read`): then
    /// each delivery must be checked too, as `check(identity, Action::Subscribe, topic)`.
    pub fn needs_delivery_check(&self) -> bool {
        self.all_rules()
            .any(|r| r.pattern.namespace() == Namespace::Topic && !r.access.allows(Action::Subscribe))
    }

    /// Whether `identity` may `action` the MQTT topic (publish) or filter (subscribe)
    /// `topic_or_filter`. For a shared subscription pass the filter inside `$share/GROUP/`;
    /// for a STOMP `/topic/` destination, the MQTT topic or filter it maps to.
    pub fn check(&self, identity: &Identity, action: Action, topic_or_filter: &str) -> Decision {
        self.explain(identity, action, topic_or_filter).decision
    }

    /// Whether `identity` may send to (`Publish`) or consume from (`Subscribe`) the STOMP
    /// queue `name` (what follows `/queue/`).
    pub fn check_queue(&self, identity: &Identity, action: Action, name: &str) -> Decision {
        self.explain_queue(identity, action, name).decision
    }

    /// [`Acl::check`] with the reason.
    pub fn explain(&self, identity: &Identity, action: Action, topic_or_filter: &str) -> Explanation {
        let valid = match action {
            Action::Publish => TopicName::validate(topic_or_filter).is_ok(),
            Action::Subscribe => TopicFilter::validate(topic_or_filter).is_ok(),
        };
        self.evaluate(identity, action, Namespace::Topic, topic_or_filter, valid)
    }

    /// [`Acl::check_queue`] with the reason.
    pub fn explain_queue(&self, identity: &Identity, action: Action, name: &str) -> Explanation {
        let valid = !name.is_empty() && !name.contains('\0');
        self.evaluate(identity, action, Namespace::Queue, name, valid)
    }

    fn evaluate(&self, identity: &Identity, action: Action, namespace: Namespace, requested: &str, valid: bool) -> Explanation {
        let explanation = |decision, reason| Explanation { decision, reason };
        if !valid {
            return explanation(Decision::Deny, Reason::Invalid);
        }
        let vars = Vars {
            username: identity.username.as_deref(),
            client_id: Some(identity.client_id.as_str()),
        };
        let grants = identity.grants.as_ref();
        if grants.is_some_and(|g| g.refuses(action, namespace, requested, vars)) {
            return explanation(Decision::Deny, Reason::TokenGrants);
        }
        if let Some(found) = self.most_specific(identity, namespace, requested, vars) {
            let allowed = !found.deny && (found.read && action == Action::Subscribe || found.write && action == Action::Publish);
            let decision = if allowed { Decision::Allow } else { Decision::Deny };
            return explanation(decision, Reason::Rule { line: found.line });
        }
        if grants.and_then(|g| g.for_action(action)).is_some() {
            return explanation(Decision::Allow, Reason::TokenGrant);
        }
        explanation(self.default, Reason::Default)
    }

    /// The rules that apply to `identity`.
    fn applicable<'a>(&'a self, identity: &'a Identity) -> impl Iterator<Item = &'a Rule> {
        let own = match &identity.username {
            Some(user) => self.users.get(user).map_or(&[][..], Vec::as_slice),
            None => self.anonymous.as_slice(),
        };
        let file_roles = identity.username.as_deref().map_or(&[][..], |u| self.roles_of(u));
        let roles = file_roles
            .iter()
            .chain(&identity.roles)
            .filter_map(|role| self.roles.get(role))
            .flatten();
        self.everyone.iter().chain(own).chain(roles)
    }

    /// The pooled access of the most specific applicable rules covering `requested`.
    fn most_specific(&self, identity: &Identity, namespace: Namespace, requested: &str, vars: Vars<'_>) -> Option<Found> {
        let mut best: Option<Found> = None;
        for rule in self.applicable(identity) {
            if rule.pattern.namespace() != namespace || !rule.pattern.covers(requested, vars) {
                continue;
            }
            let specificity = rule.pattern.specificity();
            let candidate = Found {
                specificity,
                read: rule.access.allows(Action::Subscribe),
                write: rule.access.allows(Action::Publish),
                deny: rule.access == Access::Deny,
                line: rule.line,
            };
            best = Some(match best {
                None => candidate,
                Some(b) if specificity > b.specificity => candidate,
                Some(b) if specificity < b.specificity => b,
                Some(b) => Found {
                    read: b.read || candidate.read,
                    write: b.write || candidate.write,
                    deny: b.deny || candidate.deny,
                    line: b.line.min(candidate.line),
                    ..b
                },
            });
        }
        best
    }

    fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.everyone
            .iter()
            .chain(&self.anonymous)
            .chain(self.users.values().flatten())
            .chain(self.roles.values().flatten())
    }
}

/// The outcome of [`Acl::most_specific`].
#[derive(Debug, Clone, Copy)]
struct Found {
    specificity: Specificity,
    read: bool,
    write: bool,
    deny: bool,
    line: usize,
}

#[cfg(test)]
mod tests;

//! The ACL file's line syntax (described in the crate README).

use super::pattern::{Namespace, Pattern};
use super::{Access, Acl, AclError, AclLineError, Decision, Rule};

/// Which rules the lines that follow belong to.
enum Section {
    None,
    User(String),
    Role(String),
    Anonymous,
    All,
}

pub(super) fn parse(text: &str) -> Result<Acl, AclError> {
    let mut acl = Acl::default();
    let mut section = Section::None;
    let mut default_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |kind| AclError::Line { line, kind };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (keyword, rest) = match trimmed.split_once(char::is_whitespace) {
            Some((keyword, rest)) => (keyword, rest.trim()),
            None => (trimmed, ""),
        };
        match keyword {
            "default" => {
                acl.default = match rest {
                    "allow" if !default_seen => Decision::Allow,
                    "deny" if !default_seen => Decision::Deny,
                    _ => return Err(err(AclLineError::BadDefault)),
                };
                default_seen = true;
            }
            "user" if rest.is_empty() => return Err(err(AclLineError::MissingName("user"))),
            "user" => section = Section::User(rest.to_owned()),
            "role" => section = Section::Role(role_name(rest).map_err(err)?),
            "anonymous" | "all" if !rest.is_empty() => {
                let keyword = if keyword == "all" { "all" } else { "anonymous" };
                return Err(err(AclLineError::UnexpectedArgument(keyword)));
            }
            "anonymous" => section = Section::Anonymous,
            "all" => section = Section::All,
            "roles" => {
                let mut words = rest.split_whitespace();
                let (Some(user), Some(first)) = (words.next(), words.next()) else {
                    return Err(err(AclLineError::MissingName("roles")));
                };
                let roles = acl.memberships.entry(user.to_owned()).or_default();
                for role in std::iter::once(first).chain(words) {
                    if !roles.iter().any(|r| r == role) {
                        roles.push(role.to_owned());
                    }
                }
            }
            "topic" | "pattern" | "queue" => {
                let (access, text) = access_and_pattern(rest).map_err(err)?;
                let pattern = match keyword {
                    "topic" => Pattern::literal(Namespace::Topic, text),
                    "pattern" => Pattern::with_substitutions(Namespace::Topic, text),
                    _ => Pattern::with_substitutions(Namespace::Queue, text),
                }
                .map_err(|e| err(AclLineError::Pattern(e)))?;
                let rule = Rule { pattern, access, line };
                match &section {
                    Section::None => return Err(err(AclLineError::RuleOutsideSection)),
                    Section::User(name) => acl.users.entry(name.clone()).or_default().push(rule),
                    Section::Role(name) => acl.roles.entry(name.clone()).or_default().push(rule),
                    Section::Anonymous => acl.anonymous.push(rule),
                    Section::All => acl.everyone.push(rule),
                }
            }
            other => return Err(err(AclLineError::UnknownKeyword(other.to_owned()))),
        }
    }
    Ok(acl)
}

fn role_name(rest: &str) -> Result<String, AclLineError> {
    if rest.is_empty() {
        return Err(AclLineError::MissingName("role"));
    }
    if rest.contains(char::is_whitespace) {
        return Err(AclLineError::RoleWithSpace);
    }
    Ok(rest.to_owned())
}

/// `[ACCESS] PATTERN`: the access defaults to `readwrite`; a pattern with white space in it
/// (MQTT allows spaces in topics) needs an explicit access, so that a misspelt access is
/// not taken for part of the pattern.
fn access_and_pattern(rest: &str) -> Result<(Access, &str), AclLineError> {
    let (first, remainder) = match rest.split_once(char::is_whitespace) {
        Some((first, remainder)) => (first, remainder.trim()),
        None => (rest, ""),
    };
    let access = match first {
        "read" | "subscribe" => Some(Access::Read),
        "write" | "publish" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    match (access, remainder.is_empty()) {
        (Some(_), true) => Err(AclLineError::MissingPattern(first.to_owned())),
        (Some(access), false) => Ok((access, remainder)),
        (None, true) if first.is_empty() => Err(AclLineError::MissingPattern(String::new())),
        (None, true) => Ok((Access::ReadWrite, first)),
        (None, false) => Err(AclLineError::UnknownAccess(first.to_owned())),
    }
}

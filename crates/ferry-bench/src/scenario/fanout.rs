//! `fanout`: one publisher, N subscribers on its topic.

use super::{Plan, PubPlan, SubPlan};
use crate::cli::Protocol;

/// The plan: publisher `offset` on `PREFIX/fanout`, `n` subscribers to it.
pub(super) fn plan(prefix: &str, protocol: Protocol, n: usize, offset: u32) -> Plan {
    let topic = format!("{prefix}/fanout");
    Plan {
        publishers: vec![PubPlan {
            id: offset,
            protocol,
            topic: topic.clone(),
        }],
        subscribers: (0..n)
            .map(|_| SubPlan {
                protocol,
                filter: topic.clone(),
                sources: vec![offset],
            })
            .collect(),
    }
}

//! `fanin`: N publishers on topics of their own, one subscriber to all of them through
//! a single-level wildcard.

use super::{Plan, PubPlan, SubPlan};
use crate::cli::Protocol;

/// The plan: publishers `offset..offset+n` on `PREFIX/fanin/ID`, one subscriber to
/// `PREFIX/fanin/+`.
pub(super) fn plan(prefix: &str, protocol: Protocol, n: usize, offset: u32) -> Plan {
    let publishers: Vec<PubPlan> = (0..n as u32)
        .map(|i| PubPlan {
            id: offset + i,
            protocol,
            topic: format!("{prefix}/fanin/{}", offset + i),
        })
        .collect();
    let sources = publishers.iter().map(|p| p.id).collect();
    Plan {
        publishers,
        subscribers: vec![SubPlan {
            protocol,
            filter: format!("{prefix}/fanin/+"),
            sources,
        }],
    }
}

//! `pairs`: N publisher/subscriber pairs, each on a topic of its own.

use super::{Plan, PubPlan, SubPlan};
use crate::cli::Protocol;

/// The plan: pair `ID` (from `offset`) publishes and subscribes on `PREFIX/pairs/ID`.
pub(super) fn plan(prefix: &str, protocol: Protocol, n: usize, offset: u32) -> Plan {
    let mut plan = Plan::default();
    for i in 0..n as u32 {
        let id = offset + i;
        let topic = format!("{prefix}/pairs/{id}");
        plan.publishers.push(PubPlan {
            id,
            protocol,
            topic: topic.clone(),
        });
        plan.subscribers.push(SubPlan {
            protocol,
            filter: topic,
            sources: vec![id],
        });
    }
    plan
}

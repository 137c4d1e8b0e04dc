//! `cross`: N pairs across protocols. Even pairs publish with `--protocol` and
//! subscribe with the other one, odd pairs the other way round, so both directions of
//! the broker's MQTT ⇄ STOMP mapping carry half the load.

use super::{Plan, PubPlan, SubPlan};
use crate::cli::Protocol;

/// The plan: pair `ID` (from `offset`) on `PREFIX/cross/ID`, alternating directions.
pub(super) fn plan(prefix: &str, protocol: Protocol, n: usize, offset: u32) -> Plan {
    let mut plan = Plan::default();
    for i in 0..n as u32 {
        let id = offset + i;
        let topic = format!("{prefix}/cross/{id}");
        let publisher = if i % 2 == 0 { protocol } else { protocol.other() };
        plan.publishers.push(PubPlan {
            id,
            protocol: publisher,
            topic: topic.clone(),
        });
        plan.subscribers.push(SubPlan {
            protocol: publisher.other(),
            filter: topic,
            sources: vec![id],
        });
    }
    plan
}

//! The scenarios. A flow scenario (`fanout`, `fanin`, `pairs`, `cross`) is a [`Plan`]:
//! which publishers send to which topics and which subscribers listen to which filters;
//! [`flow`] runs any plan. `conns` is its own runner ([`conns`]); `slow` runs a plan
//! with [`flow`]'s parts and a clock of its own ([`slow`]).

pub(crate) mod conns;
mod cross;
mod fanin;
mod fanout;
pub(crate) mod flow;
mod pairs;
mod publisher;
mod setup;
pub(crate) mod slow;
mod subscriber;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::{Args, Protocol, Scenario, Spread};
use crate::client::SessionSpec;
use crate::outbox::Framing;
use crate::progress::Progress;
use crate::stats::Counters;
use crate::transport::Connector;

/// Above this many clients, `--spread-sources auto` spreads source addresses.
const SPREAD_ABOVE: usize = 5_000;

/// What every scenario runs with: the arguments, how to reach the broker per
/// protocol, and the shared counters.
pub(crate) struct Env {
    /// The command line.
    pub args: Args,
    /// Per protocol: where and how to connect.
    pub connectors: HashMap<Protocol, Arc<Connector>>,
    /// Per protocol: where the subscribers connect, when `--sub-url` is given.
    pub sub_connectors: HashMap<Protocol, Vec<Arc<Connector>>>,
    /// Per protocol: how sessions are opened.
    pub specs: HashMap<Protocol, Arc<SessionSpec>>,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// The progress line's state.
    pub progress: Arc<Progress>,
}

impl Env {
    /// Parses the URLs, builds the TLS configuration if one is needed, and prepares a
    /// connector for each protocol the scenario speaks.
    pub(crate) fn new(args: Args) -> anyhow::Result<Env> {
        let mut urls = vec![(args.protocol, args.url.clone())];
        if args.scenario == Scenario::Cross {
            let other = args.protocol.other();
            let url = match &args.cross_url {
                Some(url) => url.clone(),
                None if args.url.starts_with("ws://") || args.url.starts_with("wss://") => args.url.clone(),
                None => anyhow::bail!("cross over {} needs --cross-url for {other}", args.url),
            };
            urls.push((other, url));
        }
        let spread = match args.spread_sources {
            Spread::Always => true,
            Spread::Never => false,
            Spread::Auto => args.clients > SPREAD_ABOVE,
        };
        // `--sub-url A,B`: the subscribers take the URLs in turn.
        let sub_urls: Vec<(Protocol, String)> = match &args.sub_url {
            Some(sub) => urls
                .iter()
                .flat_map(|(p, _)| sub.split(',').filter(|u| !u.is_empty()).map(|u| (*p, u.to_owned())))
                .collect(),
            None => Vec::new(),
        };
        let mut connectors = HashMap::new();
        let mut sub_connectors = HashMap::new();
        let mut specs = HashMap::new();
        let mut tls = None;
        for (protocol, url) in sub_urls {
            let target = crate::url::parse(&url, protocol).with_context(|| format!("--sub-url {url}"))?;
            if target.transport.is_tls() && tls.is_none() {
                tls = Some(crate::tls::client_config(args.ca.as_deref(), args.insecure)?);
            }
            let framing = match protocol {
                Protocol::Mqtt => Framing::WsBinary,
                Protocol::Stomp => Framing::WsText,
            };
            let subprotocol = match protocol {
                Protocol::Mqtt => "mqtt",
                Protocol::Stomp => "v12.stomp",
            };
            let connector = Connector::new(Arc::new(target), tls.clone(), subprotocol, framing, spread)
                .map_err(anyhow::Error::msg)?
                .with_deflate(args.deflate);
            sub_connectors.entry(protocol).or_insert_with(Vec::new).push(Arc::new(connector));
        }
        for (protocol, url) in urls {
            let target = crate::url::parse(&url, protocol).with_context(|| format!("--url {url}"))?;
            if target.transport.is_tls() && tls.is_none() {
                tls = Some(crate::tls::client_config(args.ca.as_deref(), args.insecure)?);
            }
            let spec = SessionSpec {
                protocol,
                mqtt_version: args.mqtt_version,
                qos: if protocol == Protocol::Mqtt { args.qos } else { 0 },
                ack: args.ack,
                receipts: args.stomp_receipts(),
                retain: args.retain,
                persistent: args.persistent,
            };
            let framing = match protocol {
                Protocol::Mqtt => Framing::WsBinary,
                Protocol::Stomp => Framing::WsText,
            };
            let connector = Connector::new(Arc::new(target), tls.clone(), spec.subprotocol(), framing, spread)
                .map_err(anyhow::Error::msg)?
                .with_deflate(args.deflate);
            connectors.insert(protocol, Arc::new(connector));
            specs.insert(protocol, Arc::new(spec));
        }
        let counters = Arc::new(Counters::default());
        let progress = Arc::new(Progress::new(counters.clone()));
        Ok(Env {
            args,
            connectors,
            sub_connectors,
            specs,
            counters,
            progress,
        })
    }

    /// The connector and session spec for subscriber number `index` speaking
    /// `protocol`: on `--sub-url` when given (its URLs in turn), else as [`Env::side`].
    pub(crate) fn sub_side(&self, protocol: Protocol, index: usize) -> anyhow::Result<(Arc<Connector>, Arc<SessionSpec>)> {
        let (connector, spec) = self.side(protocol)?;
        let sub = self
            .sub_connectors
            .get(&protocol)
            .filter(|all| !all.is_empty())
            .map(|all| all[index % all.len()].clone());
        Ok((sub.unwrap_or(connector), spec))
    }

    /// The connector and session spec for `protocol`.
    pub(crate) fn side(&self, protocol: Protocol) -> anyhow::Result<(Arc<Connector>, Arc<SessionSpec>)> {
        match (self.connectors.get(&protocol), self.specs.get(&protocol)) {
            (Some(c), Some(s)) => Ok((c.clone(), s.clone())),
            _ => anyhow::bail!("no URL for {protocol}"),
        }
    }
}

/// One publisher of a flow scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PubPlan {
    /// Its id in payload headers, unique across the load processes of a run.
    pub id: u32,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// Where it publishes (MQTT syntax).
    pub topic: String,
}

/// One subscriber of a flow scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubPlan {
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// What it subscribes to (MQTT syntax).
    pub filter: String,
    /// The publishers it hears from, when they run in the same process.
    pub sources: Vec<u32>,
}

/// Who publishes where and who listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Publishers, in id order.
    pub publishers: Vec<PubPlan>,
    /// Subscribers.
    pub subscribers: Vec<SubPlan>,
}

impl Plan {
    /// The plan of a flow scenario, reduced to this process's role.
    pub(crate) fn for_args(args: &Args) -> Plan {
        let prefix = args.topic_prefix.trim_end_matches('/');
        let mut plan = match args.scenario {
            Scenario::Fanout => fanout::plan(prefix, args.protocol, args.clients, args.id_offset),
            Scenario::Fanin => fanin::plan(prefix, args.protocol, args.clients, args.id_offset),
            Scenario::Pairs => pairs::plan(prefix, args.protocol, args.clients, args.id_offset),
            Scenario::Cross => cross::plan(prefix, args.protocol, args.clients, args.id_offset),
            Scenario::Slow => slow::plan(prefix, args.protocol, args.clients, args.id_offset),
            Scenario::Conns => Plan::default(),
        };
        if !args.role.publishes() {
            plan.publishers.clear();
        }
        if !args.role.subscribes() {
            plan.subscribers.clear();
        }
        plan
    }

    /// How many of this process's subscribers receive publisher `id`'s messages.
    pub(crate) fn local_fanout(&self, id: u32) -> u64 {
        self.subscribers.iter().filter(|s| s.sources.contains(&id)).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn plan(line: &str) -> Plan {
        let args = Args::try_parse_from(std::iter::once("ferry-bench").chain(line.split_whitespace())).unwrap();
        Plan::for_args(&args)
    }

    #[test]
    fn fanout_is_one_publisher_to_all() {
        let p = plan("fanout --clients 3");
        assert_eq!(p.publishers.len(), 1);
        assert_eq!(p.publishers[0].topic, "bench/fanout");
        assert_eq!(p.subscribers.len(), 3);
        assert!(p.subscribers.iter().all(|s| s.filter == "bench/fanout" && s.sources == [0]));
        assert_eq!(p.local_fanout(0), 3);
    }

    #[test]
    fn fanin_is_all_publishers_to_one_wildcard() {
        let p = plan("fanin --clients 4 --id-offset 10 --topic-prefix x/");
        let ids: Vec<u32> = p.publishers.iter().map(|p| p.id).collect();
        assert_eq!(ids, [10, 11, 12, 13]);
        assert_eq!(p.publishers[2].topic, "x/fanin/12");
        assert_eq!(p.subscribers.len(), 1);
        assert_eq!(p.subscribers[0].filter, "x/fanin/+");
        assert_eq!(p.subscribers[0].sources, ids);
        assert_eq!(p.local_fanout(11), 1);
    }

    #[test]
    fn pairs_are_one_to_one() {
        let p = plan("pairs --clients 3 --protocol stomp");
        assert_eq!(p.publishers.len(), 3);
        assert_eq!(p.subscribers.len(), 3);
        for (pb, sb) in p.publishers.iter().zip(&p.subscribers) {
            assert_eq!(pb.topic, sb.filter);
            assert_eq!(sb.sources, [pb.id]);
            assert_eq!((pb.protocol, sb.protocol), (Protocol::Stomp, Protocol::Stomp));
        }
    }

    #[test]
    fn cross_alternates_directions() {
        let p = plan("cross --clients 4");
        let dirs: Vec<(Protocol, Protocol)> = p
            .publishers
            .iter()
            .zip(&p.subscribers)
            .map(|(a, b)| (a.protocol, b.protocol))
            .collect();
        assert_eq!(
            dirs,
            [
                (Protocol::Mqtt, Protocol::Stomp),
                (Protocol::Stomp, Protocol::Mqtt),
                (Protocol::Mqtt, Protocol::Stomp),
                (Protocol::Stomp, Protocol::Mqtt)
            ]
        );
    }

    #[test]
    fn roles_keep_their_side() {
        let p = plan("pairs --clients 2 --role sub");
        assert!(p.publishers.is_empty());
        assert_eq!(p.subscribers.len(), 2);
        let p = plan("pairs --clients 2 --role pub");
        assert_eq!(p.publishers.len(), 2);
        assert!(p.subscribers.is_empty());
        assert_eq!(p.local_fanout(0), 0);
    }
}

//! Routes published messages to subscribers, whatever their protocol: one subscription
//! tree for all connections, deliveries pushed onto each session's bounded [`Outbox`],
//! retained messages kept in a [`RetainedStore`].
//!
//! Publishing takes the tree's read lock only while collecting the matching
//! subscriptions (no `.await` exists in the core, so none is ever held across one), then
//! pushes outside it. Each subscriber gets the same `Arc<Message>`: the payload is never
//! copied. Lock order: retained order → (the retained store, the journal's queue);
//! tree → a shared group's members; outbox locks are taken alone.
//!
//! With a [`Journal`], a client's retained message (set or cleared) is written to it
//! while the retained order lock is held, so the journal's order of records on a topic
//! is the order in which they changed memory (a snapshot taken under the same lock
//! covers every record before its position). The publisher's acknowledgement waits for
//! the record's position ([`Published::durable_at`]); deliveries do not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::cluster::ClusterLink;
use crate::journal::{Journal, Lsn, Published, SessionKey, StorageUnavailable};

use crate::message::{Message, QoS, SubscriberId};
use crate::monitor::{RetainedSummary, SubscriptionSummary};
use crate::outbox::{Delivery, Outbox, Pushed};
use crate::retained::{MemoryRetained, RetainedStore};
use crate::topic::{Subscription, TopicFilter, TopicName};
use crate::tree::SubscriptionTree;

/// The options a subscriber chose (MQTT 5 subscription options; MQTT 3.1.1 and STOMP
/// use the defaults but for QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscribeOptions {
    /// The maximum QoS granted.
    pub qos: QoS,
    /// Do not deliver the session's own publications to it.
    pub no_local: bool,
    /// Keep the publisher's retain flag on forwarded messages (else it is cleared).
    pub retain_as_published: bool,
    /// The subscription identifier to send with matching messages.
    pub id: Option<u32>,
}

/// What routing one message did.
#[derive(Debug, Default)]
struct Routed {
    /// Deliveries queued.
    queued: usize,
    /// The last journal position of a delivery to a persistent session.
    durable_at: Option<Lsn>,
    /// Why a delivery to a persistent session could not be journaled.
    refused: Option<StorageUnavailable>,
}

/// One subscriber's subscription as the router keeps it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Who it is: an MQTT session, a STOMP subscription, an event stream.
    pub id: SubscriberId,
    /// Where its deliveries go.
    pub outbox: Arc<Outbox>,
    /// Its options for this filter.
    pub options: SubscribeOptions,
    /// Its key in the journal when it is a persistent session: QoS 1/2 deliveries to it
    /// are journaled, and the publisher's acknowledgement waits for them.
    pub durable: Option<SessionKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Subscriber(SubscriberId),
    Group(Arc<str>),
}

#[derive(Debug, Clone)]
enum Entry {
    /// A session's own subscription, with the client the adapter named for it.
    Direct(Subscriber, Option<Arc<str>>),
    Group(Arc<SharedGroup>),
}

/// A member of a shared group, with the client the adapter named for it.
#[derive(Debug, Clone)]
struct Member {
    sub: Subscriber,
    client: Option<Arc<str>>,
}

/// The members of one `$share/GROUP/filter`, served round-robin.
#[derive(Debug, Default)]
struct SharedGroup {
    members: RwLock<Vec<Member>>,
    next: AtomicUsize,
}

impl SharedGroup {
    /// The next member in turn (no-local is not allowed on shared subscriptions).
    fn pick(&self) -> Option<Subscriber> {
        let members = self.members.read();
        if members.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
        Some(members[i].sub.clone())
    }
}

crate::counters! {
    /// Router counters.
    pub struct RouterStats {
        published: Counter("messages_published", "Messages published, all protocols"),
        delivered: Counter("deliveries", "Deliveries queued to subscribers"),
        dropped: Counter("deliveries_dropped", "Deliveries dropped because a subscriber's queue was full"),
        unrouted: Counter("messages_unrouted", "Messages that matched no subscription"),
        expired: Counter("messages_expired", "Deliveries skipped because the message had expired"),
        retained_refused: Counter("retained_refused", "Retained messages on new topics not kept: limits.max_retained_messages or max_retained_bytes reached"),
    }
}

/// The broker's router: subscriptions of every session, and the retained messages.
pub struct Router {
    tree: RwLock<SubscriptionTree<Key, Entry>>,
    retained: Arc<dyn RetainedStore<Arc<Message>>>,
    /// Where retained changes are written down, if storage is on.
    journal: Option<Arc<dyn Journal>>,
    /// The other nodes, if this one is in a cluster.
    cluster: Option<Arc<dyn ClusterLink>>,
    /// Held while a retained change is made in memory and journaled (see the module
    /// docs), and while a snapshot's position is taken.
    retained_order: Mutex<()>,
    /// Counters.
    pub stats: RouterStats,
}

impl Default for Router {
    fn default() -> Self {
        Self::new(Arc::new(MemoryRetained::new()))
    }
}

impl Router {
    /// A router keeping retained messages in `retained`.
    pub fn new(retained: Arc<dyn RetainedStore<Arc<Message>>>) -> Self {
        Self {
            tree: RwLock::new(SubscriptionTree::new()),
            retained,
            journal: None,
            cluster: None,
            retained_order: Mutex::new(()),
            stats: RouterStats::default(),
        }
    }

    /// The same router, journaling retained changes to `journal` (storage on).
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The same router in a cluster: `link` is told of local interest and of local
    /// publications (see [`ClusterLink`]). Set it before any subscription is made.
    pub fn with_cluster(mut self, link: Arc<dyn ClusterLink>) -> Self {
        self.cluster = Some(link);
        self
    }

    /// The journal, if storage is on.
    pub fn journal(&self) -> Option<&Arc<dyn Journal>> {
        self.journal.as_ref()
    }

    /// Add or replace `subscriber`'s subscription to `subscription`. Returns true when
    /// it replaced one the session already had on the same filter.
    pub fn subscribe(&self, subscription: &Subscription, subscriber: Subscriber) -> bool {
        self.subscribe_as(subscription, subscriber, None)
    }

    /// [`Router::subscribe`], naming the client that holds the subscription (an MQTT
    /// client id), for [`Router::subscriptions`]. The name is an `Arc` the adapter already
    /// holds: no copy per subscription.
    pub fn subscribe_as(&self, subscription: &Subscription, subscriber: Subscriber, client: Option<Arc<str>>) -> bool {
        let mut tree = self.tree.write();
        match subscription {
            Subscription::Plain(filter) => {
                let replaced = tree
                    .insert(filter, Key::Subscriber(subscriber.id), Entry::Direct(subscriber, client))
                    .is_some();
                if !replaced {
                    self.interest_added(&tree, filter);
                }
                replaced
            }
            Subscription::Shared(shared) => {
                let key = Key::Group(shared.group.clone());
                let group = match tree.get(&shared.filter, &key) {
                    Some(Entry::Group(g)) => g.clone(),
                    _ => {
                        let g = Arc::new(SharedGroup::default());
                        tree.insert(&shared.filter, key, Entry::Group(g.clone()));
                        self.interest_added(&tree, &shared.filter);
                        g
                    }
                };
                let mut members = group.members.write();
                match members.iter_mut().find(|m| m.sub.id == subscriber.id) {
                    Some(existing) => {
                        *existing = Member { sub: subscriber, client };
                        true
                    }
                    None => {
                        members.push(Member { sub: subscriber, client });
                        false
                    }
                }
            }
        }
    }

    /// Remove `subscriber`'s subscription to `subscription`; true if it existed.
    pub fn unsubscribe(&self, subscription: &Subscription, subscriber: SubscriberId) -> bool {
        let mut tree = self.tree.write();
        match subscription {
            Subscription::Plain(filter) => {
                let removed = tree.remove(filter, &Key::Subscriber(subscriber)).is_some();
                if removed {
                    self.interest_removed(&tree, filter);
                }
                removed
            }
            Subscription::Shared(shared) => {
                let key = Key::Group(shared.group.clone());
                let Some(Entry::Group(group)) = tree.get(&shared.filter, &key).cloned() else {
                    return false;
                };
                let (found, empty) = {
                    let mut members = group.members.write();
                    let before = members.len();
                    members.retain(|m| m.sub.id != subscriber);
                    (members.len() != before, members.is_empty())
                };
                if empty && tree.remove(&shared.filter, &key).is_some() {
                    self.interest_removed(&tree, &shared.filter);
                }
                found
            }
        }
    }

    /// Tells the cluster link when `filter` just got its first subscription.
    fn interest_added(&self, tree: &SubscriptionTree<Key, Entry>, filter: &TopicFilter) {
        if let Some(link) = &self.cluster {
            if tree.count(filter) == 1 {
                link.interest_added(filter);
            }
        }
    }

    /// Tells the cluster link when `filter` just lost its last subscription.
    fn interest_removed(&self, tree: &SubscriptionTree<Key, Entry>, filter: &TopicFilter) {
        if let Some(link) = &self.cluster {
            if tree.count(filter) == 0 {
                link.interest_removed(filter);
            }
        }
    }

    /// Route `message` to every matching subscription and update the retained store
    /// when its retain flag is set (an empty payload deletes). Returns the number of
    /// deliveries queued. A retained change the journal refuses is neither kept nor
    /// delivered (see [`Router::publish_durable`] to tell).
    pub fn publish(&self, message: Arc<Message>, now: Instant) -> usize {
        self.publish_durable(message, now).map_or(0, |p| p.deliveries)
    }

    /// [`Router::publish`] for a publisher that acknowledges: says which journal
    /// position the acknowledgement must wait for, or that the message needs the disk
    /// and the journal is poisoned (then nothing was kept or delivered: refuse it).
    pub fn publish_durable(&self, message: Arc<Message>, now: Instant) -> Result<Published, StorageUnavailable> {
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let retained_at = if message.retain { self.retain(&message, true)? } else { None };
        let routed = self.route(message.clone(), now, true);
        if let Some(e) = routed.refused {
            return Err(e);
        }
        if let Some(link) = &self.cluster {
            link.published(&message, now);
        }
        Ok(Published {
            deliveries: routed.queued,
            durable_at: retained_at.max(routed.durable_at),
        })
    }

    /// [`Router::publish`] for the broker's own messages (`$SYS`): routed and retained
    /// the same way, but not counted as published or unrouted (as Mosquitto does not
    /// count its `$SYS` messages as received), and never journaled (the broker
    /// publishes them again after a restart).
    pub fn publish_own(&self, message: Arc<Message>, now: Instant) -> usize {
        if message.retain {
            // Not journaled: cannot fail.
            let _ = self.retain(&message, false);
        }
        self.route(message, now, false).queued
    }

    /// Delivers `message`, which another node published, to this node's subscribers
    /// only: never forwarded again, never retained here (the retained messages of other
    /// nodes come through [`Router::retained_apply`]). Returns the deliveries queued.
    pub fn deliver_remote(&self, message: Arc<Message>, now: Instant) -> usize {
        self.route(message, now, false).queued
    }

    /// Sets (`Some`) or clears (`None`) the retained message of `topic` as the cluster's
    /// shared store says, without telling the cluster again; journaled when storage is
    /// on, so that a restart starts from what the cluster last said.
    pub fn retained_apply(&self, topic: &TopicName, message: Option<Arc<Message>>) -> Result<(), StorageUnavailable> {
        let journal = self.journal.as_ref();
        if let Some(journal) = journal {
            journal.health()?;
        }
        let _order = journal.map(|_| self.retained_order.lock());
        match message {
            None => {
                if self.retained.remove(topic).is_some() {
                    if let Some(journal) = journal {
                        journal.retained_clear(topic)?;
                    }
                }
            }
            Some(message) => {
                if self.retained.try_set(topic.clone(), message.clone()).is_err() {
                    self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                if let Some(journal) = journal {
                    journal.retained_set(&message)?;
                }
            }
        }
        Ok(())
    }

    /// The topics of every retained message, copied out.
    pub fn retained_topics(&self) -> Vec<TopicName> {
        let mut all = Vec::with_capacity(self.retained.len());
        self.retained.for_each(&mut |t, _| all.push(t.clone()));
        all
    }

    /// Applies a retained message's set or clear to the store, and to the journal when
    /// `journaled` and storage is on. Returns the journal position of the change.
    fn retain(&self, message: &Arc<Message>, journaled: bool) -> Result<Option<Lsn>, StorageUnavailable> {
        let journal = self.journal.as_ref().filter(|_| journaled);
        if let Some(journal) = journal {
            journal.health()?;
        }
        let _order = journal.map(|_| self.retained_order.lock());
        if message.payload.is_empty() {
            let previous = self.retained.remove(&message.topic);
            let (Some(journal), Some(previous)) = (journal, previous) else {
                return Ok(None);
            };
            return match journal.retained_clear(&message.topic) {
                Ok(lsn) => Ok(Some(lsn)),
                Err(e) => {
                    // Not durable: as if it never happened.
                    self.retained.set(message.topic.clone(), previous);
                    Err(e)
                }
            };
        }
        let previous = match self.retained.try_set(message.topic.clone(), message.clone()) {
            Ok(previous) => previous,
            Err(_) => {
                self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
        };
        let Some(journal) = journal else { return Ok(None) };
        match journal.retained_set(message) {
            Ok(lsn) => Ok(Some(lsn)),
            Err(e) => {
                match previous {
                    Some(previous) => self.retained.set(message.topic.clone(), previous),
                    None => self.retained.remove(&message.topic),
                };
                Err(e)
            }
        }
    }

    fn route(&self, message: Arc<Message>, now: Instant, counted: bool) -> Routed {
        let mut targets: Vec<Subscriber> = Vec::new();
        let mut groups: Vec<Arc<SharedGroup>> = Vec::new();
        {
            let tree = self.tree.read();
            tree.for_each_match(&message.topic, |_, entry| match entry {
                Entry::Direct(s, _) => targets.push(s.clone()),
                Entry::Group(g) => groups.push(g.clone()),
            });
        }
        // Overlapping subscriptions of one session get one delivery, at the highest QoS.
        // Shared subscriptions are delivered apart from the session's own ones (MQTT 5 §4.8.2).
        targets.sort_unstable_by_key(|s| s.id);
        let mut shared: Vec<Subscriber> = groups.iter().filter_map(|g| g.pick()).collect();
        let mut routed = Routed::default();
        let mut i = 0;
        while i < targets.len() {
            let mut j = i + 1;
            while j < targets.len() && targets[j].id == targets[i].id {
                j += 1;
            }
            self.deliver(&message, &targets[i..j], now, &mut routed);
            i = j;
        }
        for s in shared.drain(..) {
            self.deliver(&message, std::slice::from_ref(&s), now, &mut routed);
        }
        if counted && targets.is_empty() && groups.is_empty() {
            self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
        }
        routed
    }

    /// Deliver to one session whose subscriptions `subs` all matched. A QoS 1/2
    /// delivery to a persistent session is journaled before it is queued (so that the
    /// subscriber's acknowledgement, journaled after, always follows it).
    fn deliver(&self, message: &Arc<Message>, subs: &[Subscriber], now: Instant, routed: &mut Routed) {
        let Some(first) = subs.first() else { return };
        let own = message.publisher == Some(first.id);
        let eligible = subs.iter().filter(|s| !(own && s.options.no_local));
        let mut granted: Option<QoS> = None;
        let mut retain = false;
        let mut ids = Vec::new();
        for s in eligible {
            granted = granted.max(Some(s.options.qos));
            retain |= s.options.retain_as_published && message.retain;
            ids.extend(s.options.id);
        }
        let Some(granted) = granted else { return };
        if message.is_expired(now) {
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(granted),
            retain,
            subscription_ids: ids,
        };
        let journaled = match (&self.journal, first.durable) {
            (Some(journal), Some(key)) if delivery.qos != QoS::AtMostOnce => match journal.enqueued(key, &delivery) {
                Ok(lsn) => {
                    routed.durable_at = routed.durable_at.max(Some(lsn));
                    Some((journal, key))
                }
                Err(e) => {
                    // Delivered all the same (at least once: the publisher, refused,
                    // sends it again), but the publisher is not acknowledged.
                    routed.refused = Some(e);
                    None
                }
            },
            _ => None,
        };
        let message = delivery.message.clone();
        match first.outbox.push(delivery) {
            Pushed::Queued => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                routed.queued += 1;
            }
            Pushed::Dropped => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if let Some((journal, key)) = journaled {
                    journal.acked(key, &message);
                }
            }
        }
    }

    /// The retained messages a new subscription to `filter` is sent, copied out so no
    /// lock is held while sending them; expired ones are left out.
    pub fn retained_matching(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Message>> {
        self.retained
            .matching(filter)
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| !m.is_expired(now))
            .collect()
    }

    /// What a new subscription to `filter`, granted `granted`, is sent of the retained
    /// messages: one [`Delivery`] each, at the lower of its QoS and `granted`, with the
    /// retain flag set and `subscription_ids` attached (MQTT 5); expired ones left out.
    /// Shared subscriptions get none (MQTT 5 §4.8.2): callers do not ask for them.
    pub fn retained_deliveries(&self, filter: &TopicFilter, granted: QoS, subscription_ids: &[u32], now: Instant) -> Vec<Delivery> {
        self.retained_matching(filter, now)
            .into_iter()
            .map(|message| Delivery {
                qos: message.qos.min(granted),
                message,
                retain: true,
                subscription_ids: subscription_ids.to_vec(),
            })
            .collect()
    }

    /// The number of subscriptions (a shared group counts once).
    pub fn subscription_count(&self) -> usize {
        self.tree.read().len()
    }

    /// The number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Every subscription, copied out (the tree's read lock is held while copying, each
    /// shared group's members lock after it: tree → members), sorted by filter.
    pub fn subscriptions(&self) -> Vec<SubscriptionSummary> {
        let mut out = Vec::new();
        let mut groups = Vec::new();
        {
            let tree = self.tree.read();
            tree.for_each(|filter, key, entry| match (key, entry) {
                (_, Entry::Direct(s, client)) => out.push(SubscriptionSummary {
                    filter: filter.to_owned(),
                    group: None,
                    client_id: client.clone(),
                    qos: s.options.qos as u8,
                }),
                (Key::Group(name), Entry::Group(g)) => groups.push((filter.to_owned(), name.clone(), g.clone())),
                (Key::Subscriber(_), Entry::Group(_)) => {}
            });
        }
        for (filter, name, group) in groups {
            for m in group.members.read().iter() {
                out.push(SubscriptionSummary {
                    filter: filter.clone(),
                    group: Some(name.clone()),
                    client_id: m.client.clone(),
                    qos: m.sub.options.qos as u8,
                });
            }
        }
        out.sort_by(|a, b| a.filter.cmp(&b.filter));
        out
    }

    /// The retained messages whose topics match `filter` (expired ones left out),
    /// copied out and sorted by topic.
    pub fn retained_list(&self, filter: &TopicFilter, now: Instant) -> Vec<RetainedSummary> {
        let mut out: Vec<RetainedSummary> = self
            .retained
            .matching(filter)
            .into_iter()
            .filter(|(_, m)| !m.is_expired(now))
            .map(|(topic, message)| RetainedSummary {
                topic: topic.as_str().to_owned(),
                message,
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// The retained message of `topic`, if any.
    pub fn retained_get(&self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained.get(topic)
    }

    /// Forgets the retained message of `topic` (journaled when storage is on); true if
    /// there was one.
    pub fn retained_remove(&self, topic: &TopicName) -> Result<bool, StorageUnavailable> {
        let Some(journal) = &self.journal else {
            let removed = self.retained.remove(topic).is_some();
            if let (true, Some(link)) = (removed, &self.cluster) {
                link.retained_removed(topic);
            }
            return Ok(removed);
        };
        journal.health()?;
        let _order = self.retained_order.lock();
        let Some(previous) = self.retained.remove(topic) else {
            return Ok(false);
        };
        if let Err(e) = journal.retained_clear(topic) {
            self.retained.set(topic.clone(), previous);
            return Err(e);
        }
        if let Some(link) = &self.cluster {
            link.retained_removed(topic);
        }
        Ok(true)
    }

    /// Every retained message, with what `position` returns, both taken under the
    /// retained order lock: the messages hold every journaled retained change up to the
    /// position `position` reads (the snapshot's position), and perhaps some after it.
    pub fn retained_snapshot<R>(&self, position: impl FnOnce() -> R) -> (R, Vec<Arc<Message>>) {
        let _order = self.retained_order.lock();
        let at = position();
        let mut all = Vec::with_capacity(self.retained.len());
        self.retained.for_each(&mut |_, m| all.push(m.clone()));
        (at, all)
    }

    /// The bytes the retained store holds.
    pub fn retained_bytes(&self) -> usize {
        self.retained.total_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Expiry;
    use crate::outbox::OutboxLimits;
    use crate::topic::TopicName;
    use bytes::Bytes;
    use std::time::Duration;

    fn sub(filter: &str) -> Subscription {
        Subscription::parse(filter).unwrap()
    }

    fn subscriber(id: SubscriberId, qos: QoS) -> Subscriber {
        Subscriber {
            durable: None,
            id,
            outbox: Arc::new(Outbox::new(OutboxLimits::default())),
            options: SubscribeOptions { qos, ..Default::default() },
        }
    }

    fn msg(topic: &str, qos: QoS, retain: bool) -> Arc<Message> {
        Arc::new(Message::new(
            TopicName::new(topic).unwrap(),
            Bytes::from_static(b"payload"),
            qos,
            retain,
        ))
    }

    fn drain(s: &Subscriber) -> Vec<Delivery> {
        let mut v = Vec::new();
        s.outbox.pop_into(usize::MAX, &mut v);
        v
    }

    /// A link that writes down what the router told it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ClusterLink for Recorder {
        fn interest_added(&self, filter: &TopicFilter) {
            self.0.lock().push(format!("+{}", filter.as_str()));
        }
        fn interest_removed(&self, filter: &TopicFilter) {
            self.0.lock().push(format!("-{}", filter.as_str()));
        }
        fn published(&self, message: &Arc<Message>, _: Instant) {
            self.0.lock().push(format!("pub {}", message.topic.as_str()));
        }
        fn retained_removed(&self, topic: &TopicName) {
            self.0.lock().push(format!("unretain {}", topic.as_str()));
        }
    }

    fn clustered() -> (Router, Arc<Recorder>) {
        let link = Arc::new(Recorder::default());
        (Router::default().with_cluster(link.clone()), link)
    }

    fn told(link: &Recorder) -> Vec<String> {
        std::mem::take(&mut *link.0.lock())
    }

    #[test]
    fn the_cluster_is_told_of_the_first_and_last_subscription_of_a_filter() {
        let (r, link) = clustered();
        let (a, b) = (subscriber(1, QoS::AtMostOnce), subscriber(2, QoS::AtMostOnce));
        r.subscribe(&sub("a/#"), a.clone());
        r.subscribe(&sub("a/#"), a.clone());
        r.subscribe(&sub("a/#"), b.clone());
        r.subscribe(&sub("$share/g/a/#"), a.clone());
        r.subscribe(&sub("$share/g/x"), a.clone());
        r.subscribe(&sub("$share/g/x"), b.clone());
        assert_eq!(told(&link), ["+a/#", "+x"], "counted per filter, a group once");
        r.unsubscribe(&sub("a/#"), 1);
        r.unsubscribe(&sub("a/#"), 1);
        r.unsubscribe(&sub("a/#"), 2);
        assert!(told(&link).is_empty(), "the group still holds a/#");
        r.unsubscribe(&sub("$share/g/a/#"), 1);
        r.unsubscribe(&sub("$share/g/x"), 1);
        assert_eq!(told(&link), ["-a/#"]);
        r.unsubscribe(&sub("$share/g/x"), 2);
        assert_eq!(told(&link), ["-x"]);
    }

    #[test]
    fn local_publications_go_to_the_cluster_and_remote_ones_do_not_come_back() {
        let (r, link) = clustered();
        let s = subscriber(1, QoS::AtMostOnce);
        r.subscribe(&sub("t/#"), s.clone());
        told(&link);
        r.publish(msg("t/1", QoS::AtMostOnce, false), Instant::now());
        r.publish_own(msg("t/sys", QoS::AtMostOnce, false), Instant::now());
        assert_eq!(r.deliver_remote(msg("t/2", QoS::AtMostOnce, true), Instant::now()), 1);
        assert_eq!(told(&link), ["pub t/1"], "neither $SYS nor remote messages are forwarded");
        assert_eq!(drain(&s).len(), 3);
        assert_eq!(
            r.retained_count(),
            0,
            "a remote retained message is kept through retained_apply only"
        );
        let t = TopicName::new("t/2").unwrap();
        r.retained_apply(&t, Some(msg("t/2", QoS::AtMostOnce, true))).unwrap();
        assert_eq!(r.retained_topics(), std::slice::from_ref(&t));
        r.retained_apply(&t, None).unwrap();
        assert_eq!(r.retained_count(), 0);
        assert!(told(&link).is_empty());
        r.publish(msg("t/3", QoS::AtMostOnce, true), Instant::now());
        r.retained_remove(&TopicName::new("t/3").unwrap()).unwrap();
        assert_eq!(told(&link), ["pub t/3", "unretain t/3"]);
    }

    #[test]
    fn payload_is_shared_not_copied() {
        let r = Router::default();
        let a = subscriber(1, QoS::AtLeastOnce);
        let b = subscriber(2, QoS::AtMostOnce);
        r.subscribe(&sub("s/+/t"), a.clone());
        r.subscribe(&sub("s/#"), b.clone());
        let m = msg("s/1/t", QoS::AtLeastOnce, false);
        assert_eq!(r.publish(m.clone(), Instant::now()), 2);
        let (da, db) = (drain(&a), drain(&b));
        assert_eq!(da[0].message.payload.as_ptr(), m.payload.as_ptr());
        assert_eq!(db[0].message.payload.as_ptr(), m.payload.as_ptr());
        assert_eq!(
            (da[0].qos, db[0].qos),
            (QoS::AtLeastOnce, QoS::AtMostOnce),
            "delivered QoS = min(published, granted)"
        );
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_at_the_highest_qos() {
        let r = Router::default();
        let s = subscriber(1, QoS::AtMostOnce);
        r.subscribe(&sub("a/#"), s.clone());
        let mut high = s.clone();
        high.options = SubscribeOptions {
            qos: QoS::ExactlyOnce,
            id: Some(7),
            ..Default::default()
        };
        r.subscribe(&sub("a/+"), high);
        assert_eq!(r.publish(msg("a/b", QoS::ExactlyOnce, false), Instant::now()), 1);
        let d = drain(&s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].qos, QoS::ExactlyOnce);
        assert_eq!(d[0].subscription_ids, [7]);
    }

    #[test]
    fn retained_deliveries_take_the_lower_qos_and_set_retain() {
        let r = Router::default();
        r.publish(msg("r/1", QoS::ExactlyOnce, true), Instant::now());
        let d = r.retained_deliveries(&TopicFilter::new("r/#").unwrap(), QoS::AtLeastOnce, &[7], Instant::now());
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].qos, d[0].retain, &d[0].subscription_ids[..]),
            (QoS::AtLeastOnce, true, &[7][..])
        );
    }

    #[test]
    fn retained_messages_are_kept_replaced_and_deleted() {
        let r = Router::default();
        r.publish(msg("r/1", QoS::AtMostOnce, true), Instant::now());
        r.publish(msg("r/2", QoS::AtMostOnce, true), Instant::now());
        r.publish(msg("r/1", QoS::AtLeastOnce, true), Instant::now());
        let filter = TopicFilter::new("r/+").unwrap();
        assert_eq!(r.retained_matching(&filter, Instant::now()).len(), 2);
        let empty = Arc::new(Message::new(TopicName::new("r/1").unwrap(), Bytes::new(), QoS::AtMostOnce, true));
        r.publish(empty, Instant::now());
        assert_eq!(r.retained_count(), 1);
    }

    #[test]
    fn a_full_retained_store_still_delivers_live_and_counts() {
        let r = Router::new(Arc::new(MemoryRetained::with_limits(1, 0)));
        let s = subscriber(1, QoS::AtMostOnce);
        r.subscribe(&sub("r/#"), s.clone());
        let now = Instant::now();
        assert_eq!(r.publish(msg("r/1", QoS::AtMostOnce, true), now), 1);
        assert_eq!(r.publish(msg("r/2", QoS::AtMostOnce, true), now), 1, "delivered live");
        assert_eq!(r.publish(msg("r/1", QoS::AtLeastOnce, true), now), 1);
        assert_eq!(drain(&s).len(), 3);
        assert_eq!(r.retained_count(), 1);
        assert_eq!(r.stats.retained_refused.load(Ordering::Relaxed), 1);
        assert_eq!(r.retained_matching(&TopicFilter::new("r/+").unwrap(), now)[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn forwarded_retain_flag_follows_retain_as_published() {
        let r = Router::default();
        let plain = subscriber(1, QoS::AtMostOnce);
        let mut rap = subscriber(2, QoS::AtMostOnce);
        rap.options.retain_as_published = true;
        r.subscribe(&sub("x"), plain.clone());
        r.subscribe(&sub("x"), rap.clone());
        r.publish(msg("x", QoS::AtMostOnce, true), Instant::now());
        assert!(!drain(&plain)[0].retain, "cleared for live subscribers");
        assert!(drain(&rap)[0].retain, "kept with retain-as-published");
    }

    #[test]
    fn no_local_skips_the_publishers_own_subscriber() {
        let r = Router::default();
        let mut me = subscriber(1, QoS::AtMostOnce);
        me.options.no_local = true;
        r.subscribe(&sub("chat"), me.clone());
        let own =
            Arc::new(Message::new(TopicName::new("chat").unwrap(), Bytes::from_static(b"x"), QoS::AtMostOnce, false).with_publisher(1));
        assert_eq!(r.publish(own, Instant::now()), 0);
        assert_eq!(r.publish(msg("chat", QoS::AtMostOnce, false), Instant::now()), 1);
    }

    #[test]
    fn shared_groups_deliver_each_message_to_one_member_round_robin() {
        let r = Router::default();
        let members: Vec<_> = (1..=3).map(|i| subscriber(i, QoS::AtLeastOnce)).collect();
        for m in &members {
            r.subscribe(&sub("$share/g/jobs/#"), m.clone());
        }
        let other = subscriber(9, QoS::AtLeastOnce);
        r.subscribe(&sub("$share/h/jobs/#"), other.clone());
        for _ in 0..6 {
            assert_eq!(
                r.publish(msg("jobs/1", QoS::AtLeastOnce, false), Instant::now()),
                2,
                "one per group"
            );
        }
        for m in &members {
            assert_eq!(drain(m).len(), 2);
        }
        assert_eq!(drain(&other).len(), 6);
        assert!(r.unsubscribe(&sub("$share/g/jobs/#"), 1));
        assert!(!r.unsubscribe(&sub("$share/g/jobs/#"), 1));
        r.unsubscribe(&sub("$share/g/jobs/#"), 2);
        r.unsubscribe(&sub("$share/g/jobs/#"), 3);
        assert_eq!(r.subscription_count(), 1, "an empty group is removed");
    }

    #[test]
    fn expired_messages_are_not_delivered() {
        let r = Router::default();
        let s = subscriber(1, QoS::AtMostOnce);
        r.subscribe(&sub("e"), s.clone());
        let now = Instant::now();
        let m = Message::new(TopicName::new("e").unwrap(), Bytes::from_static(b"x"), QoS::AtMostOnce, true)
            .with_expiry(Some(Expiry::after(now, Duration::from_secs(1))));
        let m = Arc::new(m);
        assert_eq!(r.publish(m.clone(), now + Duration::from_secs(2)), 0);
        assert!(r
            .retained_matching(&TopicFilter::new("e").unwrap(), now + Duration::from_secs(2))
            .is_empty());
        assert_eq!(r.retained_matching(&TopicFilter::new("e").unwrap(), now).len(), 1);
    }

    #[test]
    fn dollar_topics_do_not_match_leading_wildcards() {
        let r = Router::default();
        let s = subscriber(1, QoS::AtMostOnce);
        r.subscribe(&sub("#"), s.clone());
        r.subscribe(&sub("+/uptime"), s.clone());
        assert_eq!(r.publish(msg("$SYS/uptime", QoS::AtMostOnce, false), Instant::now()), 0);
        assert_eq!(r.stats.unrouted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn full_outboxes_drop_and_count_without_touching_others() {
        let r = Router::default();
        let slow = Subscriber {
            durable: None,
            id: 1,
            outbox: Arc::new(Outbox::new(OutboxLimits {
                max_qos0: 2,
                max_qos12: 2,
                max_bytes: 0,
            })),
            options: SubscribeOptions::default(),
        };
        let fast = subscriber(2, QoS::AtMostOnce);
        r.subscribe(&sub("t"), slow.clone());
        r.subscribe(&sub("t"), fast.clone());
        for _ in 0..5 {
            r.publish(msg("t", QoS::AtMostOnce, false), Instant::now());
        }
        assert_eq!(drain(&fast).len(), 5);
        assert_eq!(drain(&slow).len(), 2);
        assert_eq!(r.stats.dropped.load(Ordering::Relaxed), 3);
    }
}

//! The one-process channel layer.
//!
//! [`LocalChannels`] is the fan-out core: every inbox on this node and the
//! groups it belongs to. [`MemoryLayer`] is that core plus an in-memory
//! presence table. A distributed backend can reuse `LocalChannels` for its
//! per-node fan-out and only add the transport between nodes: the
//! operations that remove members return the groups that lost their last
//! local member, so the transport knows when to stop listening to a group.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use whisper_protocol::{PresenceEntry, RoomId};

use crate::inbox::{self, Delivery, InboxSender};
use crate::presence::PresenceTable;
use crate::{ChannelLayer, ChannelName, GroupName, Inbox, LayerConfig, LayerError, Payload};

/// One-process backend: groups are maps from name to member inboxes, and
/// presence is a table in memory.
///
/// Every operation is a short critical section on a `std` lock that is never
/// held across an `.await`, so the `async` methods complete without
/// suspending and never fail. Use it for a single node and in tests; several
/// nodes need a shared backend.
#[derive(Debug)]
pub struct MemoryLayer {
    channels: LocalChannels,
    presence: Mutex<PresenceTable>,
}

impl MemoryLayer {
    /// A layer with no channels and no presence.
    pub fn new(config: LayerConfig) -> Self {
        MemoryLayer {
            channels: LocalChannels::new(&config),
            presence: Mutex::new(PresenceTable::new(config.presence_ttl, Instant::now())),
        }
    }

    fn presence(&self) -> MutexGuard<'_, PresenceTable> {
        self.presence.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryLayer {
    /// A layer with [`LayerConfig::default`].
    fn default() -> Self {
        MemoryLayer::new(LayerConfig::default())
    }
}

impl ChannelLayer for MemoryLayer {
    fn new_channel(&self) -> Inbox {
        self.channels.new_channel()
    }

    fn presence_ttl(&self) -> Duration {
        self.presence().ttl()
    }

    async fn group_add(&self, group: &GroupName, channel: ChannelName) -> Result<(), LayerError> {
        self.channels.group_add(group, channel);
        Ok(())
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: ChannelName,
    ) -> Result<(), LayerError> {
        self.channels.group_discard(group, channel);
        Ok(())
    }

    async fn group_send(&self, group: &GroupName, payload: Payload) -> Result<(), LayerError> {
        self.channels.group_send(group, &payload);
        Ok(())
    }

    async fn send(&self, channel: ChannelName, payload: Payload) -> Result<(), LayerError> {
        self.channels.send(channel, payload);
        Ok(())
    }

    async fn close_channel(&self, channel: ChannelName) {
        self.channels.close_channel(channel);
    }

    fn slow_consumer_closes(&self) -> u64 {
        self.channels.slow_consumer_closes()
    }

    fn expendables_dropped(&self) -> u64 {
        self.channels.expendables_dropped()
    }

    fn room_count(&self) -> usize {
        self.channels.room_count()
    }

    async fn is_available(&self) -> bool {
        true
    }

    async fn presence_touch(
        &self,
        room: RoomId,
        user_id: i64,
        username: &str,
        name: &str,
    ) -> Result<(), LayerError> {
        self.presence()
            .touch(room, user_id, username, name, Instant::now());
        Ok(())
    }

    async fn presence_leave(&self, room: RoomId, user_id: i64) -> Result<(), LayerError> {
        self.presence().leave(room, user_id, Instant::now());
        Ok(())
    }

    async fn presence_list(&self, room: RoomId) -> Result<Vec<PresenceEntry>, LayerError> {
        Ok(self.presence().list(room, Instant::now()))
    }
}

/// Groups that lost their last member on this node during an operation.
///
/// `MemoryLayer` ignores them (its groups vanish with their last member); a
/// distributed backend stops listening to them. Empty, and so never
/// allocated, in the common case.
pub(crate) type EmptiedGroups = Vec<GroupName>;

/// Every inbox on this node and the groups it belongs to.
///
/// Broadcasts take the read lock, so they run in parallel with each other;
/// only membership changes take the write lock. Delivery is `try_send` on a
/// bounded queue, so a broadcast holds the lock for a bounded time however
/// slow the receivers are.
#[derive(Debug)]
pub(crate) struct LocalChannels {
    max_queued_bytes: usize,
    expendable_delay: Duration,
    next_channel: AtomicU64,
    membership: RwLock<Membership>,
    slow_closes: AtomicU64,
    expendables_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Membership {
    channels: HashMap<ChannelName, Member>,
    /// Each group holds its own clone of its members' senders, so a
    /// broadcast walks one map without a lookup per member. Invariant: no
    /// group is empty (the last member leaving removes the group).
    groups: HashMap<GroupName, HashMap<ChannelName, InboxSender>>,
}

#[derive(Debug)]
struct Member {
    sender: InboxSender,
    /// The groups this channel is in, so closing it touches only those.
    groups: HashSet<GroupName>,
}

impl LocalChannels {
    pub(crate) fn new(config: &LayerConfig) -> Self {
        LocalChannels {
            max_queued_bytes: config.max_queued_bytes,
            expendable_delay: config.expendable_delay,
            next_channel: AtomicU64::new(1),
            membership: RwLock::new(Membership::default()),
            slow_closes: AtomicU64::new(0),
            expendables_dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn new_channel(&self) -> Inbox {
        let name = ChannelName::new(self.next_channel.fetch_add(1, Ordering::Relaxed));
        let (sender, inbox) = inbox::inbox(name, self.max_queued_bytes, self.expendable_delay);
        let member = Member {
            sender,
            groups: HashSet::new(),
        };
        self.write().channels.insert(name, member);
        inbox
    }

    /// Adds the channel to the group. A channel that is closed (or was closed
    /// for falling behind) is not resurrected: adding it does nothing.
    pub(crate) fn group_add(&self, group: &GroupName, channel: ChannelName) {
        let mut membership = self.write();
        let Membership { channels, groups } = &mut *membership;
        let Some(member) = channels.get_mut(&channel) else {
            return;
        };
        member.groups.insert(group.clone());
        groups
            .entry(group.clone())
            .or_default()
            .insert(channel, member.sender.clone());
    }

    /// Takes the channel out of the group; returns whether that emptied the
    /// group.
    pub(crate) fn group_discard(&self, group: &GroupName, channel: ChannelName) -> bool {
        let mut membership = self.write();
        if let Some(member) = membership.channels.get_mut(&channel) {
            member.groups.remove(group);
        }
        membership.leave_group(group, channel)
    }

    /// The broadcast: one pass over the group under the read lock, a
    /// reference-count bump per member, no waiting. Returns the groups that
    /// lost their last member because a receiver was closed or gone.
    pub(crate) fn group_send(&self, group: &GroupName, payload: &Payload) -> EmptiedGroups {
        // Both stay unallocated unless a delivery fails.
        let mut overflowed = Vec::new();
        let mut gone = Vec::new();
        let mut shed = 0;
        {
            let membership = self.read();
            let Some(members) = membership.groups.get(group) else {
                return EmptiedGroups::new();
            };
            for (&channel, sender) in members {
                // Cloning a Payload shares its bytes: every member queues the
                // same allocation.
                match sender.deliver(payload.clone()) {
                    Delivery::Delivered => {}
                    Delivery::Shed(count) => shed += count,
                    Delivery::Full => overflowed.push(channel),
                    Delivery::Gone => gone.push(channel),
                }
            }
        }
        self.count_shed(shed);
        // Closing needs the write lock, so it waits until the read lock is
        // released.
        self.drop_failed(&overflowed, &gone)
    }

    /// Delivers to one channel; an unknown or closed channel drops the
    /// payload. Returns the groups emptied if the channel had to be closed.
    pub(crate) fn send(&self, channel: ChannelName, payload: Payload) -> EmptiedGroups {
        let delivery = match self.read().channels.get(&channel) {
            Some(member) => member.sender.deliver(payload),
            None => return EmptiedGroups::new(),
        };
        match delivery {
            Delivery::Delivered => EmptiedGroups::new(),
            Delivery::Shed(count) => {
                self.count_shed(count);
                EmptiedGroups::new()
            }
            Delivery::Full => self.drop_failed(&[channel], &[]),
            Delivery::Gone => self.drop_failed(&[], &[channel]),
        }
    }

    /// Forgets the channel; returns the groups it was the last member of.
    pub(crate) fn close_channel(&self, channel: ChannelName) -> EmptiedGroups {
        let mut emptied = EmptiedGroups::new();
        self.write().remove(channel, &mut emptied);
        emptied
    }

    /// Whether the channel exists (was made here and is not closed).
    #[cfg(feature = "redis")]
    pub(crate) fn contains(&self, channel: ChannelName) -> bool {
        self.read().channels.contains_key(&channel)
    }

    /// Whether the group has at least one member on this node.
    #[cfg(feature = "redis")]
    pub(crate) fn has_members(&self, group: &GroupName) -> bool {
        self.read().groups.contains_key(group)
    }

    /// Every group with at least one member on this node.
    #[cfg(feature = "redis")]
    pub(crate) fn group_names(&self) -> Vec<GroupName> {
        self.read().groups.keys().cloned().collect()
    }

    pub(crate) fn slow_consumer_closes(&self) -> u64 {
        self.slow_closes.load(Ordering::Relaxed)
    }

    pub(crate) fn expendables_dropped(&self) -> u64 {
        self.expendables_dropped.load(Ordering::Relaxed)
    }

    /// Counts expendable payloads dropped for receivers falling behind;
    /// one atomic add per broadcast, and only when something was dropped.
    fn count_shed(&self, count: usize) {
        if count > 0 {
            self.expendables_dropped
                .fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn room_count(&self) -> usize {
        self.read()
            .groups
            .keys()
            .filter(|group| group.is_room())
            .count()
    }

    /// Closes the channels that fell behind (counting each once, even if
    /// several broadcasts saw it full) and forgets those whose inbox was
    /// dropped. Returns the groups this emptied.
    fn drop_failed(&self, overflowed: &[ChannelName], gone: &[ChannelName]) -> EmptiedGroups {
        let mut emptied = EmptiedGroups::new();
        if overflowed.is_empty() && gone.is_empty() {
            return emptied;
        }
        let mut membership = self.write();
        for &channel in overflowed {
            // Absent: already closed by another broadcast or by its
            // connection; nothing to do, nothing to count.
            if let Some(member) = membership.remove(channel, &mut emptied) {
                // Flag first, then `member` (the last sender) is dropped at
                // the end of this block, waking the receiver to see the flag.
                member.sender.mark_overflowed();
                self.slow_closes.fetch_add(1, Ordering::Relaxed);
            }
        }
        for &channel in gone {
            membership.remove(channel, &mut emptied);
        }
        emptied
    }

    fn read(&self) -> RwLockReadGuard<'_, Membership> {
        self.membership
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Membership> {
        self.membership
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn channel_count(&self) -> usize {
        self.read().channels.len()
    }
}

impl Membership {
    /// Forgets the channel and takes it out of all its groups, dropping every
    /// sender but the returned one; adds the groups it emptied to `emptied`.
    fn remove(&mut self, channel: ChannelName, emptied: &mut EmptiedGroups) -> Option<Member> {
        let member = self.channels.remove(&channel)?;
        for group in &member.groups {
            if self.leave_group(group, channel) {
                emptied.push(group.clone());
            }
        }
        Some(member)
    }

    /// Takes the channel out of one group, and forgets the group once empty
    /// so that rooms nobody is in cost no memory. Returns whether this
    /// removed the group's last member.
    fn leave_group(&mut self, group: &GroupName, channel: ChannelName) -> bool {
        let Some(members) = self.groups.get_mut(group) else {
            return false;
        };
        if members.remove(&channel).is_none() || !members.is_empty() {
            return false;
        }
        self.groups.remove(group);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InboxClosed;

    mod channel_layer {
        use crate::{LayerConfig, MemoryLayer};

        crate::channel_layer_test_suite!(
            |config: LayerConfig| async move { MemoryLayer::new(config) }
        );
    }

    #[tokio::test]
    async fn receivers_get_the_senders_own_bytes() {
        let layer = MemoryLayer::default();
        let group = GroupName::new("room-1");
        let mut inboxes = [layer.new_channel(), layer.new_channel()];
        for inbox in &inboxes {
            layer
                .group_add(&group, inbox.name())
                .await
                .expect("memory layer");
        }
        let payload = Payload::from(String::from("broadcast"));
        let sent_at = payload.as_bytes().as_ptr();
        layer
            .group_send(&group, payload)
            .await
            .expect("memory layer");
        for inbox in &mut inboxes {
            let received = inbox.try_recv().expect("delivered").expect("open");
            assert_eq!(received.as_bytes().as_ptr(), sent_at);
        }
    }

    #[tokio::test]
    async fn empty_groups_and_closed_channels_are_forgotten() {
        let layer = MemoryLayer::default();
        let (one, two) = (
            GroupName::for_room(RoomId(1)),
            GroupName::for_room(RoomId(2)),
        );
        let ann = layer.new_channel();
        let bob = layer.new_channel();
        for group in [&one, &two] {
            layer
                .group_add(group, ann.name())
                .await
                .expect("memory layer");
        }
        layer
            .group_add(&one, bob.name())
            .await
            .expect("memory layer");
        assert_eq!(layer.room_count(), 2);

        layer
            .group_discard(&one, bob.name())
            .await
            .expect("memory layer");
        assert_eq!(layer.room_count(), 2);
        layer.close_channel(ann.name()).await;
        assert_eq!(layer.room_count(), 0);
        layer.close_channel(bob.name()).await;
        assert_eq!(layer.channels.channel_count(), 0);
    }

    #[tokio::test]
    async fn a_slow_consumer_leaves_no_trace() {
        let layer = MemoryLayer::new(LayerConfig {
            max_queued_bytes: 1,
            ..LayerConfig::default()
        });
        let group = GroupName::new("room-1");
        let mut slow = layer.new_channel();
        layer
            .group_add(&group, slow.name())
            .await
            .expect("memory layer");
        for _ in 0..3 {
            layer
                .group_send(&group, Payload::from("x"))
                .await
                .expect("memory layer");
        }
        assert_eq!(slow.recv().await, Err(InboxClosed::SlowConsumer));
        assert_eq!(layer.slow_consumer_closes(), 1);
        assert_eq!(layer.room_count(), 0);
        assert_eq!(layer.channels.channel_count(), 0);

        // Re-adding the closed channel does not resurrect it.
        layer
            .group_add(&group, slow.name())
            .await
            .expect("memory layer");
        assert_eq!(layer.room_count(), 0);
    }

    #[test]
    fn local_channels_report_the_groups_that_lose_their_last_member() {
        // Inboxes of one payload.
        let channels = LocalChannels::new(&LayerConfig {
            max_queued_bytes: 1,
            ..LayerConfig::default()
        });
        let (one, two) = (
            GroupName::for_room(RoomId(1)),
            GroupName::for_room(RoomId(2)),
        );
        let ann = channels.new_channel();
        let bob = channels.new_channel();
        channels.group_add(&one, ann.name());
        channels.group_add(&two, ann.name());
        channels.group_add(&one, bob.name());

        assert!(!channels.group_discard(&one, bob.name()), "ann is still in");
        assert!(!channels.group_discard(&one, bob.name()), "not a member");
        let mut emptied = channels.close_channel(ann.name());
        emptied.sort();
        assert_eq!(emptied, [one.clone(), two.clone()]);
        assert!(channels.close_channel(ann.name()).is_empty());

        // Closed for falling behind on a direct send.
        channels.group_add(&one, bob.name());
        assert!(channels.send(bob.name(), Payload::from("a")).is_empty());
        assert_eq!(
            channels.send(bob.name(), Payload::from("b")),
            std::slice::from_ref(&one)
        );

        // Forgotten on a broadcast once its inbox is dropped.
        let cy = channels.new_channel();
        channels.group_add(&two, cy.name());
        drop(cy);
        assert_eq!(channels.group_send(&two, &Payload::from("c")), [two]);
        assert_eq!(channels.room_count(), 0);
    }

    #[tokio::test]
    async fn dropped_inboxes_are_forgotten_on_the_next_delivery() {
        let layer = MemoryLayer::default();
        let group = GroupName::new("room-1");
        let inbox = layer.new_channel();
        layer
            .group_add(&group, inbox.name())
            .await
            .expect("memory layer");
        drop(inbox);
        layer
            .group_send(&group, Payload::from("x"))
            .await
            .expect("memory layer");
        assert_eq!(layer.room_count(), 0);
        assert_eq!(layer.channels.channel_count(), 0);
        assert_eq!(layer.slow_consumer_closes(), 0);
    }
}

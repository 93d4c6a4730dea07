//! The scan behind [`super::reduce`]: the best candidate per key so far, borrowed from the batch.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use crate::rows::{Rank, Version};
use crate::{EventId, EventMeta, Membership, MembershipId, Millis, User, UserStub};

/// A version while scanning: borrowed from the batch, nothing owned is built until the scan ends.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Borrowed<'a> {
    pub(super) rank: Rank,
    pub(super) at: Millis,
    pub(super) event_at: Millis,
    pub(super) event_id: &'a EventId,
}

impl<'a> Borrowed<'a> {
    pub(super) fn new(rank: Rank, at: Millis, meta: &'a EventMeta) -> Self {
        Borrowed {
            rank,
            at,
            event_at: meta.timestamp,
            event_id: &meta.id,
        }
    }

    pub(super) fn owned(self) -> Version {
        Version {
            rank: self.rank,
            at: self.at,
            event_at: self.event_at,
            event_id: self.event_id.clone(),
        }
    }
}

/// The best candidate so far for each key, in a slot that the batch's events point at.
pub(super) struct Table<K, C> {
    slots: HashMap<K, usize>,
    entries: Vec<(K, C)>,
}

impl<K, C> Default for Table<K, C> {
    fn default() -> Self {
        Table {
            slots: HashMap::new(),
            entries: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, C> Table<K, C> {
    /// Offers a candidate for `key` (`merge` settles it against the current one) and returns
    /// the key's slot.
    pub(super) fn offer(&mut self, key: K, candidate: C, merge: impl FnOnce(&mut C, C)) -> usize {
        match self.slots.entry(key) {
            Entry::Occupied(slot) => {
                let slot = *slot.get();
                merge(&mut self.entries[slot].1, candidate);
                slot
            }
            Entry::Vacant(vacant) => {
                let slot = self.entries.len();
                vacant.insert(slot);
                self.entries.push((key, candidate));
                slot
            }
        }
    }

    /// The candidates in key order: the ordered maps are then built without moving rows around.
    pub(super) fn into_sorted(mut self) -> impl Iterator<Item = C>
    where
        K: Ord,
    {
        self.entries.sort_unstable_by_key(|entry| entry.0);
        self.entries.into_iter().map(|(_, candidate)| candidate)
    }

    /// The index (in the batch) of the event whose candidate holds `slot` now.
    pub(super) fn index_of(&self, slot: usize) -> usize
    where
        C: Indexed,
    {
        self.entries[slot].1.index()
    }
}

/// A candidate knows which event of the batch it came from.
pub(super) trait Indexed {
    fn index(&self) -> usize;
}

/// A row's best version so far, and what the row is built from.
pub(super) struct Best<'a, S> {
    pub(super) source: S,
    pub(super) version: Borrowed<'a>,
    pub(super) index: usize,
}

impl<S> Indexed for Best<'_, S> {
    fn index(&self) -> usize {
        self.index
    }
}

pub(super) fn keep_greater<'a, S>(current: &mut Best<'a, S>, candidate: Best<'a, S>) {
    if candidate.version > current.version {
        *current = candidate;
    }
}

/// An entity's earliest deletion so far.
pub(super) struct Gone<'a, I> {
    pub(super) id: &'a I,
    pub(super) meta: &'a EventMeta,
    pub(super) slug: Option<&'a String>,
    pub(super) index: usize,
}

impl<I> Indexed for Gone<'_, I> {
    fn index(&self) -> usize {
        self.index
    }
}

pub(super) fn keep_earliest<'a, I>(current: &mut Gone<'a, I>, candidate: Gone<'a, I>) {
    let key = |g: &Gone<'a, I>| (g.meta.timestamp, &g.meta.id);
    if key(&candidate) < key(current) {
        *current = candidate;
    }
}

/// A membership's winning change so far.
pub(super) struct Member<'a> {
    pub(super) membership: &'a Membership,
    pub(super) generation: (Millis, &'a MembershipId),
    pub(super) version: Borrowed<'a>,
    pub(super) deleted_at: Option<Millis>,
    pub(super) index: usize,
}

impl Indexed for Member<'_> {
    fn index(&self) -> usize {
        self.index
    }
}

/// The newest generation wins; within one, the newest version, with the earliest own deletion.
pub(super) fn keep_member<'a>(current: &mut Member<'a>, candidate: Member<'a>) {
    match candidate.generation.cmp(&current.generation) {
        Ordering::Greater => *current = candidate,
        Ordering::Equal => {
            let deleted_at = earliest(current.deleted_at, candidate.deleted_at);
            if candidate.version > current.version {
                *current = candidate;
            }
            current.deleted_at = deleted_at;
        }
        Ordering::Less => {}
    }
}

/// What a user row is built from: Clerk's user, or the copy a membership event carries.
#[derive(Clone, Copy)]
pub(super) enum UserSource<'a> {
    Full(&'a User),
    Stub(&'a UserStub, Millis),
}

fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

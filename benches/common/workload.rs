//! The benchmarks' workload: a Clerk history in Clerk's format, delivered with duplicates in a
//! shuffled order. Shared by the benches (`#[path]` module), deterministic for a seed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

pub const T0: i64 = 1_754_560_800_000;

/// One webhook as Clerk sends it: the Svix message id and the exact body.
pub struct RawEvent {
    pub id: String,
    pub body: String,
}

pub struct Workload {
    /// Every distinct event, in the order Clerk emitted them.
    pub history: Vec<RawEvent>,
    /// The delivery order: indexes into `history`, 30% of them repeats, shuffled.
    pub delivery: Vec<usize>,
}

#[allow(dead_code)] // each bench uses a part
impl Workload {
    pub fn delivered(&self) -> impl Iterator<Item = &RawEvent> {
        self.delivery.iter().map(|&i| &self.history[i])
    }
}

pub fn user_json(id: usize, v: i64, at: i64) -> Value {
    json!({"id": format!("user_{id}"), "first_name": format!("First{id}"), "last_name": format!("Last{v}"),
           "username": format!("u{id}_{v}"), "image_url": "https://img.example.com/u",
           "email_addresses": [{"id": "idn_1", "email_address": format!("u{id}.{v}@example.com")}],
           "primary_email_address_id": "idn_1", "public_metadata": {"v": v}, "created_at": T0, "updated_at": at})
}

pub fn org_json(id: usize, v: i64, at: i64) -> Value {
    json!({"id": format!("org_{id}"), "name": format!("Org {id} v{v}"), "slug": format!("org-{id}"),
           "public_metadata": {}, "created_at": T0, "updated_at": at})
}

/// A realistic mix in Clerk's order: users, organizations and memberships; creates, updates,
/// deletes; then 30% duplicates (redeliveries of the same message) and a shuffle.
pub fn workload(n: usize, rng: &mut StdRng) -> Workload {
    let users = (n / 5).max(10);
    let orgs = (n / 50).max(2);
    let mut history: Vec<(String, Value, i64)> = Vec::with_capacity(n);
    let mut now = T0;
    let mut user_version = vec![0i64; users];
    let mut user_deleted = vec![false; users];
    let mut members: BTreeMap<(usize, usize), (String, i64)> = BTreeMap::new();
    let mut created = 0usize;
    while history.len() < n * 7 / 10 {
        now += rng.random_range(1..50);
        let roll = rng.random_range(0..100);
        if created < users && (roll < 25 || history.is_empty()) {
            let id = created;
            created += 1;
            history.push(("user.created".into(), user_json(id, 0, now), now));
            if id < orgs {
                history.push(("organization.created".into(), org_json(id, 0, now), now));
            }
            continue;
        }
        if created == 0 {
            continue;
        }
        let u = rng.random_range(0..created);
        if user_deleted[u] {
            continue;
        }
        match roll {
            25..=54 => {
                user_version[u] += 1;
                history.push((
                    "user.updated".into(),
                    user_json(u, user_version[u], now),
                    now,
                ));
            }
            55..=57 => {
                user_deleted[u] = true;
                history.push((
                    "user.deleted".into(),
                    json!({"id": format!("user_{u}"), "deleted": true}),
                    now,
                ));
            }
            58..=62 => {
                let o = rng.random_range(0..orgs.min(created));
                history.push((
                    "organization.updated".into(),
                    org_json(o, now - T0, now),
                    now,
                ));
            }
            _ => {
                let o = rng.random_range(0..orgs.min(created));
                let key = (u, o);
                let (kind, mem_id, created_at) = match members.get(&key) {
                    None => (
                        "organizationMembership.created",
                        format!("orgmem_{u}_{o}_{now}"),
                        now,
                    ),
                    Some((id, c)) if roll > 95 => {
                        ("organizationMembership.deleted", id.clone(), *c)
                    }
                    Some((id, c)) => ("organizationMembership.updated", id.clone(), *c),
                };
                let data = json!({"id": mem_id, "role": if roll % 2 == 0 { "org:admin" } else { "org:member" },
                    "permissions": [], "organization": org_json(o, 0, T0),
                    "public_user_data": {"user_id": format!("user_{u}"), "identifier": format!("u{u}@example.com")},
                    "created_at": created_at, "updated_at": now});
                if kind.ends_with("deleted") {
                    members.remove(&key);
                } else {
                    members.insert(key, (mem_id, created_at));
                }
                history.push((kind.into(), data, now));
            }
        }
    }
    let history: Vec<RawEvent> = history
        .iter()
        .enumerate()
        .map(|(i, (kind, data, at))| RawEvent {
            id: format!("msg_{i:09}"),
            body: json!({"type": kind, "timestamp": at, "data": data}).to_string(),
        })
        .collect();
    let mut delivery: Vec<usize> = (0..history.len()).collect();
    while delivery.len() < n {
        delivery.push(rng.random_range(0..history.len()));
    }
    delivery.shuffle(rng);
    Workload { history, delivery }
}

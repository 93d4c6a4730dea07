//! A small simulator of Clerk for tests: it turns a list of random operations into the webhook
//! bodies Clerk would send, in Clerk's own order, so that tests can shuffle and duplicate them.
//! Enabled by the `testkit` feature; never part of the product.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

/// One webhook as Svix would deliver it: the message id and the exact body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvent {
    pub svix_id: String,
    pub body: Vec<u8>,
}

impl SimEvent {
    pub fn event_type(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One random operation; the simulator skips those that make no sense in Clerk's state.
#[derive(Clone, Debug)]
pub struct Op {
    kind: u8,
    a: u8,
    b: u8,
    /// Milliseconds between this operation and the previous one (0 gives equal timestamps).
    dt: u16,
    /// For deletions: whether Clerk also sends `organizationMembership.deleted` per membership.
    cascade_events: bool,
}

pub fn arb_op() -> impl Strategy<Value = Op> {
    arb_op_among(3, 2)
}

/// An operation on one of `users` users and `orgs` organizations: a deleted entity never comes
/// back, so a long history that should stay lively needs more of them than [`arb_op`]'s few.
pub fn arb_op_among(users: u8, orgs: u8) -> impl Strategy<Value = Op> {
    (
        0u8..10,
        0u8..users.max(1),
        0u8..orgs.max(1),
        prop_oneof![1 => Just(0u16), 6 => 1u16..5000],
        any::<bool>(),
    )
        .prop_map(|(kind, a, b, dt, cascade_events)| Op {
            kind,
            a,
            b,
            dt,
            cascade_events,
        })
}

/// A Clerk history: events in Clerk's order, with increasing timestamps.
pub fn arb_history(max_ops: usize) -> impl Strategy<Value = Vec<SimEvent>> {
    prop::collection::vec(arb_op(), 1..max_ops).prop_map(|ops| Clerk::default().run(&ops))
}

/// A delivery of `history`: shuffled, with some events repeated.
pub fn arb_delivery(history: Vec<SimEvent>) -> impl Strategy<Value = Vec<SimEvent>> {
    let len = history.len();
    prop::collection::vec(0..len.max(1), 0..=len / 2 + 1).prop_flat_map(move |dups| {
        let mut all = history.clone();
        all.extend(dups.iter().filter_map(|&i| history.get(i).cloned()));
        Just(all).prop_shuffle()
    })
}

#[derive(Clone, Debug, Default)]
struct SimUser {
    created_at: i64,
    version: u32,
    deleted: bool,
}

#[derive(Clone, Debug, Default)]
struct SimOrg {
    created_at: i64,
    updated_at: i64,
    version: u32,
    deleted: bool,
}

#[derive(Clone, Debug)]
struct SimMembership {
    id: String,
    created_at: i64,
    updated_at: i64,
    role: &'static str,
}

/// Clerk's state as far as the synced tables care.
#[derive(Debug, Default)]
pub struct Clerk {
    now: i64,
    seq: u32,
    users: BTreeMap<u8, SimUser>,
    orgs: BTreeMap<u8, SimOrg>,
    memberships: BTreeMap<(u8, u8), SimMembership>,
    generations: u32,
    out: Vec<SimEvent>,
}

const EPOCH_MS: i64 = 1_754_560_800_000;

impl Clerk {
    pub fn run(mut self, ops: &[Op]) -> Vec<SimEvent> {
        self.now = EPOCH_MS;
        for op in ops {
            self.now += i64::from(op.dt);
            self.step(op);
        }
        self.out
    }

    fn step(&mut self, op: &Op) {
        let (u, o) = (op.a, op.b);
        let user_live = self.users.get(&u).is_some_and(|x| !x.deleted);
        let org_live = self.orgs.get(&o).is_some_and(|x| !x.deleted);
        match op.kind {
            0 if !self.users.contains_key(&u) => self.create_user(u),
            1 if user_live => {
                if let Some(user) = self.users.get_mut(&u) {
                    user.version += 1;
                }
                self.emit_user("user.updated", u);
            }
            2 if user_live => self.delete_user(u, op.cascade_events),
            3 if !self.orgs.contains_key(&o) => self.create_org(o),
            4 if org_live => {
                if let Some(org) = self.orgs.get_mut(&o) {
                    org.version += 1;
                    org.updated_at = self.now;
                }
                let data = self.org_json(o);
                self.emit("organization.updated", data);
            }
            5 if org_live => self.delete_org(o, op.cascade_events),
            6 if user_live && org_live && !self.memberships.contains_key(&(u, o)) => {
                self.join(u, o)
            }
            7 if self.memberships.contains_key(&(u, o)) => self.change_role(u, o),
            8 if self.memberships.contains_key(&(u, o)) => {
                self.emit_membership("organizationMembership.deleted", (u, o));
                self.memberships.remove(&(u, o));
            }
            9 => self.emit(
                "session.created",
                json!({"object": "session", "id": "sess_1", "user_id": user_id(u)}),
            ),
            _ => {}
        }
    }

    fn create_user(&mut self, u: u8) {
        self.users.insert(
            u,
            SimUser {
                created_at: self.now,
                ..SimUser::default()
            },
        );
        self.emit_user("user.created", u);
    }

    fn delete_user(&mut self, u: u8, cascade_events: bool) {
        self.cascade(|(mu, _)| mu == u, cascade_events);
        if let Some(user) = self.users.get_mut(&u) {
            user.deleted = true;
        }
        self.emit(
            "user.deleted",
            json!({"object": "user", "id": user_id(u), "deleted": true}),
        );
    }

    fn create_org(&mut self, o: u8) {
        self.orgs.insert(
            o,
            SimOrg {
                created_at: self.now,
                updated_at: self.now,
                ..SimOrg::default()
            },
        );
        let data = self.org_json(o);
        self.emit("organization.created", data);
    }

    fn delete_org(&mut self, o: u8, cascade_events: bool) {
        self.cascade(|(_, mo)| mo == o, cascade_events);
        if let Some(org) = self.orgs.get_mut(&o) {
            org.deleted = true;
        }
        self.emit(
            "organization.deleted",
            json!({"object": "organization", "id": org_id(o), "slug": slug(o, 0), "deleted": true}),
        );
    }

    fn join(&mut self, u: u8, o: u8) {
        self.generations += 1;
        let m = SimMembership {
            id: format!("orgmem_{u}_{o}_{}", self.generations),
            created_at: self.now,
            updated_at: self.now,
            role: "org:member",
        };
        self.memberships.insert((u, o), m);
        self.emit_membership("organizationMembership.created", (u, o));
    }

    fn change_role(&mut self, u: u8, o: u8) {
        let now = self.now;
        if let Some(m) = self.memberships.get_mut(&(u, o)) {
            m.role = if m.role == "org:admin" {
                "org:member"
            } else {
                "org:admin"
            };
            m.updated_at = now;
        }
        self.emit_membership("organizationMembership.updated", (u, o));
    }

    /// A user's or organization's deletion ends its memberships; Clerk may or may not say so.
    fn cascade(&mut self, matches: impl Fn((u8, u8)) -> bool, send_events: bool) {
        let keys: Vec<_> = self
            .memberships
            .keys()
            .copied()
            .filter(|k| matches(*k))
            .collect();
        for key in keys {
            if send_events {
                self.emit_membership("organizationMembership.deleted", key);
            }
            self.memberships.remove(&key);
        }
    }

    fn emit(&mut self, event_type: &str, data: Value) {
        self.seq += 1;
        let body = json!({
            "type": event_type,
            "object": "event",
            "timestamp": self.now,
            "instance_id": "ins_test",
            "event_attributes": {"http_request": {"client_ip": "203.0.113.1", "user_agent": "test"}},
            "data": data,
        });
        self.out.push(SimEvent {
            svix_id: format!("msg_{:08}", self.seq),
            body: serde_json::to_vec(&body).unwrap_or_default(),
        });
    }

    fn emit_user(&mut self, event_type: &str, u: u8) {
        let Some(user) = self.users.get(&u).cloned() else {
            return;
        };
        let v = user.version;
        // Two addresses, the primary one second on odd versions: the first entry is not the primary.
        let primary = if v % 2 == 1 { "idn_b" } else { "idn_a" };
        let emails = if v % 3 == 2 {
            json!([]) // a phone-only phase: no email at all
        } else {
            json!([
                {"id": "idn_a", "email_address": format!("u{u}.a{v}@example.com")},
                {"id": "idn_b", "email_address": format!("u{u}.b{v}@example.com")}
            ])
        };
        let data = json!({
            "object": "user",
            "id": user_id(u),
            "first_name": format!("First{u}"),
            "last_name": if v % 2 == 0 { Value::Null } else { json!(format!("Last{v}")) },
            "username": format!("user{u}_{v}"),
            "image_url": format!("https://img.example.com/{u}/{v}"),
            "external_id": format!("ext_{u}"),
            "email_addresses": emails,
            "primary_email_address_id": if v % 3 == 2 { Value::Null } else { json!(primary) },
            "public_metadata": {"v": v},
            "private_metadata": {"secret": true},
            "created_at": user.created_at,
            "updated_at": self.now,
        });
        self.emit(event_type, data);
    }

    fn org_json(&self, o: u8) -> Value {
        let org = self.orgs.get(&o).cloned().unwrap_or_default();
        json!({
            "object": "organization",
            "id": org_id(o),
            "name": format!("Org {o} v{}", org.version),
            "slug": slug(o, org.version),
            "image_url": format!("https://img.example.com/org/{o}"),
            "public_metadata": {"plan": org.version},
            "private_metadata": {},
            "max_allowed_memberships": 5,
            "created_at": org.created_at,
            "updated_at": org.updated_at,
        })
    }

    fn emit_membership(&mut self, event_type: &str, (u, o): (u8, u8)) {
        let Some(m) = self.memberships.get(&(u, o)).cloned() else {
            return;
        };
        let data = json!({
            "object": "organization_membership",
            "id": m.id,
            "role": m.role,
            "role_name": m.role,
            "permissions": if m.role == "org:admin" { json!(["org:sys_memberships:manage"]) } else { json!([]) },
            "public_metadata": {},
            "private_metadata": {},
            "organization": self.org_json(o),
            "public_user_data": {
                "user_id": user_id(u),
                "identifier": format!("u{u}@example.com"),
                "first_name": format!("First{u}"),
                "last_name": Value::Null,
                "image_url": format!("https://img.example.com/{u}/stub"),
                "has_image": false,
            },
            "created_at": m.created_at,
            "updated_at": m.updated_at,
        });
        self.emit(event_type, data);
    }
}

fn user_id(u: u8) -> String {
    format!("user_{u}")
}

fn org_id(o: u8) -> String {
    format!("org_{o}")
}

fn slug(o: u8, version: u32) -> String {
    format!("org-{o}-{version}")
}

//! Apply throughput: the worker's batch apply beside the database's ceiling and the naive
//! one-transaction-per-event webhook handler, on the same Postgres, in one run. Prints figures;
//! asserts nothing. `scripts/bench` runs it (DATABASE_URL, or a throwaway cluster).
//!
//! BENCH_EVENTS (default 100000) sets the number of events; BENCH_BATCH (default 500,2000,10000,
//! 100000) the batch sizes compared; BENCH_NAIVE=0 skips the (slow) naive handler.

use std::collections::BTreeMap;
use std::time::Instant;

use clerk_sync_core::mirror::{Mirror, OrgRow, UserRow};
use clerk_sync_core::{ClerkEvent, EventId, EventMeta, Millis};
use clerk_sync_worker::apply::apply_all;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

#[path = "common/process_stats.rs"]
mod process_stats;
#[path = "common/workload.rs"]
mod workload;

struct Decoded {
    events: Vec<(EventMeta, ClerkEvent)>,
    expected: Mirror,
}

/// The workload decoded once up front, and the tables Clerk's order ends in.
fn decoded(w: &workload::Workload) -> Decoded {
    let history: Vec<(EventMeta, ClerkEvent)> = w
        .history
        .iter()
        .map(|e| {
            ClerkEvent::decode(EventId::parse(e.id.clone()).expect("id"), e.body.as_bytes())
                .expect("decodes")
        })
        .collect();
    let mut expected = Mirror::default();
    for (meta, event) in &history {
        expected.apply(meta, event);
    }
    let events = w.delivery.iter().map(|&i| history[i].clone()).collect();
    Decoded { events, expected }
}

async fn fresh_database(admin: &str, name: &str) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .expect("admin");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create");
    pool.close().await;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{base}/{name}"))
        .await
        .expect("connect");
    clerk_sync_worker::migrate(&pool).await.expect("migrate");
    pool
}

/// The worker's path: batches of BENCH_BATCH in one transaction each.
async fn batch_apply(pool: &PgPool, w: &Decoded, batch: usize) -> f64 {
    let started = Instant::now();
    for chunk in w.events.chunks(batch) {
        apply_all(pool, chunk).await.expect("apply");
    }
    started.elapsed().as_secs_f64()
}

/// The database's ceiling: the same final rows, every column, 1000 per multi-row upsert, with no
/// decoding, reduction or version logic (the bookkeeping columns get constants).
async fn ceiling(pool: &PgPool, w: &Decoded) -> f64 {
    let users: Vec<_> = w.expected.users().into_values().collect();
    let orgs: Vec<_> = w.expected.orgs().into_values().collect();
    let members: Vec<_> = w.expected.memberships().into_values().collect();
    let ms = |t: Millis| t.get();
    let started = Instant::now();
    for chunk in users.chunks(1000) {
        let text = |f: fn(&UserRow) -> &Option<String>| -> Vec<Option<&str>> {
            chunk.iter().map(|u| f(u).as_deref()).collect()
        };
        sqlx::query(
            "INSERT INTO users (clerk_id, email, name, first_name, last_name, username, image_url,
                 external_id, public_metadata, created_at, updated_at, deleted_at,
                 sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
             SELECT c, e, n, f, l, un, img, ext, md, to_timestamp(ca / 1000.0),
                 to_timestamp(ua / 1000.0), to_timestamp(da / 1000.0), 2, ua, ua, 'x'
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[]::jsonb[], $10::int8[], $11::int8[], $12::int8[])
                  AS r(c, e, n, f, l, un, img, ext, md, ca, ua, da)
             ON CONFLICT (clerk_id) DO UPDATE SET email = excluded.email, name = excluded.name,
               first_name = excluded.first_name, last_name = excluded.last_name,
               username = excluded.username, image_url = excluded.image_url,
               external_id = excluded.external_id, public_metadata = excluded.public_metadata,
               updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
        )
        .bind(
            chunk
                .iter()
                .map(|u| u.clerk_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(text(|u| &u.email))
        .bind(text(|u| &u.name))
        .bind(text(|u| &u.first_name))
        .bind(text(|u| &u.last_name))
        .bind(text(|u| &u.username))
        .bind(text(|u| &u.image_url))
        .bind(text(|u| &u.external_id))
        .bind(chunk.iter().map(|u| u.public_metadata.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|u| ms(u.created_at)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|u| ms(u.updated_at)).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|u| u.deleted_at.map(ms))
                .collect::<Vec<_>>(),
        )
        .execute(pool)
        .await
        .expect("users");
    }
    for chunk in orgs.chunks(1000) {
        let text = |f: fn(&OrgRow) -> &Option<String>| -> Vec<Option<&str>> {
            chunk.iter().map(|o| f(o).as_deref()).collect()
        };
        sqlx::query(
            "INSERT INTO organizations (clerk_id, name, slug, image_url, public_metadata,
                 created_at, updated_at, deleted_at,
                 sync_rank, sync_version_ms, sync_event_ms, sync_event_id)
             SELECT c, n, s, img, md, to_timestamp(ca / 1000.0), to_timestamp(ua / 1000.0),
                 to_timestamp(da / 1000.0), 2, ua, ua, 'x'
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]::jsonb[], $6::int8[],
                         $7::int8[], $8::int8[]) AS r(c, n, s, img, md, ca, ua, da)
             ON CONFLICT (clerk_id) DO UPDATE SET name = excluded.name, slug = excluded.slug,
               image_url = excluded.image_url, public_metadata = excluded.public_metadata,
               updated_at = excluded.updated_at, deleted_at = excluded.deleted_at",
        )
        .bind(
            chunk
                .iter()
                .map(|o| o.clerk_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(text(|o| &o.name))
        .bind(text(|o| &o.slug))
        .bind(text(|o| &o.image_url))
        .bind(chunk.iter().map(|o| o.public_metadata.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| ms(o.created_at)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| ms(o.updated_at)).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|o| o.deleted_at.map(ms))
                .collect::<Vec<_>>(),
        )
        .execute(pool)
        .await
        .expect("orgs");
    }
    for chunk in members.chunks(1000) {
        sqlx::query(
            "INSERT INTO org_memberships (clerk_id, user_id, org_id, role, permissions,
                 created_at, updated_at, deleted_at,
                 sync_created_ms, sync_version_ms, sync_event_ms, sync_event_id)
             SELECT c, u.id, o, r, p::text[], to_timestamp(ca / 1000.0), to_timestamp(ua / 1000.0),
                 to_timestamp(da / 1000.0), ca, ua, ua, 'x'
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                         $7::int8[], $8::int8[]) AS x(c, uc, o, r, p, ca, ua, da)
             JOIN users u ON u.clerk_id = x.uc
             ON CONFLICT (user_id, org_id) DO UPDATE SET role = excluded.role,
               permissions = excluded.permissions, updated_at = excluded.updated_at,
               deleted_at = excluded.deleted_at",
        )
        .bind(
            chunk
                .iter()
                .map(|m| m.clerk_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.org_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| m.role.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|m| array_literal(&m.permissions))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|m| ms(m.created_at)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|m| ms(m.updated_at)).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|m| m.deleted_at.map(ms))
                .collect::<Vec<_>>(),
        )
        .execute(pool)
        .await
        .expect("memberships");
    }
    started.elapsed().as_secs_f64()
}

/// `{"a","b"}`: unnest cannot take an array of arrays of different lengths.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// How many rows a stream in batches of `batch` events must write at the least: per batch, the
/// rows that batch changes (Clerk's rules applied in delivery order), summed. Exact, untimed.
fn rows_changed_in_batches(w: &Decoded, batch: usize) -> usize {
    let mut mirror = Mirror::default();
    let mut before = (mirror.users(), mirror.orgs(), mirror.memberships());
    let mut total = 0;
    for chunk in w.events.chunks(batch) {
        for (meta, event) in chunk {
            mirror.apply(meta, event);
        }
        let after = (mirror.users(), mirror.orgs(), mirror.memberships());
        total += changed(&before.0, &after.0)
            + changed(&before.1, &after.1)
            + changed(&before.2, &after.2);
        before = after;
    }
    total
}

fn changed<K: Ord, R: PartialEq>(before: &BTreeMap<K, R>, after: &BTreeMap<K, R>) -> usize {
    after
        .iter()
        .filter(|(k, row)| before.get(*k) != Some(*row))
        .count()
}

/// A typical webhook route: one transaction per event, look up, then insert or update.
async fn naive(pool: &PgPool, w: &Decoded) -> f64 {
    let started = Instant::now();
    for (_, event) in &w.events {
        let mut tx = pool.begin().await.expect("begin");
        match event {
            ClerkEvent::UserUpserted(u) => {
                let found = sqlx::query("SELECT id FROM users WHERE clerk_id = $1")
                    .bind(u.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("select");
                if found.is_some() {
                    sqlx::query("UPDATE users SET email = $2, first_name = $3, updated_at = to_timestamp($4 / 1000.0) WHERE clerk_id = $1")
                        .bind(u.id.as_str()).bind(&u.email).bind(&u.first_name).bind(u.updated_at.get())
                        .execute(&mut *tx).await.expect("update");
                } else {
                    sqlx::query("INSERT INTO users (clerk_id, email, first_name, created_at, updated_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id) VALUES ($1, $2, $3, to_timestamp($4 / 1000.0), to_timestamp($4 / 1000.0), 1, $4, $4, 'x') ON CONFLICT DO NOTHING")
                        .bind(u.id.as_str()).bind(&u.email).bind(&u.first_name).bind(u.updated_at.get())
                        .execute(&mut *tx).await.expect("insert");
                }
            }
            ClerkEvent::UserDeleted(d) => {
                sqlx::query("UPDATE users SET deleted_at = now() WHERE clerk_id = $1")
                    .bind(d.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .expect("delete");
            }
            ClerkEvent::OrgUpserted(o) => {
                let found = sqlx::query("SELECT id FROM organizations WHERE clerk_id = $1")
                    .bind(o.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("select");
                if found.is_some() {
                    sqlx::query("UPDATE organizations SET name = $2 WHERE clerk_id = $1")
                        .bind(o.id.as_str())
                        .bind(&o.name)
                        .execute(&mut *tx)
                        .await
                        .expect("update");
                } else {
                    sqlx::query("INSERT INTO organizations (clerk_id, name, created_at, updated_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id) VALUES ($1, $2, now(), now(), 1, 0, 0, 'x') ON CONFLICT DO NOTHING")
                        .bind(o.id.as_str()).bind(&o.name).execute(&mut *tx).await.expect("insert");
                }
            }
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(clerk_sync_core::MembershipDeleted(m)) => {
                let user = sqlx::query("SELECT id FROM users WHERE clerk_id = $1")
                    .bind(m.user.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("user");
                let user_id: String = match user {
                    Some(row) => row.get("id"),
                    None => sqlx::query_scalar("INSERT INTO users (clerk_id, created_at, updated_at, sync_rank, sync_version_ms, sync_event_ms, sync_event_id) VALUES ($1, now(), now(), 0, 0, 0, 'x') RETURNING id")
                        .bind(m.user.id.as_str()).fetch_one(&mut *tx).await.expect("stub"),
                };
                let found = sqlx::query(
                    "SELECT id FROM org_memberships WHERE user_id = $1 AND org_id = $2",
                )
                .bind(&user_id)
                .bind(m.org.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .expect("select");
                if found.is_some() {
                    sqlx::query("UPDATE org_memberships SET role = $3, clerk_id = $4 WHERE user_id = $1 AND org_id = $2")
                        .bind(&user_id).bind(m.org.id.as_str()).bind(&m.role).bind(m.id.as_str()).execute(&mut *tx).await.expect("update");
                } else {
                    sqlx::query("INSERT INTO org_memberships (clerk_id, user_id, org_id, role, created_at, updated_at, sync_created_ms, sync_version_ms, sync_event_ms, sync_event_id) VALUES ($1, $2, $3, $4, now(), now(), 0, 0, 0, 'x')")
                        .bind(m.id.as_str()).bind(&user_id).bind(m.org.id.as_str()).bind(&m.role).execute(&mut *tx).await.expect("insert");
                }
            }
            _ => {}
        }
        tx.commit().await.expect("commit");
    }
    started.elapsed().as_secs_f64()
}

/// One contender's run: wall-clock seconds, and the CPU seconds this process (the client side:
/// decoding, reduction, encoding, the driver) spent meanwhile.
#[derive(Clone, Copy)]
struct Run {
    secs: f64,
    client_cpu: f64,
}

async fn timed(run: impl std::future::Future<Output = f64>) -> Run {
    let cpu = || process_stats::cpu_time(std::process::id()).map_or(0.0, |d| d.as_secs_f64());
    let before = cpu();
    let secs = run.await;
    Run {
        secs,
        client_cpu: cpu() - before,
    }
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    runs[runs.len() / 2]
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn seconds(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| format!("{:.2}", r.secs))
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a contender's tables hold exactly the ceiling's rows (`clerk-sync compare`): the
/// comparison is only fair if they do.
async fn versus_ceiling_rows(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    let differences = clerk_sync_worker::compare::rows_differing(
        &format!("{base}/bench_ceiling"),
        &format!("{base}/{name}"),
    )
    .await
    .expect("compare");
    if differences == 0 {
        "its tables: the ceiling's rows exactly (clerk-sync compare)".to_owned()
    } else {
        format!("its tables: {differences} rows differ from the ceiling's (clerk-sync compare)")
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // Several sizes side by side: the worker's default, and the larger batches a replay fills.
    let batches: Vec<usize> = std::env::var("BENCH_BATCH")
        .unwrap_or_else(|_| "500,2000,10000,100000".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let with_naive = std::env::var("BENCH_NAIVE").map_or(true, |v| v != "0");
    // The machine is shared by the database and the bench: each figure is the median of runs.
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/bench sets it)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut rng = StdRng::seed_from_u64(42);
    let w = decoded(&workload::workload(n, &mut rng));
    println!("apply benchmark ({runs} rounds of the ceiling and every batch size, medians; the naive handler runs once): {} events ({} users, {} organizations, {} memberships in the final tables)",
        w.events.len(), w.expected.users().len(), w.expected.orgs().len(), w.expected.memberships().len());
    rt.block_on(async {
        let rate = |s: f64| w.events.len() as f64 / s;
        // Rounds: the ceiling, then every batch size, again and again. The machine drifts (other
        // tenants, Postgres's own state), so each ratio is taken within a round, and the figures
        // are medians over rounds.
        let final_rows =
            w.expected.users().len() + w.expected.orgs().len() + w.expected.memberships().len();
        let rows_written: Vec<usize> =
            batches.iter().map(|&b| rows_changed_in_batches(&w, b)).collect();
        let mut ceilings = Vec::new();
        let mut batch_runs: Vec<Vec<Run>> = vec![Vec::new(); batches.len()];
        let mut same_rows = vec![String::new(); batches.len()];
        for round in 0..runs {
            let pool = fresh_database(&admin, "bench_ceiling").await;
            ceilings.push(timed(ceiling(&pool, &w)).await);
            pool.close().await;
            for (i, &batch) in batches.iter().enumerate() {
                let pool = fresh_database(&admin, "bench_batch").await;
                batch_runs[i].push(timed(batch_apply(&pool, &w, batch)).await);
                pool.close().await;
                if round + 1 == runs {
                    same_rows[i] = versus_ceiling_rows(&admin, "bench_batch").await;
                }
            }
        }
        let naive_s = if with_naive {
            let pool = fresh_database(&admin, "bench_naive").await;
            let s = naive(&pool, &w).await;
            pool.close().await;
            Some(s)
        } else {
            None
        };
        let ceiling = median(ceilings.clone());
        let ceiling_s = ceiling.secs;
        println!(
            "  database ceiling:              {:>10.0} events/s  ({ceiling_s:.2} s, client CPU {:.2} s; runs {})",
            rate(ceiling_s),
            ceiling.client_cpu,
            seconds(&ceilings),
        );
        if let Some(naive_s) = naive_s {
            println!(
                "  naive handler:                 {:>10.0} events/s  ({naive_s:.2} s)   ceiling / naive: {:.1}x",
                rate(naive_s),
                naive_s / ceiling_s
            );
        }
        for (((&batch, times), &rows), same_rows) in
            batches.iter().zip(batch_runs).zip(&rows_written).zip(&same_rows)
        {
            let ratios: Vec<f64> = ceilings
                .iter()
                .zip(&times)
                .map(|(c, b)| c.secs / b.secs)
                .collect();
            let run = median(times.clone());
            let batch_s = run.secs;
            let versus_naive = naive_s.map_or(String::new(), |n| format!("   batch / naive: {:.1}x", n / batch_s));
            println!(
                "  batch apply, batch {batch:>6}:   {:>10.0} events/s  ({batch_s:.2} s, client CPU {:.2} s; runs {})   batch / ceiling: {:.0}% (per round: {}){versus_naive}",
                rate(batch_s),
                run.client_cpu,
                seconds(&times),
                100.0 * median_of(ratios.clone()),
                ratios.iter().map(|r| format!("{:.0}%", 100.0 * r)).collect::<Vec<_>>().join(" "),
            );
            println!(
                "      rows its batches change: {rows} ({:+.0}% against the {final_rows} the ceiling writes once); {same_rows}",
                100.0 * (rows as f64 / final_rows as f64 - 1.0),
            );
        }
    });
    if let Some(peak) = process_stats::peak_rss_mib(std::process::id()) {
        println!("  peak RSS of this process (the decoded workload included): {peak:.0} MiB");
    }
}

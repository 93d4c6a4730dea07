//! `clerk-sync compare`, through the real binary, on two databases of the test's own.

use clerk_sync_core::{ClerkEvent, EventMeta};
use clerk_sync_worker::apply::apply_all;

use crate::harness::{clerk_sync, TestDb};
use crate::mirror_cases::{membership, org, user, user_deleted, T};

fn history() -> Vec<(EventMeta, ClerkEvent)> {
    vec![
        user("user_1", "created", T, "Alice"),
        user("user_1", "updated", T + 10, "Alicia"),
        user("user_2", "created", T, "Bob"),
        org("org_1", "created", T, "Acme"),
        membership(
            "orgmem_1",
            "created",
            "user_1",
            "org_1",
            "org:admin",
            T,
            T,
            T + 20,
        ),
        membership(
            "orgmem_2",
            "created",
            "user_2",
            "org_1",
            "org:member",
            T,
            T,
            T + 21,
        ),
        user_deleted("user_2", T + 30),
    ]
}

/// `compare` with `extra`: its exit code, stdout and stderr.
fn compare(here: &TestDb, there: &TestDb, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["compare", "--with", &there.url];
    args.extend(extra);
    let out = clerk_sync(&args, &[("DATABASE_URL", &here.url)]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn compare_finds_two_databases_fed_the_same_events_in_different_orders_identical(
) -> anyhow::Result<()> {
    let (a, b) = (TestDb::new().await?, TestDb::new().await?);
    let events = history();
    apply_all(&a.pool, &events).await?;
    // One event at a time, newest first: other internal ids, the same contract rows.
    for event in events.iter().rev() {
        apply_all(&b.pool, std::slice::from_ref(event)).await?;
    }
    let (code, stdout, stderr) = compare(&a, &b, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("users: 2 rows in DATABASE_URL, 2 in --with; identical"),
        "{stdout}"
    );
    assert!(
        stdout.contains("org_memberships: 2 rows in DATABASE_URL, 2 in --with; identical"),
        "{stdout}"
    );
    assert!(stdout.ends_with("the tables match\n"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn compare_lists_missing_and_changed_rows_fails_and_shows_values_only_when_asked(
) -> anyhow::Result<()> {
    let (a, b) = (TestDb::new().await?, TestDb::new().await?);
    apply_all(&a.pool, &history()).await?;
    let mut more = history();
    more.push(user("user_1", "updated", T + 40, "Alix"));
    more.push(user("user_3", "created", T, "Carol"));
    more.push(membership(
        "orgmem_1",
        "deleted",
        "user_1",
        "org_1",
        "org:admin",
        T,
        T,
        T + 50,
    ));
    apply_all(&b.pool, &more).await?;

    let (code, stdout, stderr) = compare(&a, &b, &[]);
    assert_eq!(code, Some(3), "differences are exit code 3: {stdout}");
    assert!(
        stderr.contains("found: the tables differ: 3 rows"),
        "{stderr}"
    );
    assert!(
        stdout.contains("users: 2 rows in DATABASE_URL, 3 in --with; 1 only in --with; 1 differ"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  only in --with        user_3\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  differs               user_1 (first_name, name, updated_at)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  differs               org_1:user_1 (deleted_at)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("organizations: 1 rows in DATABASE_URL, 1 in --with; identical"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Alix"),
        "values stay hidden by default: {stdout}"
    );

    let (code, stdout, _) = compare(&a, &b, &["--json"]);
    assert_eq!(code, Some(3));
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(report["differences"], 3);
    let users = &report["tables"][0];
    assert_eq!(
        (&users["table"], &users["only_there"], &users["differing"]),
        (&"users".into(), &1.into(), &1.into())
    );
    assert_eq!(
        users["examples"][0],
        serde_json::json!({"kind": "differs", "key": "user_1",
            "columns": [{"column": "first_name"}, {"column": "name"}, {"column": "updated_at"}]}),
        "columns only, no values: {stdout}"
    );

    let (_, stdout, _) = compare(&a, &b, &["--show-personal-data", "--show", "1"]);
    assert!(
        stdout.contains(r#"first_name: "Alicia" / "Alix""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("… and 1 more (--show N lists more)"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn compare_names_the_setting_it_cannot_connect_with() {
    let out = clerk_sync(
        &["compare", "--with", "postgres://nobody@127.0.0.1:1/none"],
        &[("DATABASE_URL", "not a url")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: DATABASE_URL: expected a postgres:// URL"),
        "{stderr}"
    );
}

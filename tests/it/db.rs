//! The database layer on real SQLite and real PostgreSQL: every test body runs on both
//! (`support::db::each_backend`), each in a database of its own. Times are passed in
//! explicitly, so lease expiry is tested without sleeping.

use crate::support::db::{TestDb, chain, each_backend, each_empty_backend, fresh};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use storeplane::db::{
    Backend, Db, DbError, MAX_PAGE, NewEvent, NewStore, NewUser, Role, Store, StoreQuery,
    StoreUpdate, StoreUrlRecord, User, UserUpdate,
};
use storeplane::domain::{EventType, StoreStatus};
use tokio::sync::Barrier;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

async fn user(db: &Db, email: &str, limit: u32) -> User {
    db.create_user(NewUser {
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        role: Role::Member,
        store_limit: Some(limit),
    })
    .await
    .unwrap_or_else(|e| panic!("create user {email}: {}", chain(&e)))
}

fn new_store(user: &User, name: &str) -> NewStore {
    NewStore::new(
        user.id,
        name,
        "woocommerce",
        "1.0.0",
        serde_json::json!({"plan": "small", "currency": "EUR"}),
    )
}

async fn store(db: &Db, user: &User, name: &str) -> Store {
    db.create_store(new_store(user, name))
        .await
        .unwrap_or_else(|e| panic!("create store {name}: {}", chain(&e)))
}

fn t0() -> DateTime<Utc> {
    Utc::now()
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_then_do_nothing() {
    each_empty_backend(|t: TestDb| async move {
        let all = vec![
            "m20250601_000001_initial".to_owned(),
            "m20261127_000001_store_host".to_owned(),
        ];
        // A read-only command refuses a database behind this binary's schema, names
        // what is missing, and migrates nothing itself.
        for _ in 0..2 {
            let Some(e) = Db::open_existing(&t.url).await.err() else {
                panic!("an unmigrated database opened for reading");
            };
            let DbError::SchemaBehind { pending, .. } = &e else {
                panic!("expected SchemaBehind, got: {e}");
            };
            assert_eq!(pending, &all);
            let text = e.to_string();
            assert!(
                text.contains("2 migration(s) not applied") && text.contains("storeplane migrate"),
                "{text}"
            );
        }
        let applied = t.migrate().await.unwrap();
        assert_eq!(applied, all, "open_existing applied none of them");
        let again = t.migrate().await.unwrap();
        assert!(again.is_empty(), "second run applied {again:?}");
        Db::open_existing(&t.url)
            .await
            .expect("a migrated database opens for reading");
        // The schema is usable.
        let u = user(&t, "a@example.com", 1).await;
        store(&t, &u, "shop").await;
        t.ping().await.unwrap();
        // A later release migrated the database (a rolling update in progress, or a
        // rollback): this binary still opens it, to read and to serve, and applies
        // nothing.
        t.raw(
            "INSERT INTO seaql_migrations (version, applied_at) \
             VALUES ('m20991231_000001_later', 0)",
        )
        .await;
        Db::open_existing(&t.url)
            .await
            .expect("a database a later release migrated opens for reading");
        let (db, applied) = Db::open(&t.url)
            .await
            .expect("a database a later release migrated opens");
        assert!(applied.is_empty(), "{applied:?}");
        db.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_refused_privilege_on_postgresql_is_an_error_not_an_outage() {
    // SQLSTATE 42501 (insufficient privilege) is all digits, like SQLite's numeric
    // codes; it must not pass for SQLITE_BUSY and be answered "unavailable, retry".
    let t = fresh(Backend::Postgres).await;
    let role = format!("it_{}", Uuid::new_v4().simple());
    t.raw(&format!("CREATE ROLE {role} LOGIN")).await;
    let url = t.url.replacen("storeplane@", &format!("{role}@"), 1);
    assert_ne!(url, t.url, "the test database's URL names its user");
    let outcome = Db::open(&url).await.map(|(db, _)| db);
    // Reading only: the history table is there but not readable — "permission
    // denied", not every migration reported missing.
    let reading = Db::open_existing(&url).await;
    t.raw(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .await;
    t.raw(&format!("DROP ROLE {role}")).await;
    t.finish().await;
    let Err(err) = outcome else {
        panic!("a role without privileges opened the database");
    };
    let text = chain(&err);
    assert!(!err.is_unavailable(), "{text}");
    assert!(text.contains("permission denied"), "{text}");
    let Err(err) = reading else {
        panic!("a role without privileges opened the database for reading");
    };
    let text = chain(&err);
    assert!(
        !err.is_unavailable() && !matches!(err, DbError::SchemaBehind { .. }),
        "{text}"
    );
    assert!(text.contains("permission denied"), "{text}");
}

/// The old primary after a failover, or a standby, refuses writes (SQLSTATE 25006):
/// that is "unavailable, retry" (a 503), not an internal error, and a valid token still
/// signs its request in although the bookkeeping write of its last use is refused.
#[tokio::test]
async fn a_read_only_postgresql_is_unavailable_and_tokens_still_sign_in() {
    let t = fresh(Backend::Postgres).await;
    let u = user(&t, "ro@example.com", 10).await;
    let (_, hash) = storeplane::auth::generate_token();
    let now = t0();
    t.insert_token(u.id, &hash, "cli", None).await.unwrap();
    t.user_for_token(&hash, now)
        .await
        .unwrap()
        .expect("signed in");
    let name = t.url.rsplit('/').next().unwrap().split('?').next().unwrap();
    t.raw(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .await;
    // New sessions get the setting; the test's own pool keeps its old ones.
    let read_only = Db::open_existing(&t.url).await;
    let outcome = match &read_only {
        Ok(db) => Some((
            db.user_for_token(&hash, now + secs(120)).await,
            db.create_store(new_store(&u, "after-failover")).await,
        )),
        Err(_) => None,
    };
    if let Ok(db) = read_only {
        db.close().await.unwrap();
    }
    t.finish().await;
    let (signed_in, created) = outcome.expect("a read-only database opens for reading");
    let (who, token) = signed_in
        .unwrap_or_else(|e| panic!("sign-in on a read-only database: {}", chain(&e)))
        .expect("the token is valid");
    assert_eq!(who.id, u.id);
    assert_eq!(
        token.last_used_at,
        Some(storeplane_time(now)),
        "the refused write is not reported as done"
    );
    let Err(err) = created else {
        panic!("a store was created on a read-only database");
    };
    assert!(err.is_unavailable(), "{}", chain(&err));
    assert!(chain(&err).contains("read-only"), "{}", chain(&err));
}

#[tokio::test]
async fn create_store_writes_the_store_and_its_created_event() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "owner@example.com", 10).await;
        let before = Utc::now() - secs(1);
        let s = store(&t, &u, "shop").await;
        assert_eq!(s.status, StoreStatus::Provisioning);
        assert_eq!((s.generation, s.observed_generation, s.attempts), (1, 0, 0));
        assert_eq!(s.user_id, u.id);
        assert_eq!(s.engine, "woocommerce");
        assert_eq!(s.params["currency"], "EUR");
        assert!(s.urls.is_empty());
        assert!(s.namespace.starts_with("store-shop-"));
        assert!(s.lease_owner.is_none() && s.secrets_sealed.is_none());
        let due = s.next_reconcile_at.expect("due on create");
        assert!(due > before && due <= Utc::now());
        assert_eq!(s.id.get_version_num(), 7);
        assert_eq!(t.get_store(s.id).await.unwrap().as_ref(), Some(&s));

        let events = t.list_events(s.id, None, 100).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::Created);
        assert_eq!(events[0].store_id, s.id);
    })
    .await;
}

#[tokio::test]
async fn a_failing_event_insert_rolls_back_the_whole_transaction() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "owner@example.com", 10).await;
        let kept = store(&t, &u, "kept").await;
        assert!(t.claim(kept.id, "w1", LEASE, t0()).await.unwrap());

        // Break the event log: the store insert (or update) succeeds, the event insert
        // after it fails, and nothing of either may remain.
        t.raw("ALTER TABLE store_events RENAME TO store_events_away")
            .await;
        let err = t.create_store(new_store(&u, "doomed")).await.unwrap_err();
        assert!(matches!(err, DbError::Query(_)), "{}", chain(&err));
        let err = t
            .record(
                kept.id,
                "w1",
                StoreUpdate {
                    status: Some(StoreStatus::Ready),
                    ..Default::default()
                },
                Some(NewEvent::new(EventType::StoreReady, "ready")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Query(_)), "{}", chain(&err));
        let err = t.request_delete(kept.id).await.unwrap_err();
        assert!(matches!(err, DbError::Query(_)), "{}", chain(&err));
        t.raw("ALTER TABLE store_events_away RENAME TO store_events")
            .await;

        let all = t.list_stores(StoreQuery::default()).await.unwrap();
        assert_eq!(all.len(), 1, "the doomed store was not rolled back");
        let kept_now = t.get_store(kept.id).await.unwrap().unwrap();
        assert_eq!(kept_now.status, StoreStatus::Provisioning);
        assert_eq!(kept_now.generation, 1);
        assert_eq!(kept_now.updated_at, kept.updated_at);
        assert_eq!(t.list_events(kept.id, None, 10).await.unwrap().len(), 1);
        // The name is free again: nothing was left behind.
        store(&t, &u, "doomed").await;
    })
    .await;
}

#[tokio::test]
async fn namespaces_are_unique() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let b = user(&t, "b@example.com", 10).await;
        let first = store(&t, &a, "shop").await;
        let mut clash = new_store(&b, "other");
        clash.namespace = first.namespace.clone();
        match t.create_store(clash).await {
            Err(DbError::DuplicateNamespace { namespace }) => {
                assert_eq!(namespace, first.namespace)
            }
            other => panic!("expected DuplicateNamespace, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn store_names_are_unique_per_user() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let b = user(&t, "b@example.com", 10).await;
        store(&t, &a, "shop").await;
        match t.create_store(new_store(&a, "shop")).await {
            Err(e @ DbError::DuplicateName { .. }) => {
                assert!(e.to_string().contains("`shop`"), "{e}")
            }
            other => panic!("expected DuplicateName, got {other:?}"),
        }
        // Another user may use the name.
        store(&t, &b, "shop").await;
        assert_eq!(t.list_stores(StoreQuery::default()).await.unwrap().len(), 2);
        // At the limit, a create sent again (its first answer lost) learns that the
        // store exists, not that there is no room for it.
        let c = user(&t, "c@example.com", 1).await;
        store(&t, &c, "solo").await;
        assert!(matches!(
            t.create_store(new_store(&c, "solo")).await,
            Err(DbError::DuplicateName { .. })
        ));
        assert!(matches!(
            t.create_store(new_store(&c, "other")).await,
            Err(DbError::LimitReached { limit: 1 })
        ));
    })
    .await;
}

#[tokio::test]
async fn hosts_are_unique_across_users_and_old_rows_get_theirs_recorded() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let b = user(&t, "b@example.com", 10).await;
        let host = |name: &str, _: &serde_json::Value| format!("{name}.stores.test");
        t.create_store(new_store(&a, "shop").with_host("shop.stores.test"))
            .await
            .unwrap();
        match t
            .create_store(new_store(&b, "shop").with_host("shop.stores.test"))
            .await
        {
            Err(e @ DbError::DuplicateHost { .. }) => {
                assert!(e.to_string().contains("`shop.stores.test`"), "{e}")
            }
            other => panic!("expected DuplicateHost, got {other:?}"),
        }
        // Rows without a host (created before hosts were recorded): filled in, except
        // where another store already holds the host.
        let old = store(&t, &b, "books").await;
        let clash = store(&t, &b, "shop").await;
        let (filled, clashes) = t.fill_missing_hosts(host).await.unwrap();
        assert_eq!(filled, 1);
        assert_eq!(clashes, vec![(clash.id, "shop.stores.test".to_owned())]);
        match t
            .create_store(new_store(&a, "books").with_host("books.stores.test"))
            .await
        {
            Err(DbError::DuplicateHost { .. }) => {}
            other => panic!("the recorded host of {} holds: {other:?}", old.id),
        }
        assert_eq!(t.fill_missing_hosts(host).await.unwrap().0, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_limit_holds_under_concurrent_creates() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "racer@example.com", 3).await;
        let barrier = Arc::new(Barrier::new(12));
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let db = t.db.clone();
                let u = u.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    db.create_store(new_store(&u, &format!("shop-{i}"))).await
                })
            })
            .collect();
        let (mut created, mut refused) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(DbError::LimitReached { limit: 3 }) => refused += 1,
                Err(e) => panic!("unexpected error: {}", chain(&e)),
            }
        }
        assert_eq!((created, refused), (3, 9));
        let q = StoreQuery {
            user_id: Some(u.id),
            ..Default::default()
        };
        assert_eq!(t.list_stores(q).await.unwrap().len(), 3);

        let none = user(&t, "none@example.com", 0).await;
        let err = t.create_store(new_store(&none, "x")).await.unwrap_err();
        assert!(err.to_string().contains("at most 0 stores"), "{err}");
        let ghost = User {
            id: Uuid::now_v7(),
            ..none
        };
        assert!(matches!(
            t.create_store(new_store(&ghost, "x")).await,
            Err(DbError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn events_come_back_in_the_order_they_were_written() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        let other = store(&t, &u, "other").await;
        for i in 0..40 {
            let kind = EventType::ALL[i % EventType::ALL.len()];
            t.append_event(s.id, kind, &format!("event {i}"))
                .await
                .unwrap();
            if i % 3 == 0 {
                t.append_event(other.id, kind, "noise").await.unwrap();
            }
        }
        let events = t.list_events(s.id, None, 1000).await.unwrap();
        assert_eq!(events.len(), 41);
        assert_eq!(events[0].event_type, EventType::Created);
        for (i, e) in events[1..].iter().enumerate() {
            assert_eq!(e.message, format!("event {i}"));
            assert_eq!(e.event_type, EventType::ALL[i % EventType::ALL.len()]);
            assert_eq!(e.store_id, s.id);
        }
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert!(
            events
                .windows(2)
                .all(|w| w[0].created_at <= w[1].created_at)
        );
        // Paging with after_id picks up exactly where the last page ended.
        let first = t.list_events(s.id, None, 10).await.unwrap();
        let rest = t
            .list_events(s.id, Some(first.last().unwrap().id), 1000)
            .await
            .unwrap();
        assert_eq!(first.len() + rest.len(), events.len());
        assert_eq!(rest[0].message, "event 9");
    })
    .await;
}

/// The API pages events by asking for one more than the page: a full page of the
/// largest size must still tell whether another follows.
#[tokio::test]
async fn a_full_page_of_events_and_one_more_come_back() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        for i in 0..MAX_PAGE {
            t.append_event(s.id, EventType::PhaseCompleted, &format!("event {i}"))
                .await
                .unwrap();
        }
        // `created` and MAX_PAGE more.
        let events = t.list_events(s.id, None, MAX_PAGE + 1).await.unwrap();
        assert_eq!(events.len() as u64, MAX_PAGE + 1);
        let capped = t.list_events(s.id, None, u64::MAX).await.unwrap();
        assert_eq!(
            capped.len() as u64,
            MAX_PAGE + 1,
            "the cap is one past a page"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_racing_claims_wins_each_lease_period() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        let now = t0();

        let winners = race_claim(&t, s.id, "first", now).await;
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let owner = winners[0].clone();
        let held = t.get_store(s.id).await.unwrap().unwrap();
        assert_eq!(held.lease_owner.as_deref(), Some(owner.as_str()));

        // While the lease lives, nobody else (nor the owner again) can claim it.
        let later = now + secs(29);
        assert!(!t.claim(s.id, "intruder", LEASE, later).await.unwrap());
        assert!(!t.claim(s.id, &owner, LEASE, later).await.unwrap());
        assert!(
            t.claim_due("intruder", LEASE, later, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // A non-owner cannot renew, nor record.
        assert!(!t.renew_lease(s.id, "intruder", LEASE, later).await.unwrap());
        assert!(matches!(
            t.record(s.id, "intruder", StoreUpdate::default(), None)
                .await,
            Err(DbError::LeaseLost { .. })
        ));
        assert!(matches!(
            t.release(s.id, "intruder", None).await,
            Err(DbError::LeaseLost { .. })
        ));

        // After expiry, another owner takes over — again exactly one of many.
        let expired = now + secs(31);
        let winners = race_claim(&t, s.id, "second", expired).await;
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let new_owner = winners[0].clone();
        // The old owner has lost it: renew, record and delete all refuse.
        assert!(!t.renew_lease(s.id, &owner, LEASE, expired).await.unwrap());
        assert!(matches!(
            t.record(
                s.id,
                &owner,
                StoreUpdate {
                    status: Some(StoreStatus::Ready),
                    ..Default::default()
                },
                Some(NewEvent::new(EventType::StoreReady, "ready"))
            )
            .await,
            Err(DbError::LeaseLost { .. })
        ));
        assert!(matches!(
            t.delete_store(
                s.id,
                &owner,
                NewEvent::new(EventType::NamespaceDeleted, "gone")
            )
            .await,
            Err(DbError::LeaseLost { .. })
        ));
        assert_eq!(t.list_events(s.id, None, 10).await.unwrap().len(), 1);

        // The new owner renews past the old expiry and keeps it.
        assert!(
            t.renew_lease(s.id, &new_owner, LEASE, expired + secs(20))
                .await
                .unwrap()
        );
        assert!(
            !t.claim(s.id, "third", LEASE, expired + secs(35))
                .await
                .unwrap()
        );
        assert!(
            t.claim(s.id, "third", LEASE, expired + secs(51))
                .await
                .unwrap()
        );
    })
    .await;
}

/// 16 tasks claim the same store at the same instant; returns the winners.
async fn race_claim(t: &TestDb, id: Uuid, prefix: &str, now: DateTime<Utc>) -> Vec<String> {
    const N: usize = 16;
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let db = t.db.clone();
            let barrier = barrier.clone();
            let owner = format!("{prefix}-{i}");
            tokio::spawn(async move {
                barrier.wait().await;
                let won = db.claim(id, &owner, LEASE, now).await.unwrap();
                (owner, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (owner, won) = task.await.unwrap();
        if won {
            winners.push(owner);
        }
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sweeps_split_due_stores_between_replicas() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 100).await;
        let mut due = HashSet::new();
        for i in 0..12 {
            due.insert(store(&t, &u, &format!("due-{i}")).await.id);
        }
        // Not due: scheduled later, and a failed store with nothing to do.
        let later = store(&t, &u, "later").await;
        let failed = store(&t, &u, "failed").await;
        let now = t0();
        for (s, next) in [(&later, Some(now + secs(600))), (&failed, None)] {
            assert!(t.claim(s.id, "setup", LEASE, now).await.unwrap());
            t.release(s.id, "setup", next).await.unwrap();
        }

        let barrier = Arc::new(Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = t.db.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let owner = format!("replica-{i}");
                    let won = db
                        .claim_due(&owner, LEASE, now + secs(1), 100)
                        .await
                        .unwrap();
                    (owner, won)
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for task in tasks {
            let (owner, won) = task.await.unwrap();
            for s in won {
                assert_eq!(s.lease_owner.as_deref(), Some(owner.as_str()));
                claimed.push(s.id);
            }
        }
        let unique: HashSet<_> = claimed.iter().copied().collect();
        assert_eq!(unique.len(), claimed.len(), "a store was claimed twice");
        assert_eq!(unique, due);
        // Nothing left to claim until leases expire or the later store comes due.
        assert!(
            t.claim_due("x", LEASE, now + secs(2), 100)
                .await
                .unwrap()
                .is_empty()
        );
        let after = t.claim_due("x", LEASE, now + secs(601), 100).await.unwrap();
        assert_eq!(after.len(), 13, "expired leases and the later store");
        assert!(after.iter().all(|s| s.id != failed.id));
        assert_eq!(
            t.claim_due("y", LEASE, now + secs(602), 3)
                .await
                .unwrap()
                .len(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn a_claim_skips_the_stores_its_owner_is_already_working_on() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let worked = store(&t, &u, "worked").await;
        let other = store(&t, &u, "other").await;
        let now = t0();
        assert!(t.claim(worked.id, "me", LEASE, now).await.unwrap());
        let held = t.get_store(worked.id).await.unwrap().unwrap();
        // The lease ran out while the owner's worker is still on the store.
        let later = now + secs(31);
        let claimed = t
            .claim_due_except("me", LEASE, later, 10, &[worked.id])
            .await
            .unwrap();
        assert_eq!(claimed.iter().map(|s| s.id).collect::<Vec<_>>(), [other.id]);
        assert_eq!(
            t.get_store(worked.id).await.unwrap().unwrap(),
            held,
            "the excluded store is not touched"
        );
        // Without the exclusion the same owner would claim it again.
        let again = t.claim_due("me", LEASE, later, 10).await.unwrap();
        assert_eq!(again.iter().map(|s| s.id).collect::<Vec<_>>(), [worked.id]);
    })
    .await;
}

/// A backlog of resyncs (ready stores due long ago) does not hold up a request: a new
/// store is claimed before them, then the resyncs oldest first.
#[tokio::test]
async fn requests_are_claimed_before_a_backlog_of_resyncs() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let now = t0();
        let mut resyncs = Vec::new();
        for (name, overdue) in [("older", 200), ("old", 100)] {
            let s = store(&t, &u, name).await;
            assert!(t.claim(s.id, "me", LEASE, now).await.unwrap());
            t.record(
                s.id,
                "me",
                StoreUpdate {
                    status: Some(StoreStatus::Ready),
                    observed_generation: Some(s.generation),
                    next_reconcile_at: Some(Some(now - secs(overdue))),
                    release_lease: true,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
            resyncs.push(s.id);
        }
        let fresh = store(&t, &u, "fresh").await;
        let later = now + secs(1);
        let first = t.claim_due("me", LEASE, later, 1).await.unwrap();
        assert_eq!(
            first.iter().map(|s| s.id).collect::<Vec<_>>(),
            [fresh.id],
            "the new store comes before resyncs due earlier"
        );
        let rest = t.claim_due("me", LEASE, later, 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|s| s.id).collect::<Vec<_>>(),
            resyncs,
            "then the resyncs, oldest due first"
        );
    })
    .await;
}

#[tokio::test]
async fn a_claimed_store_that_cannot_be_read_is_released_and_does_not_block_the_others() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let poisoned = store(&t, &u, "from-the-future").await;
        let a = store(&t, &u, "a").await;
        let b = store(&t, &u, "b").await;
        // URLs in a shape this version cannot read (as a newer version might write),
        // on the store that is due first.
        t.raw(r#"UPDATE stores SET urls = '{"storefront": 1}' WHERE name = 'from-the-future'"#)
            .await;
        assert!(
            t.get_store(poisoned.id).await.is_err(),
            "the row is unreadable"
        );

        let now = t0() + secs(1);
        let won = t.claim_due("me", LEASE, now, 10).await.unwrap();
        let ids: HashSet<Uuid> = won.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            HashSet::from([a.id, b.id]),
            "the readable stores are worked"
        );
        // The unreadable one was given back (not left leased to no worker), due again
        // one lease later: another owner's claim just after sees nothing due ...
        assert_eq!(t.count_due(now + secs(1)).await.unwrap(), 0);
        assert!(
            t.claim_due("other", LEASE, now + secs(1), 10)
                .await
                .unwrap()
                .is_empty()
        );
        // ... and after the lease it is tried again, by anyone, without an error.
        let later = now + secs(31);
        assert_eq!(
            t.count_due(later).await.unwrap(),
            3,
            "two expired leases and it"
        );
        assert!(t.claim(a.id, "other", LEASE, later).await.unwrap());
        let again = t.claim_due("other", LEASE, later, 10).await.unwrap();
        assert_eq!(again.iter().map(|s| s.id).collect::<Vec<_>>(), [b.id]);
    })
    .await;
}

#[tokio::test]
async fn lease_times_compare_in_time_order_to_the_microsecond() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        // Whole second, then fractions of different lengths: SQLite compares these as
        // text, which must still be time order.
        let base = Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap();
        let half = Duration::from_millis(500);
        assert!(t.claim(s.id, "a", half, base).await.unwrap());
        let until = t
            .get_store(s.id)
            .await
            .unwrap()
            .unwrap()
            .lease_until
            .unwrap();
        assert_eq!(until, base + TimeDelta::milliseconds(500));
        for (offset_us, free) in [
            (0, false),
            (499_999, false),
            (500_000, false),
            (500_001, true),
        ] {
            let at = base + TimeDelta::microseconds(offset_us);
            let won = t.claim(s.id, "b", half, at).await.unwrap();
            assert_eq!(won, free, "claim at +{offset_us}µs");
        }
        // Now "b" holds it until base + 1.000001 s.
        let b_until = base + TimeDelta::microseconds(1_000_001);
        assert!(!t.claim(s.id, "c", half, base + secs(1)).await.unwrap());
        assert!(!t.claim(s.id, "c", half, b_until).await.unwrap());
        assert!(
            t.claim(s.id, "c", half, b_until + TimeDelta::microseconds(1))
                .await
                .unwrap()
        );
        // Due times too.
        t.release(s.id, "c", Some(base + secs(10))).await.unwrap();
        let probe = base + TimeDelta::microseconds(9_999_999);
        assert!(t.claim_due("d", half, probe, 10).await.unwrap().is_empty());
        assert_eq!(
            t.claim_due("d", half, base + secs(10), 10)
                .await
                .unwrap()
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn record_events_writes_all_its_events_in_order_or_none() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        assert!(t.claim(s.id, "w", LEASE, t0()).await.unwrap());
        let events = [
            NewEvent::new(EventType::ResourcesApplied, "9 objects applied"),
            NewEvent::new(EventType::StoreReady, "store is ready"),
        ];
        t.record_events(
            s.id,
            "w",
            StoreUpdate {
                status: Some(StoreStatus::Ready),
                expected_generation: Some(1),
                ..Default::default()
            },
            &events,
        )
        .await
        .unwrap();
        let log = t.list_events(s.id, None, 10).await.unwrap();
        let told: Vec<_> = log.iter().map(|e| e.event_type).collect();
        assert_eq!(
            told,
            [
                EventType::Created,
                EventType::ResourcesApplied,
                EventType::StoreReady
            ]
        );
        // A moved generation refuses the update and every event.
        t.request_delete(s.id).await.unwrap();
        let refused = t
            .record_events(
                s.id,
                "w",
                StoreUpdate {
                    expected_generation: Some(1),
                    ..Default::default()
                },
                &events,
            )
            .await;
        assert!(
            matches!(refused, Err(DbError::GenerationChanged { .. })),
            "{refused:?}"
        );
        assert_eq!(t.list_events(s.id, None, 10).await.unwrap().len(), 4);
    })
    .await;
}

#[tokio::test]
async fn record_writes_under_the_lease_and_refuses_a_moved_generation() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        let now = t0();
        assert!(t.claim(s.id, "w", LEASE, now).await.unwrap());
        let urls = vec![StoreUrlRecord {
            name: "storefront".into(),
            url: "http://shop.stores.localtest.me".into(),
        }];
        let deadline = now + secs(900);
        let ready = t
            .record(
                s.id,
                "w",
                StoreUpdate {
                    status: Some(StoreStatus::Ready),
                    urls: Some(urls.clone()),
                    observed_generation: Some(1),
                    attempts: Some(2),
                    secrets_sealed: Some(Some("v1:sealed".into())),
                    provision_deadline_at: Some(Some(deadline)),
                    next_reconcile_at: Some(Some(now + secs(300))),
                    expected_generation: Some(1),
                    ..Default::default()
                },
                Some(NewEvent::new(EventType::StoreReady, "serving")),
            )
            .await
            .unwrap();
        assert_eq!(ready.status, StoreStatus::Ready);
        assert_eq!(ready.urls, urls);
        assert_eq!((ready.observed_generation, ready.attempts), (1, 2));
        assert_eq!(ready.secrets_sealed.as_deref(), Some("v1:sealed"));
        assert_eq!(ready.provision_deadline_at, Some(storeplane_time(deadline)));
        assert!(ready.updated_at >= s.updated_at);
        assert_eq!(
            ready.lease_owner.as_deref(),
            Some("w"),
            "record keeps the lease"
        );
        let events = t.list_events(s.id, None, 10).await.unwrap();
        assert_eq!(events.last().unwrap().event_type, EventType::StoreReady);

        // Clearing a nullable field.
        let cleared = t
            .record(
                s.id,
                "w",
                StoreUpdate {
                    secrets_sealed: Some(None),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(cleared.secrets_sealed, None);
        assert_eq!(cleared.urls, urls, "fields not set are kept");

        // A delete request arrives while "w" works: generation 2, due now.
        let deleting = t.request_delete(s.id).await.unwrap();
        assert_eq!(
            (deleting.status, deleting.generation),
            (StoreStatus::Deleting, 2)
        );
        let before = t.list_events(s.id, None, 100).await.unwrap().len();
        let err = t
            .record(
                s.id,
                "w",
                StoreUpdate {
                    status: Some(StoreStatus::Ready),
                    next_reconcile_at: Some(Some(now + secs(300))),
                    expected_generation: Some(1),
                    release_lease: true,
                    ..Default::default()
                },
                Some(NewEvent::new(EventType::StoreReady, "stale")),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DbError::GenerationChanged {
                    expected: 1,
                    actual: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        let now_row = t.get_store(s.id).await.unwrap().unwrap();
        assert_eq!(
            now_row.status,
            StoreStatus::Deleting,
            "request not overwritten"
        );
        assert_eq!(now_row.lease_owner.as_deref(), Some("w"), "lease kept");
        assert_eq!(t.list_events(s.id, None, 100).await.unwrap().len(), before);

        // Recording the new generation and releasing in one step.
        let released = t
            .record(
                s.id,
                "w",
                StoreUpdate {
                    observed_generation: Some(2),
                    next_reconcile_at: Some(None),
                    expected_generation: Some(2),
                    release_lease: true,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(released.lease_owner, None);
        assert_eq!(released.lease_until, None);
        assert_eq!(released.next_reconcile_at, None);
    })
    .await;
}

fn storeplane_time(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    t.trunc_subsecs(6)
}

#[tokio::test]
async fn release_gives_the_lease_up_and_schedules_the_next_look() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        let now = t0();
        assert!(t.claim(s.id, "w", LEASE, now).await.unwrap());
        let next = now + secs(60);
        t.release(s.id, "w", Some(next)).await.unwrap();
        let row = t.get_store(s.id).await.unwrap().unwrap();
        assert_eq!(row.lease_owner, None);
        assert_eq!(row.next_reconcile_at, Some(storeplane_time(next)));
        // Released: claimable at once by anyone, but not due before `next`.
        assert!(
            t.claim_due("x", LEASE, now + secs(1), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(t.claim(s.id, "x", LEASE, now + secs(1)).await.unwrap());
        // Releasing twice is refused: the lease is not "w"'s any more.
        assert!(matches!(
            t.release(s.id, "w", None).await,
            Err(DbError::LeaseLost { .. })
        ));
    })
    .await;
}

/// The orchestrator writes each claim's lease as `<instance>#<token>`: a release of an
/// earlier lease of the same replica that reaches the database late — after that lease
/// ran out and the store was claimed again — must leave the newer lease alone.
#[tokio::test]
async fn a_late_release_of_an_earlier_claim_leaves_the_newer_lease_alone() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;
        let now = t0();
        assert!(t.claim(s.id, "replica-1#0001", LEASE, now).await.unwrap());
        // The first lease ran out; the same replica claims the store again.
        let later = now + secs(LEASE.as_secs() as i64 + 1);
        assert!(t.claim(s.id, "replica-1#0002", LEASE, later).await.unwrap());
        assert!(matches!(
            t.release(s.id, "replica-1#0001", Some(later)).await,
            Err(DbError::LeaseLost { .. })
        ));
        let row = t.get_store(s.id).await.unwrap().unwrap();
        assert_eq!(row.lease_owner.as_deref(), Some("replica-1#0002"));
    })
    .await;
}

#[tokio::test]
async fn deleting_a_store_keeps_its_event_log() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 1).await;
        let s = store(&t, &u, "shop").await;
        t.request_delete(s.id).await.unwrap();
        let now = t0();
        let claimed = t.claim_due("w", LEASE, now + secs(1), 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].status, StoreStatus::Deleting);
        t.delete_store(
            s.id,
            "w",
            NewEvent::new(EventType::NamespaceDeleted, "namespace store-shop gone"),
        )
        .await
        .unwrap();
        assert_eq!(t.get_store(s.id).await.unwrap(), None);
        let types: Vec<_> = t
            .list_events(s.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                EventType::Created,
                EventType::Deleting,
                EventType::NamespaceDeleted
            ]
        );
        // The slot is free again (limit 1), and so is the name.
        store(&t, &u, "shop").await;
        // Deleting what is gone is a lost lease, not a success.
        assert!(matches!(
            t.delete_store(
                s.id,
                "w",
                NewEvent::new(EventType::NamespaceDeleted, "again")
            )
            .await,
            Err(DbError::LeaseLost { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn delete_and_retry_requests() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let s = store(&t, &u, "shop").await;

        // Retry is only for failed stores.
        match t.request_retry(s.id).await {
            Err(e @ DbError::StatusConflict { .. }) => {
                assert!(e.to_string().contains("is provisioning"), "{e}")
            }
            other => panic!("expected StatusConflict, got {other:?}"),
        }
        // Fail it the way the orchestrator would.
        assert!(t.claim(s.id, "w", LEASE, t0()).await.unwrap());
        t.record(
            s.id,
            "w",
            StoreUpdate {
                status: Some(StoreStatus::Failed),
                error_message: Some(Some("Deployment/web: image pull failed".into())),
                attempts: Some(5),
                observed_generation: Some(1),
                next_reconcile_at: Some(None),
                release_lease: true,
                ..Default::default()
            },
            Some(NewEvent::new(EventType::ProvisioningFailed, "gave up")),
        )
        .await
        .unwrap();
        let retried = t.request_retry(s.id).await.unwrap();
        assert_eq!(retried.status, StoreStatus::Provisioning);
        assert_eq!((retried.generation, retried.attempts), (2, 0));
        assert_eq!(retried.error_message, None);
        assert!(retried.next_reconcile_at.is_some());

        // Delete is idempotent: one generation bump, one event.
        let d1 = t.request_delete(s.id).await.unwrap();
        let d2 = t.request_delete(s.id).await.unwrap();
        assert_eq!(d1.status, StoreStatus::Deleting);
        assert_eq!((d1.generation, d2.generation), (3, 3));
        assert_eq!(d1.updated_at, d2.updated_at);
        let types: Vec<_> = t
            .list_events(s.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert_eq!(
            types,
            [
                EventType::Created,
                EventType::ProvisioningFailed,
                EventType::RetryRequested,
                EventType::Deleting
            ]
        );
        let ghost = Uuid::now_v7();
        assert!(matches!(
            t.request_delete(ghost).await,
            Err(DbError::NotFound)
        ));
        assert!(matches!(
            t.request_retry(ghost).await,
            Err(DbError::NotFound)
        ));
    })
    .await;
}

#[tokio::test]
async fn stores_list_newest_first_with_a_keyset_cursor() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let b = user(&t, "b@example.com", 10).await;
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(store(&t, &a, &format!("shop-{i}")).await.id);
        }
        let theirs = store(&t, &b, "theirs").await;
        ids.reverse(); // newest first

        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = t
                .list_stores(StoreQuery {
                    user_id: Some(a.id),
                    after,
                    limit: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|s| s.id);
            pages.push(page.into_iter().map(|s| s.id).collect::<Vec<_>>());
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(pages.concat(), ids);

        // Admin view: everyone's stores.
        let all = t.list_stores(StoreQuery::default()).await.unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(all[0].id, theirs.id);
        // Status filter.
        t.request_delete(ids[0]).await.unwrap();
        let deleting = t
            .list_stores(StoreQuery {
                status: Some(StoreStatus::Deleting),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(deleting.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[0]]);
        // Ownership.
        assert!(t.get_user_store(a.id, ids[1]).await.unwrap().is_some());
        assert!(t.get_user_store(b.id, ids[1]).await.unwrap().is_none());
        // Metrics.
        let counts = t.count_stores_by_status().await.unwrap();
        assert_eq!(
            counts,
            [
                (StoreStatus::Provisioning, 7),
                (StoreStatus::Ready, 0),
                (StoreStatus::Failed, 0),
                (StoreStatus::Deleting, 1)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn accounts_have_unique_lowercased_emails() {
    each_backend(|t: TestDb| async move {
        let created = t
            .create_user(NewUser {
                email: "  Alice@Example.COM ".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                role: Role::Admin,
                store_limit: None,
            })
            .await
            .unwrap();
        assert_eq!(created.email, "alice@example.com");
        assert_eq!(created.role, Role::Admin);
        assert_eq!(created.store_limit, storeplane::db::DEFAULT_STORE_LIMIT);
        assert!(
            !format!("{created:?}").contains("argon2"),
            "Debug hides the hash"
        );
        let found = t.user_by_email("ALICE@example.com").await.unwrap().unwrap();
        assert_eq!(found, created);
        assert_eq!(t.user_by_id(created.id).await.unwrap(), Some(created));
        assert_eq!(t.user_by_email("bob@example.com").await.unwrap(), None);
        let dup = t
            .create_user(NewUser {
                email: "alice@EXAMPLE.com".into(),
                password_hash: "x".into(),
                role: Role::Member,
                store_limit: None,
            })
            .await;
        assert!(matches!(dup, Err(DbError::EmailTaken)), "{dup:?}");
    })
    .await;
}

#[tokio::test]
async fn tokens_authenticate_until_they_expire() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 10).await;
        let (token, hash) = storeplane::auth::generate_token();
        let now = t0();
        let expires = now + secs(3600);
        let stored = t
            .insert_token(u.id, &hash, "cli", Some(expires))
            .await
            .unwrap();
        assert_eq!(stored.token_hash, hash);
        assert_ne!(stored.token_hash, token);

        let (who, tok) = t.user_for_token(&hash, now).await.unwrap().unwrap();
        assert_eq!(who.id, u.id);
        assert_eq!(tok.last_used_at, Some(storeplane_time(now)));
        // Within a minute the use is not written again; after it, it is.
        let (_, tok) = t
            .user_for_token(&hash, now + secs(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tok.last_used_at, Some(storeplane_time(now)));
        let (_, tok) = t
            .user_for_token(&hash, now + secs(61))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tok.last_used_at, Some(storeplane_time(now + secs(61))));
        // Expired, unknown.
        assert!(t.user_for_token(&hash, expires).await.unwrap().is_none());
        assert!(
            t.user_for_token(&hash, expires + secs(1))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            t.user_for_token(&storeplane::auth::hash_token("sp_nope"), now)
                .await
                .unwrap()
                .is_none()
        );
        // Without expiry, until revoked.
        let (_, forever) = storeplane::auth::generate_token();
        t.insert_token(u.id, &forever, "ci", None).await.unwrap();
        assert!(
            t.user_for_token(&forever, now + secs(10 * 365 * 86400))
                .await
                .unwrap()
                .is_some()
        );
        assert!(t.delete_token(&forever).await.unwrap());
        assert!(!t.delete_token(&forever).await.unwrap());
        assert!(t.user_for_token(&forever, now).await.unwrap().is_none());
    })
    .await;
}

/// A sign-in whose password check began before a reset gets no token after it: the
/// token is issued only while the hash it checked is still the account's.
#[tokio::test]
async fn a_token_is_issued_only_for_the_password_that_was_checked() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let now = t0();
        let (_, before) = storeplane::auth::generate_token();
        let issued = t
            .insert_token_for_password(a.id, &a.password_hash, &before, "login", None)
            .await
            .unwrap();
        assert!(issued.is_some());
        assert!(t.user_for_token(&before, now).await.unwrap().is_some());

        let reset = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".to_owned();
        let up = t
            .update_user(
                a.id,
                UserUpdate {
                    password_hash: Some(reset.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(up.tokens_revoked, 1);
        // The check that read the old hash finishes now.
        let (_, late) = storeplane::auth::generate_token();
        let refused = t
            .insert_token_for_password(a.id, &a.password_hash, &late, "login", None)
            .await
            .unwrap();
        assert!(refused.is_none(), "a token minted for the old password");
        assert!(t.user_for_token(&late, now).await.unwrap().is_none());
        // The new password's sign-in gets one; a deleted-or-unknown account none.
        let (_, fresh) = storeplane::auth::generate_token();
        assert!(
            t.insert_token_for_password(a.id, &reset, &fresh, "login", None)
                .await
                .unwrap()
                .is_some()
        );
        let (_, nobody) = storeplane::auth::generate_token();
        assert!(
            t.insert_token_for_password(Uuid::now_v7(), &reset, &nobody, "login", None)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn accounts_change_role_limit_and_password_and_a_new_password_signs_them_out() {
    each_backend(|t: TestDb| async move {
        let a = user(&t, "a@example.com", 10).await;
        let b = user(&t, "b@example.com", 10).await;
        store(&t, &a, "one").await;
        store(&t, &a, "two").await;
        let now = t0();
        let (_, a1) = storeplane::auth::generate_token();
        let (_, a2) = storeplane::auth::generate_token();
        let (_, b1) = storeplane::auth::generate_token();
        for (u, h) in [(&a, &a1), (&a, &a2), (&b, &b1)] {
            t.insert_token(u.id, h, "cli", None).await.unwrap();
        }

        // Role and limit: tokens stay; the limit may go below the stores it has.
        let up = t
            .update_user(
                a.id,
                UserUpdate {
                    role: Some(Role::Admin),
                    store_limit: Some(1),
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(up.user.role, Role::Admin);
        assert_eq!(up.user.store_limit, 1);
        assert_eq!(up.user.password_hash, a.password_hash);
        assert_eq!(up.tokens_revoked, 0);
        let (who, _) = t.user_for_token(&a1, now).await.unwrap().unwrap();
        assert_eq!(who.role, Role::Admin);
        assert!(matches!(
            t.create_store(new_store(&a, "three")).await,
            Err(DbError::LimitReached { limit: 1 })
        ));

        // A new password: every token of the account goes, nobody else's.
        let up = t
            .update_user(
                a.id,
                UserUpdate {
                    password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3".into()),
                    ..UserUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(up.tokens_revoked, 2);
        assert_eq!(up.user.role, Role::Admin, "unchanged");
        assert_ne!(up.user.password_hash, a.password_hash);
        assert!(t.user_for_token(&a1, now).await.unwrap().is_none());
        assert!(t.user_for_token(&a2, now).await.unwrap().is_none());
        assert!(t.user_for_token(&b1, now).await.unwrap().is_some());

        assert!(matches!(
            t.update_user(Uuid::now_v7(), UserUpdate::default()).await,
            Err(DbError::NotFound)
        ));

        // Listed oldest first, with their store counts.
        let listed: Vec<(String, Role, u32, u64)> = t
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|(u, n)| (u.email, u.role, u.store_limit, n))
            .collect();
        assert_eq!(
            listed,
            [
                ("a@example.com".to_owned(), Role::Admin, 1, 2),
                ("b@example.com".to_owned(), Role::Member, 10, 0),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn wake_ups_reach_listeners_on_postgres() {
    each_backend(|t: TestDb| async move {
        let id = Uuid::now_v7();
        match t.backend {
            Backend::Sqlite => {
                assert!(t.listen_work().await.unwrap().is_none());
                t.notify_work(id).await.unwrap();
            }
            Backend::Postgres => {
                let mut listener = t.listen_work().await.unwrap().expect("a listener");
                // A second replica's listener gets it too.
                let mut other = t.listen_work().await.unwrap().expect("a listener");
                t.notify_work(id).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(10), listener.recv())
                    .await
                    .expect("wake-up within 10 s")
                    .unwrap();
                assert_eq!(got, id);
                let got = tokio::time::timeout(Duration::from_secs(10), other.recv())
                    .await
                    .expect("wake-up within 10 s")
                    .unwrap();
                assert_eq!(got, id);
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let err = Db::connect("postgres://storeplane@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{}", chain(&err));
    let text = chain(&err);
    assert!(
        text.contains("127.0.0.1:1") && text.contains("refused"),
        "{text}"
    );

    let err = Db::connect("mysql://root@localhost/x").await.unwrap_err();
    assert!(matches!(err, DbError::UnsupportedUrl { ref scheme, .. } if scheme == "mysql"));
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn the_default_sqlite_database_is_created_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let settings = storeplane::config::DatabaseSettings {
        database_url: None,
        data_dir: dir.path().join("nested/data"),
    };
    let db = Db::connect(&settings.url()).await.unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    assert_eq!(db.migrate().await.unwrap().len(), 2);
    assert!(dir.path().join("nested/data/storeplane.db").exists());
    db.close().await.unwrap();
    // Reopened: the schema is there.
    let db = Db::connect(&settings.url()).await.unwrap();
    assert!(db.migrate().await.unwrap().is_empty());
}

#[tokio::test]
async fn store_namespaces_answer_for_the_stores_that_exist_in_any_number() {
    each_backend(|t: TestDb| async move {
        let owner = user(&t.db, "ns@example.test", 10).await;
        let a = store(&t.db, &owner, "alpha").await;
        let b = store(&t.db, &owner, "bravo").await;
        // 1,203 ids, ours among them, so the query runs in three chunks.
        let mut ids: Vec<Uuid> = (0..1201).map(|_| Uuid::new_v4()).collect();
        ids.insert(3, a.id);
        ids.push(b.id);
        let found = t.db.store_namespaces(&ids).await.expect("store namespaces");
        let want: std::collections::HashMap<Uuid, String> =
            [(a.id, a.namespace.clone()), (b.id, b.namespace.clone())].into();
        assert_eq!(found, want);
        assert!(t.db.store_namespaces(&[]).await.unwrap().is_empty());
    })
    .await;
}

mod cli {
    use std::io::Write as _;
    use std::process::{Command, Output, Stdio};

    /// `program` with the caller's database settings left out and `env` set, its
    /// standard streams piped.
    fn isolated(program: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_remove("STOREPLANE_DATABASE_URL")
            .env_remove("STOREPLANE_DATA_DIR")
            .env("STOREPLANE_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn storeplane(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut cmd = isolated(env!("CARGO_BIN_EXE_storeplane"), env);
        cmd.args(args);
        let mut child = cmd.spawn().expect("run storeplane");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// `storeplane orphans` only reads: pointed at a database that is not there, it says
    /// so and creates nothing (an empty database would make every store an orphan).
    #[test]
    fn the_orphans_command_refuses_a_database_that_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing-here.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let out = storeplane(&["orphans"], &[("STOREPLANE_DATABASE_URL", &url)], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "there is no SQLite database at {}",
                path.display()
            )) && stderr.contains("STOREPLANE_DATABASE_URL"),
            "{stderr}"
        );
        assert!(!path.exists(), "the command created {}", path.display());
        // The default data directory too: never created by this command.
        let out = storeplane(
            &[
                "orphans",
                "--data-dir",
                dir.path().join("data").to_str().unwrap(),
            ],
            &[],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(!dir.path().join("data").exists());
    }

    /// A credential key file that is missing while stores' credentials are sealed (a
    /// mistyped path, a volume not mounted) stops the orchestrator with what to do,
    /// rather than a new key that opens none of them.
    #[tokio::test]
    async fn a_missing_key_file_with_sealed_stores_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("sp.db").display());
        {
            let (db, _) = super::Db::open(&url).await.unwrap();
            let u = super::user(&db, "a@example.com", 10).await;
            let s = super::store(&db, &u, "shop").await;
            assert!(
                db.claim(s.id, "test", super::LEASE, super::t0())
                    .await
                    .unwrap()
            );
            db.record(
                s.id,
                "test",
                super::StoreUpdate {
                    secrets_sealed: Some(Some("sealed-with-the-lost-key".into())),
                    release_lease: true,
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap();
            db.close().await.unwrap();
        }
        let key = dir.path().join("mistyped").join("secret.key");
        let out = tokio::task::spawn_blocking(move || {
            storeplane(
                &["orchestrate", "--listen", "127.0.0.1:0"],
                &[
                    ("STOREPLANE_DATABASE_URL", &url),
                    ("STOREPLANE_SECRET_KEY_FILE", key.to_str().unwrap()),
                ],
                None,
            )
        })
        .await
        .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("does not exist, but 1 stores' credentials are sealed with a key")
                && stderr.contains("STOREPLANE_SECRET_KEY_FILE"),
            "{stderr}"
        );
        assert!(!dir.path().join("mistyped").exists(), "a new key was made");
    }

    #[test]
    fn a_bad_database_url_is_a_clear_error_and_a_failed_exit() {
        let out = storeplane(
            &["migrate"],
            &[("STOREPLANE_DATABASE_URL", "mysql://root@localhost/shop")],
            None,
        );
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "exit status {}", out.status);
        assert!(
            stderr.contains("unsupported database URL scheme \"mysql\"")
                && stderr.contains("STOREPLANE_DATABASE_URL")
                && stderr.contains("supported: sqlite, postgres"),
            "{stderr}"
        );
        // The same through the flag, for `user create` too.
        let out = storeplane(
            &[
                "user",
                "create",
                "--email",
                "a@example.com",
                "--database-url",
                "redis://x",
            ],
            &[],
            None,
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("\"redis\""),
            "{}",
            text(&out.stderr)
        );
    }

    #[tokio::test]
    async fn user_create_prints_a_generated_password_once() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let data_dir = data_dir.to_str().unwrap();
        let env = [("STOREPLANE_DATA_DIR", data_dir)];

        let out = storeplane(&["migrate"], &env, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("applied m20250601_000001_initial"));
        let out = storeplane(&["migrate"], &env, None);
        assert_eq!(text(&out.stdout).trim(), "database is up to date");

        let out = storeplane(
            &["user", "create", "--email", "Admin@Example.com", "--admin"],
            &env,
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("admin account admin@example.com"),
            "{stdout}"
        );
        let passwords: Vec<_> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("password: "))
            .collect();
        assert_eq!(passwords.len(), 1, "{stdout}");
        assert!(passwords[0].len() >= 20);
        assert!(stdout.contains("will not be shown again"), "{stdout}");
        assert!(
            !text(&out.stderr).contains(passwords[0]),
            "password on stderr"
        );

        // Duplicate email: a clear error, non-zero exit.
        let out = storeplane(
            &["user", "create", "--email", "admin@example.com"],
            &env,
            None,
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("already exists"),
            "{}",
            text(&out.stderr)
        );

        // A password from stdin is not echoed; a short one is refused with the rule.
        let out = storeplane(
            &[
                "user",
                "create",
                "--email",
                "m@example.com",
                "--password-stdin",
            ],
            &env,
            Some("a long enough secret\n"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("a long enough secret"));
        let out = storeplane(
            &[
                "user",
                "create",
                "--email",
                "n@example.com",
                "--password-stdin",
            ],
            &env,
            Some("short\n"),
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("at least 12"),
            "{}",
            text(&out.stderr)
        );

        // A bad email.
        let out = storeplane(&["user", "create", "--email", "not-an-email"], &env, None);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("not a usable email address"));

        // What was stored verifies with the passwords, and only with them.
        let url = format!("sqlite://{data_dir}/storeplane.db");
        let db = storeplane::db::Db::connect(&url).await.unwrap();
        let admin = db
            .user_by_email("admin@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.role, storeplane::db::Role::Admin);
        assert!(
            admin
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        let verify = storeplane::auth::verify_password;
        assert!(verify(Some(&admin.password_hash), passwords[0]).await);
        assert!(!verify(Some(&admin.password_hash), "a long enough secret").await);
        let member = db.user_by_email("m@example.com").await.unwrap().unwrap();
        assert_eq!(member.role, storeplane::db::Role::Member);
        assert!(verify(Some(&member.password_hash), "a long enough secret").await);
        assert!(db.user_by_email("n@example.com").await.unwrap().is_none());

        // `user update`: a password reset prints the new one once and signs out; a
        // role and limit change says what the account is now.
        let (_, token) = storeplane::auth::generate_token();
        db.insert_token(member.id, &token, "cli", None)
            .await
            .unwrap();
        let out = storeplane(
            &[
                "user",
                "update",
                "--email",
                "M@example.com",
                "--reset-password",
            ],
            &env,
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("1 session(s) signed out"), "{stdout}");
        let new_passwords: Vec<_> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("password: "))
            .collect();
        assert_eq!(new_passwords.len(), 1, "{stdout}");
        let member = db.user_by_email("m@example.com").await.unwrap().unwrap();
        assert!(verify(Some(&member.password_hash), new_passwords[0]).await);
        assert!(!verify(Some(&member.password_hash), "a long enough secret").await);
        assert!(
            db.user_for_token(&token, chrono::Utc::now())
                .await
                .unwrap()
                .is_none()
        );
        let out = storeplane(
            &[
                "user",
                "update",
                "--email",
                "m@example.com",
                "--admin",
                "--store-limit",
                "3",
            ],
            &env,
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("updated admin account m@example.com")
                && text(&out.stdout).contains("store limit 3")
                && !text(&out.stdout).contains("password"),
            "{}",
            text(&out.stdout)
        );
        // Nothing to change, an unknown account, both roles: clear errors.
        for (args, says) in [
            (
                &["user", "update", "--email", "m@example.com"][..],
                "nothing to change",
            ),
            (
                &["user", "update", "--email", "x@example.com", "--admin"][..],
                "there is no account x@example.com",
            ),
            (
                &[
                    "user",
                    "update",
                    "--email",
                    "m@example.com",
                    "--admin",
                    "--member",
                ][..],
                "cannot be used with",
            ),
        ] {
            let out = storeplane(args, &env, None);
            assert!(!out.status.success(), "{args:?}");
            assert!(
                text(&out.stderr).contains(says),
                "{args:?}: {}",
                text(&out.stderr)
            );
        }
        // `user list`: every account with its role and stores / limit, no hashes.
        let out = storeplane(&["user", "list"], &env, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 2, "{stdout}");
        assert_eq!(
            rows[0][..3],
            ["admin@example.com", "admin", "0/10"],
            "{stdout}"
        );
        assert_eq!(rows[1][..3], ["m@example.com", "admin", "0/3"], "{stdout}");
        assert!(!stdout.contains("argon2"), "{stdout}");
    }

    /// `--password-stdin` at a terminal prompts and reads with echo off: run under a
    /// pseudo-terminal (util-linux `script`), what is typed never comes back on the
    /// screen, and it is the password stored.
    #[tokio::test]
    async fn a_password_typed_at_a_terminal_is_not_shown() {
        use std::io::Read as _;
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let data_dir = data_dir.to_str().unwrap();
        let env = [("STOREPLANE_DATA_DIR", data_dir)];
        let out = storeplane(&["migrate"], &env, None);
        assert!(out.status.success(), "{}", text(&out.stderr));

        let command = format!(
            "'{}' user create --email tty@example.com --password-stdin",
            env!("CARGO_BIN_EXE_storeplane")
        );
        let mut child = isolated("script", &env)
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .spawn()
            .expect("util-linux `script` runs (Debian's bsdutils package)");
        let mut screen_out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = screen_out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut screen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !text(&screen).contains("password (not shown") {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => screen.extend(chunk),
                Err(_) => panic!("no password prompt within 60 s; screen: {}", text(&screen)),
            }
        }
        // Echo is turned off right after the prompt is written; give it that moment.
        std::thread::sleep(Duration::from_millis(500));
        let mut keyboard = child.stdin.take().unwrap();
        keyboard.write_all(b"typed at a terminal 42\r").unwrap();
        keyboard.flush().unwrap();
        let status = child.wait().expect("script exits");
        drop(keyboard);
        reader.join().unwrap();
        screen.extend(rx.try_iter().flatten());
        let screen = text(&screen);
        assert!(status.success(), "{screen}");
        assert!(screen.contains("tty@example.com"), "{screen}");
        assert!(
            !screen.contains("typed at a terminal"),
            "the password was echoed: {screen}"
        );

        let url = format!("sqlite://{data_dir}/storeplane.db");
        let db = storeplane::db::Db::connect(&url).await.unwrap();
        let user = db.user_by_email("tty@example.com").await.unwrap().unwrap();
        assert!(
            storeplane::auth::verify_password(Some(&user.password_hash), "typed at a terminal 42")
                .await
        );
    }
}

/// Replicas woken together all read the same oldest due stores; one that loses them to
/// another must go on to the next ones while it has free workers, not idle until its
/// next sweep with stores waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_that_lose_a_claim_race_claim_the_next_due_stores() {
    each_backend(|t: TestDb| async move {
        let u = user(&t, "a@example.com", 100).await;
        let mut due = HashSet::new();
        for i in 0..12 {
            due.insert(store(&t, &u, &format!("due-{i}")).await.id);
        }
        let now = t0() + secs(1);
        let barrier = Arc::new(Barrier::new(4));
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let db = t.db.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let owner = format!("replica-{i}");
                    // Three free workers each.
                    let won = db.claim_due(&owner, LEASE, now, 3).await.unwrap();
                    (owner, won)
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for task in tasks {
            let (owner, won) = task.await.unwrap();
            assert_eq!(
                won.len(),
                3,
                "{owner} has free workers and due stores are waiting, yet it claimed {}",
                won.len()
            );
            for s in won {
                assert_eq!(s.lease_owner.as_deref(), Some(owner.as_str()));
                claimed.push(s.id);
            }
        }
        let unique: HashSet<_> = claimed.iter().copied().collect();
        assert_eq!(unique.len(), claimed.len(), "a store was claimed twice");
        assert_eq!(unique, due, "every due store is claimed");
    })
    .await;
}

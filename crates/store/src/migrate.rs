//! The schema: one migration per version and backend (`../migrations/`), each applied once
//! in a transaction of its own, with its version recorded in `schema_migrations`.

use sqlx::{AssertSqlSafe, Executor};

use crate::{Backend, Result, Store};

const MIGRATIONS_SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_challenges_and_calls.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_api_keys.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_users_trust_webhooks.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_call_steps.sql")),
    (6, include_str!("../migrations/sqlite/0006_claims.sql")),
    (7, include_str!("../migrations/sqlite/0007_call_srtp.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_limits_blocks_scopes.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_retention.sql")),
    (
        10,
        include_str!("../migrations/sqlite/0010_keys_as_steps.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_eam.sql")),
    (
        12,
        include_str!("../migrations/sqlite/0012_confirmation.sql"),
    ),
    (13, include_str!("../migrations/sqlite/0013_refusals.sql")),
];

const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_challenges_and_calls.sql"),
    ),
    (2, include_str!("../migrations/postgres/0002_api_keys.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_users_trust_webhooks.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_change_notifications.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_call_steps.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_claims.sql")),
    (7, include_str!("../migrations/postgres/0007_call_srtp.sql")),
    (
        8,
        include_str!("../migrations/postgres/0008_limits_blocks_scopes.sql"),
    ),
    (9, include_str!("../migrations/postgres/0009_retention.sql")),
    (
        10,
        include_str!("../migrations/postgres/0010_keys_as_steps.sql"),
    ),
    (11, include_str!("../migrations/postgres/0011_eam.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_confirmation.sql"),
    ),
    (13, include_str!("../migrations/postgres/0013_refusals.sql")),
];

impl Store {
    pub(crate) async fn migrate(&self) -> Result<()> {
        self.migrate_to(i64::MAX).await
    }

    /// Applies the migrations up to version `last`.
    async fn migrate_to(&self, last: i64) -> Result<()> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        let migrations = match self.backend {
            Backend::Sqlite => MIGRATIONS_SQLITE,
            Backend::Postgres => MIGRATIONS_POSTGRES,
        };
        // A store migrated by a newer build (a rollback, or an old node restarted in a
        // rolling upgrade) is not written by this one: it does not know what the new
        // columns mean.
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await?;
        let known = migrations.last().map_or(0, |m| m.0);
        if let Some(found) = found.filter(|&f| f > known) {
            return Err(crate::StoreError::NewerSchema { found, known });
        }
        for &(version, sql) in migrations.iter().filter(|m| m.0 <= last) {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                // Two nodes starting together: one migrates, the other waits here.
                tx.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .await?;
            }
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            for stmt in statements(sql)
                .iter()
                .map(|s| s.trim())
                .filter(|s| !strip_comments(s).is_empty())
            {
                tx.execute(AssertSqlSafe(stmt.to_string())).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// A migration's statements: split at `;`, except inside a `$$ … $$` body.
fn statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"$$") {
            quoted = !quoted;
            i += 2;
            continue;
        }
        if b[i] == b';' && !quoted {
            out.push(&sql[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// A SQLite store at version 10 with an enrolled phone, then brought up to date: the
    /// phone and its challenge are kept, the challenge is of origin `api`, and a phone
    /// without a challenge (an imported one) may be stored now.
    #[tokio::test]
    async fn migration_11_keeps_sqlite_phones_and_lets_imported_ones_in() {
        sqlx::any::install_default_drivers();
        let dir = std::env::temp_dir().join(crate::new_id("callverify-store-0011"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("cv.db").display());
        // One connection: the foreign keys' pragma holds for it.
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("PRAGMA foreign_keys = ON").await.unwrap();
        let store = Store {
            pool,
            backend: Backend::Sqlite,
            url: url.clone().into(),
            changes: tokio::sync::broadcast::channel(1).0,
            cache: None,
            node: crate::new_id("node").into(),
        };
        store.migrate_to(10).await.unwrap();
        store
            .pool
            .execute(
                "INSERT INTO challenges (id, api_key_id, phone, language, purpose, state, \
                 created_at, updated_at, expires_at) VALUES ('ch_1', 'key_1', '+819012345678', \
                 'ja', 'enroll', 'approved', 1, 1, 2); \
                 INSERT INTO phones (id, user_id, phone, role, language, challenge_id, \
                 created_at, verified_at) VALUES ('ph_1', 'u-1', '+819012345678', 'primary', 'ja', \
                 'ch_1', 1, 2)",
            )
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let phones = store.phones("u-1").await.unwrap();
        assert_eq!(phones.len(), 1);
        assert_eq!(phones[0].challenge_id.as_deref(), Some("ch_1"));
        let c = store
            .challenge(&crate::ChallengeId::from_stored("ch_1".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.origin, c.origin_ref), (crate::Origin::Api, None));
        let phone = crate::PhoneNumber::parse("+819012345679").unwrap();
        let done = store
            .import_phone("u-1", &phone, crate::PhoneRole::Primary, "ja", 3)
            .await
            .unwrap();
        assert_eq!(done, crate::Imported::Replaced);
        let indexes: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'phones' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("name").unwrap())
        .collect();
        assert_eq!(
            indexes,
            [
                "phones_challenge",
                "phones_removed",
                "phones_unverified",
                "phones_user"
            ]
        );
        // The foreign key holds still.
        let orphan = store
            .pool
            .execute(
                "INSERT INTO phones (id, user_id, phone, role, language, challenge_id, \
                 created_at) VALUES ('ph_2', 'u-2', '+819012345678', 'primary', 'ja', 'ch_none', 1)",
            )
            .await;
        assert!(orphan.is_err());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store a newer build migrated (here: a version past the last one known) is refused
    /// at open, and left as it was.
    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = std::env::temp_dir().join(crate::new_id("callverify-store-newer"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("cv.db").display());
        let store = Store::open(&url).await.unwrap();
        let known = MIGRATIONS_SQLITE.last().unwrap().0;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
            .bind(known + 1)
            .execute(&store.pool)
            .await
            .unwrap();
        store.pool.close().await;
        let e = Store::open(&url).await.expect_err("a newer schema");
        assert!(
            matches!(e, crate::StoreError::NewerSchema { found, known: k } if found == known + 1 && k == known),
            "{e}"
        );
        assert!(e.to_string().contains("run the newer callverify"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

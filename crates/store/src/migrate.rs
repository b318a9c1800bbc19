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
];

impl Store {
    pub(crate) async fn migrate(&self) -> Result<()> {
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
        for &(version, sql) in migrations {
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

//! A copy of a SQLite store taken while it serves: `VACUUM INTO` reads the database in one
//! read transaction (WAL mode lets the writer go on meanwhile) and writes a compact,
//! consistent file. PostgreSQL stores are copied with `pg_dump` instead.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use crate::{Result, StoreError};

/// The file of a `sqlite:` URL (`None`: not a SQLite URL, or an in-memory database).
pub fn sqlite_path(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then_some(path)
}

/// Copies the SQLite database at `url` into the new file `to` with `VACUUM INTO`, without
/// migrating it (the serving process may be another version). Refuses a `to` that exists,
/// a database file that does not, and a PostgreSQL URL.
pub async fn backup_sqlite(url: &str, to: &Path) -> Result<()> {
    let fail = |why: String| Err(StoreError::Backup(why));
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return fail(
            "the store is PostgreSQL: back it up with pg_dump (e.g. pg_dump --format=custom \
             --file=callverify.dump \"$DATABASE_URL\"), restore with pg_restore"
                .into(),
        );
    }
    let Some(db) = sqlite_path(url) else {
        return fail(format!(
            "{url:?} is not the URL of a SQLite file (sqlite://PATH)"
        ));
    };
    if !Path::new(db).is_file() {
        return fail(format!("{db}: no such database file"));
    }
    // Checked here for a clear message; SQLite refuses a non-empty file itself too.
    if to.exists() {
        return fail(format!(
            "{}: the file exists (a backup is written to a new file only)",
            to.display()
        ));
    }
    let Some(target) = to.to_str() else {
        return fail(format!("{}: the path is not UTF-8", to.display()));
    };
    sqlx::any::install_default_drivers();
    // `mode=rw`: a database file that vanished is an error, not a new empty database.
    let pool: AnyPool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                Ok(())
            })
        })
        .connect(&format!("sqlite://{db}?mode=rw"))
        .await?;
    let done = sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&pool)
        .await;
    pool.close().await;
    done?;
    Ok(())
}

//! A PostgreSQL schema of its own per test, on the test server
//! (`postgres://postgres@127.0.0.1:5432/test` unless `CORDON_TEST_POSTGRES_URL`
//! says otherwise), dropped with everything in it afterwards. When the server
//! is unreachable, [`PgSchema::create`] prints why and returns `None` — except
//! under `CI=true`, where that is a failure.

#![allow(
    clippy::print_stderr,
    reason = "a skipped test says why on stderr, as cargo test shows it"
)]

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct PgSchema {
    admin_url: String,
    name: String,
}

fn base_url() -> String {
    std::env::var_os("CORDON_TEST_POSTGRES_URL")
        .and_then(|v| v.into_string().ok())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true")
}

impl PgSchema {
    /// A fresh schema `cordon_test_<random>`, or `None` when the server is
    /// unreachable outside CI.
    pub async fn create() -> Option<PgSchema> {
        let admin_url = base_url();
        let admin = match PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&admin_url)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let why = format!("PostgreSQL at {admin_url} is unreachable ({e})");
                assert!(!in_ci(), "{why}; CI=true, so this is a failure");
                eprintln!("skipping this test: {why}");
                return None;
            }
        };
        let name = format!("cordon_test_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(PgSchema { admin_url, name })
    }

    /// The server's URL with `search_path` set to this schema.
    pub fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot be blocked on: clean up
        // from a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&pool)
                .await?;
                pool.close().await;
                Ok::<(), sqlx::Error>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

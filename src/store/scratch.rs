//! Throwaway PostgreSQL databases for the test suite and benchmarks. Each
//! [`ScratchDb`] is a database of its own on the server named by
//! `AUTHGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`), dropped
//! when the handle is dropped (also when a test panics); databases left behind by
//! killed test processes are dropped by the next run.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection, Row};

/// The server tests use, as an admin URL.
pub fn admin_url() -> String {
    std::env::var("AUTHGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

const PREFIX: &str = "authgate_t_";

/// A database that exists while this value does.
pub struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    /// Creates an empty database. When no server answers: under `CI=true` this panics
    /// (the PostgreSQL tests must run there); elsewhere it says so loudly on stderr and
    /// returns `None`, and the caller skips.
    pub async fn create() -> Option<ScratchDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                let what = format!(
                    "PostgreSQL is not reachable at {} ({e})",
                    super::redact_url(&admin)
                );
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{what}: the PostgreSQL tests must run under CI");
                }
                eprintln!("\n!!! SKIPPED: {what}; set AUTHGATE_TEST_POSTGRES or start it\n");
                return None;
            }
        };
        drop_abandoned(&mut conn).await;
        let name = format!(
            "{PREFIX}{}_{}_{}",
            host_tag(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap_or(&admin);
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        Some(ScratchDb {
            url: format!("{server}/{name}"),
            admin,
            name,
        })
    }

    /// `postgres://…/authgate_t_…`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(_))) {
            eprintln!("note: could not drop the test database {}", self.name);
        }
    }
}

/// Eight hex digits naming this machine (its hostname), so runs on other machines
/// sharing the server are left alone.
fn host_tag() -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let digest = sha2::Sha256::digest(host.trim().as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops scratch databases whose test process is gone (killed before its drops ran).
async fn drop_abandoned(conn: &mut PgConnection) {
    let Ok(rows) = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{PREFIX}%"))
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String, _>("datname") else {
            continue;
        };
        // Only this machine's: another host's processes are not in our /proc.
        let mut parts = name[PREFIX.len()..].split('_');
        if parts.next() != Some(host_tag().as_str()) {
            continue;
        }
        let pid = parts.next().unwrap_or("");
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

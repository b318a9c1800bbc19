//! The store on both backends: each behaviour is a test on SQLite (a file in WAL mode) and
//! one on PostgreSQL (a server of its own, started on loopback by the test), one module for
//! each concern: challenges and their states, API keys, users' phones and trusted devices,
//! webhooks, the limits' counts and fraud blocks, the call log, and several nodes (claims,
//! their copies of the challenges).

/// For each `async fn NAME(db: Db)` named, the tests `NAME::sqlite` and `NAME::postgresql`:
/// the function run on a store of its own on each backend (see [`common::Db`]).
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let name = module_path!().replace("::", "-");
                super::$name(crate::common::Db::sqlite(&name).await).await;
            }

            #[tokio::test]
            async fn postgresql() {
                let name = crate::common::short_name(module_path!());
                super::$name(crate::common::Db::postgresql(&name).await).await;
            }
        }
    )+};
}

mod call_log;
mod challenges;
mod codes;
mod common;
mod eam;
mod keys;
mod limits;
mod log;
mod nodes;
mod users;
mod webhooks;

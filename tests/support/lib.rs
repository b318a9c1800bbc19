//! Helpers for the end-to-end tests: real peers (sipp, baresip, Kamailio, FreeRADIUS and
//! radclient, PostgreSQL) started on loopback with free ports (or in network namespaces
//! behind a NAT), bounded in time, stopped when the test ends; and callverify's SIP
//! endpoint configured for them. Each module holds one kind of helper, and this root
//! re-exports them all.

mod audio;
mod baresip;
mod browser;
mod calls;
mod endpoint;
mod entra;
mod gateway;
mod kamailio;
mod net;
mod netns;
pub mod pcap;
mod postgres;
mod radius_peers;
mod sipp;
mod tls;

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use audio::{
    code_readings, keys_wav, pcm_wav, pound_ulaw, pound_wav, prompts_heard, spoken_code_heard,
};
pub use baresip::{Baresip, BaresipRegistrar, BaresipSecurity};
pub use browser::{Browser, Driver, Killed, WAIT, accessible, open_browser};
pub use calls::{
    CODE, SHOWN, media_at, prompts, runner_through, script, sign_in, sqlite_store, times_played,
    verify_call, verify_call_confirming, verify_call_within,
};
pub use endpoint::{
    ended, endpoint, endpoint_with, next_ua_event, offer, run_call, tls_endpoint, trunk,
};
pub use entra::{Answer, EntraStandIn, validate_id_token};
pub use gateway::{
    Served, call_log, create_api_key, create_api_key_with_env, decided, http, metrics_holding,
    run_cli, sigterm, sqlite_config, stop_group, wait_exit,
};
pub use kamailio::{KAMAILIO_REALM, Kamailio, User};
pub use net::{LossyLink, Relay, free_media_ports, free_port, free_rtp_pair};
pub use netns::{NAT_PUBLIC, NatCounts, NatNet, PHONE};
pub use postgres::Postgres;
pub use radius_peers::{FreeRadius, RadReply, radclient};
pub use sipp::{
    SIPP_POUND, Sipp, SippExit, callee_scenario, callee_scenario_after, callee_scenario_playing,
};
pub use tls::{Issued, TestCa};

/// Makes ring the process's TLS crypto provider (once), as the gateway does: the HTTP
/// clients of the tests are built with rustls and no provider of their own.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every wait in these tests ends by this bound.
pub const BOUND: Duration = Duration::from_secs(30);

/// When the test phones press their key, in milliseconds after the answer: while the
/// instructions play. Keys during the greeting (3.84 s in English, 3.9 s in Japanese) are
/// dropped, as a recorded greeting's would be.
pub const KEY_AT_MS: f64 = 4500.0;

/// IPv4 loopback.
pub const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// IPv6 loopback.
pub const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

/// A scratch directory for one test's logs, under the system's temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("callverify-e2e")
        .join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

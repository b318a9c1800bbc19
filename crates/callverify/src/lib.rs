//! The gateway's wiring, shared by the `callverify` binary and the end-to-end tests:
//! the configuration file and how it becomes the settings of the other crates.

pub mod config;
pub mod demo;
pub mod eam;
pub mod gateway;
pub mod import;
pub mod keys;
pub mod systemd;

//! The `palisade` binary's library: configuration, the embedded PostgreSQL, database bootstrap,
//! control checks and the serve loop. `main.rs` is only the command line.

pub mod audit_cli;
pub mod config;
pub mod controls;
pub mod controls_auth;
pub mod controls_data;
pub mod controls_edge;
pub mod controls_keys;
pub mod database;
pub mod embedded;
pub mod import;
pub mod key_provider;
pub mod keys_cli;
pub mod listener;
pub mod logging;
pub mod serve;
pub mod tls;

//! Integration tests: the real server over real PostgreSQL, spoken to over HTTP (and the real
//! `palisade` binary where the process itself is under test).

mod accounts;
mod api_keys;
mod attacks;
mod audit;
mod binary;
mod boundaries;
mod collections;
mod config;
mod controls;
mod controls_edge;
mod cors;
mod email;
mod errors;
mod isolation;
mod keys;
mod limits;
mod lockout;
mod members;
mod mfa;
mod orgs;
mod rate_limits;
mod records;
mod roles;
mod secrets;
mod sensitive;
mod sessions;
mod shared_limits;
mod step_up;
mod support;
mod tokens;
mod transport;
mod webauthn;

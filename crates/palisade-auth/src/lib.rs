//! Passwords (argon2id on a bounded blocking pool, strength estimation) and session tokens.

pub mod password;
pub mod token;

pub use password::{HashError, PasswordHasher, check_strength};
pub use token::{RESET_TOKEN_PREFIX, SessionToken, VERIFY_TOKEN_PREFIX, hash_token};

//! Passwords (argon2id on a bounded blocking pool, strength estimation), opaque session and
//! refresh tokens, and signed access tokens (JWT).

pub mod api_key;
pub mod hash_pool;
pub mod jwt;
pub mod password;
pub mod token;

pub use password::{HashError, PasswordHasher, Verification, check_strength, is_importable_bcrypt};
pub use token::{
    CHANGE_EMAIL_TOKEN_PREFIX, INVITATION_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, RESET_TOKEN_PREFIX, SessionToken,
    VERIFY_TOKEN_PREFIX, hash_token, invitation_org, mint_invitation,
};

//! What the fuzz targets share: fixed keys (so committed seeds can hold valid cursors and
//! tokens, and a mutated one exercises the tamper path), the collection schema list parameters
//! are checked against, and deterministic randomness for minting.

use std::path::PathBuf;
use std::sync::OnceLock;

use palisade_app::fuzzing::{CompiledSchema, compile_schema};
use palisade_auth::jwt::{AccessTokenSigner, AccessTokenVerifier};
use palisade_core::Randomness;
use palisade_crypto::InstanceKey;
use serde_json::json;

/// The instance key of the fuzz runs: 32 fixed bytes. `InstanceKey` is only made from a file,
/// so it is written once per process into the temporary directory (mode 0600).
pub fn instance_key() -> &'static InstanceKey {
    static KEY: OnceLock<InstanceKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir().join(format!("palisade-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let path: PathBuf = dir.join("instance.key");
        if !path.exists() {
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).expect("key file");
            file.write_all(&[0x5a; 32]).expect("key file");
        }
        let key = InstanceKey::load_or_create(&path).expect("fixed instance key");
        let _ = std::fs::remove_dir_all(&dir);
        key
    })
}

pub const ISSUER: &str = "https://palisade.fuzz";
pub const AUDIENCE: &str = "palisade";
pub const KID: &str = "fuzz-key-1";
/// "Now" for token checks (Unix seconds): tokens in the seed corpus expire after it.
pub const NOW: i64 = 1_800_000_000;
const SIGNING_SEED: [u8; 32] = [7; 32];

pub fn signer() -> &'static AccessTokenSigner {
    static SIGNER: OnceLock<AccessTokenSigner> = OnceLock::new();
    SIGNER.get_or_init(|| AccessTokenSigner::new(KID.to_owned(), zeroize::Zeroizing::new(SIGNING_SEED)))
}

pub fn verifier() -> &'static AccessTokenVerifier {
    static VERIFIER: OnceLock<AccessTokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let public = ed25519_public(&SIGNING_SEED);
        AccessTokenVerifier::new([(KID.to_owned(), public)], ISSUER, AUDIENCE)
    })
}

fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    // The verifier needs the public half; palisade-crypto's signing keys derive it.
    palisade_crypto::signing::KeyPair::from_seed(seed).public_key()
}

/// The schema of the collection whose list parameters are fuzzed: one field of each JSON type,
/// an untyped one, and a sensitive one (never filterable or sortable).
pub fn list_schema() -> &'static CompiledSchema {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        compile_schema(&json!({"type": "object", "properties": {
            "title": {"type": "string"},
            "amount": {"type": "number"},
            "count": {"type": "integer"},
            "open": {"type": "boolean"},
            "meta": {},
            "tags": {"type": "array", "items": {"type": "string"}},
            "salary": {"type": "number", "x-palisade-sensitive": true}
        }}))
        .expect("the fuzz schema compiles")
    })
}

/// "Random" bytes taken from the fuzz input, repeated as needed (zeros if there are none).
pub struct FixedRandomness(pub Vec<u8>);

impl Randomness for FixedRandomness {
    fn fill(&self, dest: &mut [u8]) {
        for (i, b) in dest.iter_mut().enumerate() {
            *b = if self.0.is_empty() { 0 } else { self.0[i % self.0.len()] };
        }
    }
}

//! Builds the configured key provider (`local` or `pkcs11`) and the keyring over it. A provider
//! that cannot be opened stops the server with what to fix; nothing is rewritten.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use palisade_crypto::provider::KeyProvider;
use palisade_crypto::provider_local::{LocalProvider, LocalProviderFiles};
use palisade_crypto::provider_pkcs11::{Pkcs11Config, Pkcs11Provider};

use crate::config::{Config, KeyProviderKind};

/// The most unwrapped data keys one node holds (one per organization active within the TTL).
const KEY_CACHE_CAPACITY: usize = 10_000;

impl Config {
    pub fn kek_file(&self) -> PathBuf {
        self.kek_file.clone().unwrap_or_else(|| self.data_dir.join("kek.key"))
    }

    pub fn key_store_file(&self) -> PathBuf {
        self.key_store_file.clone().unwrap_or_else(|| self.data_dir.join("keystore.json"))
    }

    /// Opens the configured provider.
    pub fn key_provider(&self) -> Result<Arc<dyn KeyProvider>> {
        match self.key_provider {
            KeyProviderKind::Local => {
                let files = LocalProviderFiles { kek: self.kek_file(), store: self.key_store_file() };
                for path in [&files.kek, &files.store] {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                    }
                }
                let provider = LocalProvider::open(files).context("opening the local key provider")?;
                Ok(Arc::new(provider))
            }
            KeyProviderKind::Pkcs11 => {
                let Some(module) = self.pkcs11_module.clone() else {
                    bail!("key_provider = \"pkcs11\" needs pkcs11_module (the HSM's PKCS#11 library)");
                };
                let Some(pin) = self.pkcs11_pin.clone() else {
                    bail!("key_provider = \"pkcs11\" needs the token's user PIN in PALISADE_PKCS11_PIN");
                };
                let config = Pkcs11Config { module, token_label: self.pkcs11_token_label.clone(), pin };
                let provider = Pkcs11Provider::open(config).context("opening the PKCS#11 key provider")?;
                Ok(Arc::new(provider))
            }
        }
    }

    /// The keyring over the configured provider.
    pub fn keyring(&self) -> Result<palisade_app::keyring::Keyring> {
        let ttl = time::Duration::seconds(self.data_key_cache_seconds.clamp(1, 86_400));
        Ok(palisade_app::keyring::Keyring::new(self.key_provider()?, ttl, KEY_CACHE_CAPACITY))
    }
}

//! A SoftHSM2 token of a test's own (a real PKCS#11 HSM in software, from Debian's softhsm2), for
//! running the server with the `pkcs11` key provider. The token's files live in a temporary
//! directory; `take_offline` / `bring_online` move them away and back to simulate an HSM outage.

use std::path::PathBuf;
use std::process::Command;

/// The Debian package's module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
}

impl SoftHsm {
    /// A fresh token labelled `palisade` with user PIN 1234.
    pub fn new() -> Self {
        let available = Command::new("softhsm2-util").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(available && std::path::Path::new(MODULE).exists(), "SoftHSM2 is missing: apt-get install softhsm2");
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )
        .expect("conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "palisade", "--pin", "1234", "--so-pin", "5678"])
            .output()
            .expect("softhsm2-util");
        assert!(out.status.success(), "softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
        Self { dir, conf, label: "palisade".into(), pin: "1234".into() }
    }

    /// What a `palisade` process needs to use this token as its key provider.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOFTHSM2_CONF", self.conf.display().to_string()),
            ("PALISADE_KEY_PROVIDER", "pkcs11".into()),
            ("PALISADE_PKCS11_MODULE", MODULE.into()),
            ("PALISADE_PKCS11_TOKEN_LABEL", self.label.clone()),
            ("PALISADE_PKCS11_PIN", self.pin.clone()),
        ]
    }

    /// The HSM goes away (its token files vanish).
    pub fn take_offline(&self) {
        std::fs::rename(self.dir.path().join("tokens"), self.dir.path().join("tokens.away")).expect("take offline");
    }

    pub fn bring_online(&self) {
        std::fs::rename(self.dir.path().join("tokens.away"), self.dir.path().join("tokens")).expect("bring online");
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

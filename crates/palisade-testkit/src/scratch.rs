//! Removing what test processes leave on disk: their data directories and the embedded clusters
//! `palisade serve` relocated out of them.
//!
//! Run as root, a server whose data directory is private puts its cluster under
//! `/var/lib/palisade/clusters/<hash>` and names it in `<data-dir>/embedded-pg/cluster-location`
//! (about 50 MiB each). Deleting only the data directory would leave that cluster behind for good.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where `palisade serve` relocates clusters; nothing outside it is ever removed by a location.
const RELOCATED_ROOT: &str = "/var/lib/palisade/clusters/";

/// The relocated cluster a data directory names, if any.
fn relocated_cluster(data_dir: &Path) -> Option<PathBuf> {
    let location = std::fs::read_to_string(data_dir.join("embedded-pg").join("cluster-location")).ok()?;
    let location = location.trim();
    let name = location.strip_prefix(RELOCATED_ROOT)?;
    // One path component: never the root itself, never a path that climbs out of it.
    (!name.is_empty() && !name.contains('/') && name != "." && name != "..").then(|| PathBuf::from(location))
}

/// Removes a data directory and the relocated cluster it names. The cluster's postmaster stops
/// by itself once its server is gone (parent-death signal): this waits up to 10 s for its pid
/// file to go, so the removal does not race its shutdown.
pub fn remove_data_dir(data_dir: &Path) {
    if let Some(cluster) = relocated_cluster(data_dir) {
        let pid_file = cluster.join("pgdata").join("postmaster.pid");
        let started = Instant::now();
        while pid_file.exists() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&cluster);
    }
    let _ = std::fs::remove_dir_all(data_dir);
}

/// Removes `<temp>/<prefix><pid>…` directories of test processes that are gone, with the
/// relocated clusters of the data directories in them (the directory itself or one level down).
pub fn remove_stale(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        if let Ok(children) = std::fs::read_dir(&path) {
            for child in children.flatten() {
                remove_data_dir(&child.path());
            }
        }
        remove_data_dir(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_directory_under_the_relocation_root_is_named() {
        let dir = std::env::temp_dir().join(format!("palisade-scratch-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("embedded-pg")).unwrap();
        let named = |location: &str| {
            std::fs::write(dir.join("embedded-pg").join("cluster-location"), location).unwrap();
            relocated_cluster(&dir)
        };
        assert_eq!(
            named("/var/lib/palisade/clusters/0123abcd\n"),
            Some(PathBuf::from("/var/lib/palisade/clusters/0123abcd"))
        );
        assert_eq!(named("/var/lib/palisade/clusters/"), None);
        assert_eq!(named("/var/lib/palisade/clusters/../../etc"), None);
        assert_eq!(named("/var/lib/palisade/clusters/.."), None);
        assert_eq!(named("/tmp/somewhere/pg"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Files that must be written whole or not at all: state snapshots a restart continues from.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`, so
/// a crash leaves either the old file or the new one, never a torn one.
pub fn save_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // `<name>.tmp`, not a replaced extension: `state.snap` and `state.alerts` must not share
    // one temporary file.
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        super::save_atomically(&p, b"first, longer").unwrap();
        super::save_atomically(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn files_that_differ_only_in_extension_use_their_own_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (snap, alerts) = (
            dir.path().join("state.snap"),
            dir.path().join("state.alerts"),
        );
        // Another file's temporary file in the way must not be touched.
        std::fs::write(dir.path().join("state.tmp"), b"other writer").unwrap();
        super::save_atomically(&snap, b"snap").unwrap();
        super::save_atomically(&alerts, b"alerts").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("state.tmp")).unwrap(),
            b"other writer"
        );
        assert_eq!(std::fs::read(&snap).unwrap(), b"snap");
        assert_eq!(std::fs::read(&alerts).unwrap(), b"alerts");
    }
}

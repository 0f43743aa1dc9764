//! The CloudTrail files under a folder, found by several threads and put in reading order.
//!
//! A trail's archive holds a folder per account, region and day, and CloudTrail writes a file
//! per account and region every few minutes: tens of thousands of small files in thousands of
//! folders. Listing them is system calls, which overlap, and a replay cannot start before the
//! list is sorted, so the folders are listed by a few threads at once.

use super::file::{cloudtrail_file_time, is_event_file};
use super::select::Selection;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Threads listing folders at most (more gain nothing: the kernel's directory locks and the
/// sort that follows bound it).
const MAX_THREADS: usize = 4;

/// The CloudTrail event files under `root` that `selection` may need, in reading order.
///
/// Folders are walked recursively, skipping hidden entries and `CloudTrail-Digest` folders
/// (digests are not events); symbolic links below `root` are not followed, and folders that
/// cannot be listed are passed over, as before. The order is that of the time in each file's
/// name (CloudTrail's `YYYYMMDDTHHMMZ`; files without one first), then of the paths: reading
/// the files of every account and region by time, not account by account, keeps event time
/// moving forward, as correlations need.
pub fn event_files(root: &Path, selection: &Selection) -> Vec<PathBuf> {
    let mut keyed: Vec<(u128, Vec<u8>, PathBuf)> = list(root, selection)
        .into_iter()
        .map(|f| (cloudtrail_file_time(&f), path_order(&f), f))
        .collect();
    // Two files have one path only if listed twice, which a walk does not do: unstable is exact.
    keyed.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    keyed.into_iter().map(|(_, _, f)| f).collect()
}

/// Bytes that sort as the paths of one walk do by `Path`'s own order (component by component),
/// compared with `memcmp` instead of parsing both paths at every comparison of a sort.
///
/// Every path of a walk is the same root and then names joined by one separator each, and no
/// name is empty or holds a separator or a NUL; with each separator made a NUL, the smallest
/// byte, a name that ends first (a prefix of the other) sorts first, as its component does.
fn path_order(path: &Path) -> Vec<u8> {
    let mut key = path.as_os_str().as_encoded_bytes().to_vec();
    for b in &mut key {
        if std::path::is_separator(char::from(*b)) {
            *b = 0;
        }
    }
    key
}

/// Folders waiting to be listed, and how many threads are listing one (and may add more).
struct Queue {
    folders: Vec<PathBuf>,
    busy: usize,
    /// A lister panicked (a bug): the others stop, and the panic is raised where they are joined.
    failed: bool,
}

/// Marks the queue failed if a lister unwinds while listing, so that no other waits for ever
/// for the folders it would have added.
struct Listing<'q> {
    queue: &'q Mutex<Queue>,
    more: &'q Condvar,
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.queue).failed = true;
            self.more.notify_all();
        }
    }
}

/// The event files under `root`, in no particular order.
fn list(root: &Path, selection: &Selection) -> Vec<PathBuf> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let queue = Mutex::new(Queue {
        folders: vec![root.to_path_buf()],
        busy: 0,
        failed: false,
    });
    let more = Condvar::new();
    std::thread::scope(|s| {
        let lister = || lister(&queue, &more, selection);
        let others: Vec<_> = (1..threads).map(|_| s.spawn(lister)).collect();
        let mut files = lister();
        for other in others {
            // A lister only lists: a panic there is a bug, shown as one.
            files.extend(
                other
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        files
    })
}

/// One thread's share: takes folders until none is left and no thread can add one.
fn lister(queue: &Mutex<Queue>, more: &Condvar, selection: &Selection) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut found = Vec::new();
    let mut guard = lock(queue);
    loop {
        if guard.failed {
            return files;
        }
        let Some(folder) = guard.folders.pop() else {
            if guard.busy == 0 {
                more.notify_all();
                return files;
            }
            guard = more.wait(guard).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        guard.busy += 1;
        drop(guard);
        let listing = Listing { queue, more };
        list_folder(&folder, selection, &mut found, &mut files);
        drop(listing);
        guard = lock(queue);
        guard.busy -= 1;
        if !found.is_empty() {
            guard.folders.append(&mut found);
            more.notify_all();
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // The queue holds plain paths: a thread that panicked left them whole.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// The entries of one folder: its sub-folders into `folders`, its event files into `files`.
fn list_folder(
    folder: &Path,
    selection: &Selection,
    folders: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "CloudTrail-Digest" {
            continue;
        }
        // The entry's own type: a symbolic link is neither, and is not followed.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            folders.push(entry.path());
        } else if kind.is_file() {
            let path = entry.path();
            if is_event_file(&path) && selection.may_hold(&name) {
                files.push(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_a_deep_and_wide_tree_is_found_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for account in ["111111111111", "222222222222", "333333333333"] {
            for region in ["eu-west-1", "us-east-1", "us-west-2"] {
                for day in 1..=4 {
                    let d = dir.path().join(format!(
                        "AWSLogs/{account}/CloudTrail/{region}/2024/01/{day:02}"
                    ));
                    std::fs::create_dir_all(&d).unwrap();
                    for minute in [5, 35] {
                        let name = format!(
                            "{account}_CloudTrail_{region}_202401{day:02}T00{minute:02}Z_x.json.gz"
                        );
                        std::fs::write(d.join(&name), b"").unwrap();
                        expected.push(d.join(name));
                    }
                }
            }
        }
        // Names without a time come first, in path order; hidden and digest entries never.
        let plain = dir.path().join("z/a.jsonl");
        let other = dir.path().join("b.json");
        std::fs::create_dir_all(dir.path().join("z/.hidden")).unwrap();
        std::fs::create_dir_all(dir.path().join("AWSLogs/CloudTrail-Digest")).unwrap();
        std::fs::write(&plain, b"").unwrap();
        std::fs::write(&other, b"").unwrap();
        std::fs::write(dir.path().join("z/.hidden/c.json"), b"").unwrap();
        std::fs::write(dir.path().join("z/.d.json"), b"").unwrap();
        std::fs::write(dir.path().join("AWSLogs/CloudTrail-Digest/d.json"), b"").unwrap();
        expected.sort_by(|a, b| {
            let time = |p: &Path| cloudtrail_file_time(p);
            time(a).cmp(&time(b)).then_with(|| a.cmp(b))
        });
        expected.insert(0, plain);
        expected.insert(0, other);
        let found = event_files(dir.path(), &Selection::default());
        assert_eq!(found, expected);
    }

    #[test]
    fn the_order_of_a_walk_is_the_order_of_its_paths() {
        let names = [
            "a", "a-x", "a.b", "ab", "b", "a b", "é", "A", "a_", "z9", "a0", "-", "_", "~",
        ];
        let mut paths = vec![];
        for x in names {
            paths.push(Path::new("root/./r").join(x));
            for y in names {
                paths.push(Path::new("root/./r").join(x).join(y));
            }
        }
        for x in &paths {
            for y in &paths {
                assert_eq!(
                    path_order(x).cmp(&path_order(y)),
                    x.cmp(y),
                    "{x:?} against {y:?}"
                );
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_below_the_root_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.json"), b"").unwrap();
        std::fs::write(dir.path().join("a.json"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.json"), dir.path().join("y.json"))
            .unwrap();
        assert_eq!(
            event_files(dir.path(), &Selection::default()),
            [dir.path().join("a.json")]
        );
    }
}

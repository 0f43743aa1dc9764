//! Checks an archive: every writer's chain unbroken (each object names the hash of the one
//! before, sequence numbers without holes), every object where its header says, every closed
//! day's manifest present, signed with the archive key and listing exactly the objects there
//! are, and no silence longer than allowed between objects.

use super::manifest::Manifest;
use super::object::{self, Name};
use super::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An object's bytes are not those its successor or its day's manifest name.
    Altered,
    /// An object the chain or a manifest names is not there.
    Missing,
    /// An object is not where its header places it (swapped, renamed, moved to another day).
    Reordered,
    /// A closed day has no manifest, or its manifest is unreadable, unsigned or lists other
    /// objects than those there.
    Manifest,
    /// An object that is no part of any chain or manifest (inserted).
    Inserted,
    /// More time than allowed passed between two objects: the service was not archiving.
    Gap,
    /// A chain's newest object is older than allowed: the service stopped, or the newest
    /// objects were removed (the two look alike from the archive alone).
    Stale,
}

impl Kind {
    /// Whether the finding means the archive was tampered with or damaged (a gap means the
    /// service did not run, not that the record of it changed).
    pub fn is_integrity(self) -> bool {
        !matches!(self, Kind::Gap | Kind::Stale)
    }
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: Kind,
    /// The object or manifest concerned (below the prefix).
    pub name: String,
    /// What is wrong, for a human.
    pub detail: String,
}

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Where the archive is.
    pub store: String,
    /// Writers (chains) seen.
    pub writers: Vec<String>,
    /// Objects read.
    pub objects: u64,
    /// Days with a verified manifest.
    pub days_signed: u64,
    /// Days still open (the last day of a chain, before its manifest is written).
    pub days_open: Vec<String>,
    /// Earliest and latest seal times seen.
    pub first: Option<String>,
    /// See `first`.
    pub last: Option<String>,
    /// Problems, in chain order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Exit status for a scheduled job: 0 intact, 1 integrity problems, 3 only gaps.
    pub fn exit_code(&self) -> i32 {
        if self.findings.iter().any(|f| f.kind.is_integrity()) {
            1
        } else if self.findings.is_empty() {
            0
        } else {
            3
        }
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The archive key (manifest signatures).
    pub key: Vec<u8>,
    /// Longest silence allowed between two objects of a chain.
    pub max_gap: std::time::Duration,
    /// Only days from this one (`YYYY-MM-DD`), inclusive.
    pub since: Option<String>,
    /// Only days up to this one, inclusive.
    pub until: Option<String>,
    /// A chain's newest object must be younger than this (`None`: a retired archive).
    pub max_age: Option<std::time::Duration>,
}

/// One writer's names: objects (seq, day, name) and manifests by day.
type Chain = (Vec<(u64, String, String)>, BTreeMap<String, String>);

/// One object as read back.
struct Read {
    name: String,
    day: String,
    seq: u64,
    hash: String,
    header: Option<object::Header>,
}

/// Checks every chain of the archive in `store`.
pub async fn verify(store: &Store, scope: &Scope) -> Result<Report, StoreError> {
    let mut report = Report {
        store: store.describe(),
        ..Report::default()
    };
    let in_scope = |day: &str| {
        scope.since.as_deref().is_none_or(|s| day >= s)
            && scope.until.as_deref().is_none_or(|u| day <= u)
    };
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    for name in store.list().await? {
        match object::parse_name(&name) {
            Some(Name::Object { writer, day, seq }) if in_scope(&day) => {
                chains.entry(writer).or_default().0.push((seq, day, name))
            }
            Some(Name::Manifest { writer, day }) if in_scope(&day) => {
                chains.entry(writer).or_default().1.insert(day, name);
            }
            Some(_) => {}
            None => report.findings.push(Finding {
                kind: Kind::Inserted,
                name,
                detail: "not a name the archive writes".into(),
            }),
        }
    }
    for (writer, (mut objects, manifests)) in chains {
        objects.sort();
        // Every other object's stored bytes are named by its successor's header.
        let newest = objects.last().map(|(_, _, name)| name.clone());
        let mut read = Vec::with_capacity(objects.len());
        for (seq, day, name) in objects {
            let (hash, header) = match store.get(&name).await {
                Ok(bytes) if Some(&name) == newest.as_ref() && !object::padding_is_zero(&bytes) => {
                    report.findings.push(Finding {
                        kind: Kind::Altered,
                        name: name.clone(),
                        detail: "the bits after its final deflate block are not zero, as the encoder writes them".into(),
                    });
                    (object::sha256_hex(&bytes), None)
                }
                Ok(bytes) => (
                    object::sha256_hex(&bytes),
                    read_header(&name, &bytes, scope, &mut report),
                ),
                Err(e) => {
                    report.findings.push(Finding {
                        kind: Kind::Altered,
                        name: name.clone(),
                        detail: format!("cannot be read: {e}"),
                    });
                    (String::new(), None)
                }
            };
            read.push(Read {
                name,
                day,
                seq,
                hash,
                header,
            });
        }
        report.objects += read.len() as u64;
        check_chain(&writer, &read, scope, &mut report);
        check_manifests(store, &writer, &read, &manifests, scope, &mut report).await?;
        report.writers.push(writer);
    }
    report
        .findings
        .sort_by(|a, b| a.name.cmp(&b.name).then(a.kind.cmp(&b.kind)));
    Ok(report)
}

/// An object's header, if the object reads whole, its records match the header's hash and
/// the header's MAC holds; else a finding and `None`.
fn read_header(
    name: &str,
    bytes: &[u8],
    scope: &Scope,
    report: &mut Report,
) -> Option<object::Header> {
    let mut fail = |detail: String| {
        report.findings.push(Finding {
            kind: Kind::Altered,
            name: name.to_string(),
            detail,
        });
        None
    };
    let read = match object::check(bytes) {
        Ok(r) => r,
        Err(e) => return fail(format!("unreadable: {e}")),
    };
    let h = read.header;
    if !h.mac_holds(&scope.key) {
        return fail("its header's MAC does not hold with this archive key: forged, or altered by someone without the key".into());
    }
    if read.records_sha256 != h.records_sha256 || read.records != h.records {
        return fail(format!(
            "its {} records do not match the {} records and hash its header names",
            read.records, h.records
        ));
    }
    let times = [&h.opened, &h.sealed];
    if times
        .iter()
        .any(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
    {
        return fail(format!(
            "its header's times are not RFC 3339: {:?}, {:?}",
            h.opened, h.sealed
        ));
    }
    Some(h)
}

/// Placement, then sequence, links and gaps of one writer's objects. The chain is followed in
/// the order the objects' own headers give, so two swapped objects are named as misplaced,
/// not as breaking each other's links.
fn check_chain(writer: &str, read: &[Read], scope: &Scope, report: &mut Report) {
    for r in read {
        let Some(h) = &r.header else { continue };
        if h.writer != writer || h.seq != r.seq || object::day_of(&h.sealed) != r.day {
            report.findings.push(Finding {
                kind: Kind::Reordered,
                name: r.name.clone(),
                detail: format!(
                    "holds object {} of writer {} sealed {}, not what its name says",
                    h.seq, h.writer, h.sealed
                ),
            });
        }
        if report.first.as_ref().is_none_or(|f| h.sealed < *f) {
            report.first = Some(h.sealed.clone());
        }
        if report.last.as_ref().is_none_or(|l| h.sealed > *l) {
            report.last = Some(h.sealed.clone());
        }
    }
    let seq = |r: &Read| r.header.as_ref().map_or(r.seq, |h| h.seq);
    let mut chain: Vec<&Read> = read.iter().collect();
    chain.sort_by_key(|r| seq(r));
    let mut before: Option<&Read> = None;
    for r in chain {
        if seq(r) == 0 {
            report.findings.push(Finding {
                kind: Kind::Inserted,
                name: r.name.clone(),
                detail: "sequence number 0: chains start at 1".into(),
            });
            continue;
        }
        match before {
            None if seq(r) != 1 && scope.since.is_none() => {
                missing(writer, None, r, 1, seq(r) - 1, report)
            }
            Some(b) if seq(r) == seq(b) => report.findings.push(Finding {
                kind: Kind::Inserted,
                name: r.name.clone(),
                detail: format!("a second object {} (the first is {})", seq(r), b.name),
            }),
            Some(b) if seq(r) != seq(b) + 1 => {
                missing(writer, Some(b), r, seq(b) + 1, seq(r) - 1, report)
            }
            // An unreadable object was named already; its neighbours are not to blame.
            Some(b) if b.header.is_some() && r.header.is_some() => link(b, r, scope, report),
            _ => {}
        }
        before = Some(r);
    }
    if let (Some(newest), Some(max_age)) = (
        read.iter()
            .filter_map(|r| r.header.as_ref())
            .map(|h| &h.sealed)
            .max(),
        scope.max_age,
    ) {
        let age = chrono::DateTime::parse_from_rfc3339(newest)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            .unwrap_or(i64::MAX);
        if age > max_age.as_secs() as i64 {
            report.findings.push(Finding {
                kind: Kind::Stale,
                name: format!("{writer}/"),
                detail: format!(
                    "its newest object was sealed {newest}, {} ago: the service stopped, or the newest objects were removed (an instance seals one every seal_every)",
                    span(age)
                ),
            });
        }
    }
}

/// Objects `from..=to` of the chain are not there: each named where it must have been (its
/// day is known when the objects either side share one).
fn missing(writer: &str, b: Option<&Read>, r: &Read, from: u64, to: u64, report: &mut Report) {
    const NAMED: u64 = 1000;
    let day = b.map_or(r.day.as_str(), |b| b.day.as_str());
    if day == r.day && to - from < NAMED {
        for seq in from..=to {
            report.findings.push(Finding {
                kind: Kind::Missing,
                name: object::object_name(writer, day, seq),
                detail: format!(
                    "object {seq} of the chain is not in the archive (the next present is {})",
                    r.name
                ),
            });
        }
        return;
    }
    report.findings.push(Finding {
        kind: Kind::Missing,
        name: r.name.clone(),
        detail: match b {
            Some(b) => format!(
                "objects {from} to {to} are missing between {} and this one",
                b.name
            ),
            None => format!(
                "the chain starts at object {}: objects {from} to {to} are missing",
                to + 1
            ),
        },
    });
}

/// Whether `r` names `b`'s hash, and how long nothing was archived between them.
fn link(b: &Read, r: &Read, scope: &Scope, report: &mut Report) {
    let named = r.header.as_ref().and_then(|h| h.prev.as_deref());
    if named != Some(b.hash.as_str()) {
        report.findings.push(Finding {
            kind: Kind::Altered,
            name: b.name.clone(),
            detail: format!(
                "its SHA-256 is {}, but the next object ({}) names {}",
                b.hash,
                r.name,
                named.unwrap_or("none")
            ),
        });
    }
    let (Some(x), Some(y)) = (&b.header, &r.header) else {
        return;
    };
    let resumed = y.opened.clone().min(y.sealed.clone());
    if let Some(gap) = seconds_between(&x.sealed, &resumed) {
        if gap > scope.max_gap.as_secs() as i64 {
            report.findings.push(Finding {
                kind: Kind::Gap,
                name: r.name.clone(),
                detail: format!(
                    "nothing archived from {} to {resumed} ({}): the service was not running or not archiving",
                    x.sealed,
                    span(gap)
                ),
            });
        }
    }
}

/// Every day of the writer's objects has a signed manifest listing exactly them (the chain's
/// last day may still be open), and every manifest's objects are there.
async fn check_manifests(
    store: &Store,
    writer: &str,
    read: &[Read],
    manifests: &BTreeMap<String, String>,
    scope: &Scope,
    report: &mut Report,
) -> Result<(), StoreError> {
    let mut days: BTreeMap<&str, Vec<&Read>> = BTreeMap::new();
    for r in read {
        days.entry(r.day.as_str()).or_default().push(r);
    }
    let last_day = read.last().map(|r| r.day.as_str());
    let mut all_days: Vec<&str> = days.keys().copied().collect();
    all_days.extend(manifests.keys().map(String::as_str));
    all_days.sort();
    all_days.dedup();
    for day in all_days {
        let here = days.get(day).cloned().unwrap_or_default();
        let Some(name) = manifests.get(day) else {
            if Some(day) == last_day {
                report.days_open.push(format!("{writer} {day}"));
            } else {
                report.findings.push(Finding {
                    kind: Kind::Manifest,
                    name: object::manifest_name(writer, day),
                    detail: format!(
                        "day {day} is closed (later objects exist) but its manifest is missing"
                    ),
                });
            }
            continue;
        };
        let bytes = store.get(name).await?;
        let manifest = match Manifest::from_stored(&bytes) {
            Ok(m) => m,
            Err(detail) => {
                report.findings.push(Finding {
                    kind: Kind::Manifest,
                    name: name.clone(),
                    detail,
                });
                continue;
            }
        };
        if !manifest.signature_holds(&scope.key) || manifest.writer != writer || manifest.day != day
        {
            report.findings.push(Finding {
                kind: Kind::Manifest,
                name: name.clone(),
                detail: "its signature does not hold with this archive key (altered, or signed with another key)".into(),
            });
            continue;
        }
        report.days_signed += 1;
        for entry in &manifest.objects {
            match here.iter().find(|r| r.seq == entry.seq) {
                None => report.findings.push(Finding {
                    kind: Kind::Missing,
                    name: object::object_name(writer, day, entry.seq),
                    detail: format!(
                        "listed in the manifest of {day} with SHA-256 {}, not in the archive",
                        entry.sha256
                    ),
                }),
                Some(r) if r.hash != entry.sha256 => report.findings.push(Finding {
                    kind: Kind::Altered,
                    name: r.name.clone(),
                    detail: format!(
                        "its SHA-256 is {}, the signed manifest of {day} says {}",
                        r.hash, entry.sha256
                    ),
                }),
                Some(_) => {}
            }
        }
        for r in &here {
            if !manifest.objects.iter().any(|e| e.seq == r.seq) {
                report.findings.push(Finding {
                    kind: Kind::Inserted,
                    name: r.name.clone(),
                    detail: format!("not in the signed manifest of {day}"),
                });
            }
        }
    }
    Ok(())
}

fn seconds_between(a: &str, b: &str) -> Option<i64> {
    let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
    Some((b - a).num_seconds())
}

/// Seconds as `1h 5m 3s`.
fn span(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::archive::spool::tests::{rec, KEY};
    use crate::sink::archive::spool::Spool;
    use std::path::Path;

    /// An archive in a directory: objects sealed at these times (one record each), put.
    async fn archive(dir: &Path, times: &[&str]) -> Store {
        let spool_dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(spool_dir.path(), "w1", KEY, 1 << 30).unwrap();
        for (i, t) in times.iter().enumerate() {
            spool.append(&[rec(i)]).unwrap();
            spool.seal_at(t.to_string()).unwrap();
        }
        let store = Store::Dir(dir.to_path_buf());
        for out in spool.ready().unwrap() {
            let (name, bytes) = spool.read_outgoing(&out).unwrap();
            store.put(&name, &bytes).await.unwrap();
        }
        store
    }

    const TIMES: [&str; 5] = [
        "2026-11-30T23:50:00.000Z",
        "2026-11-30T23:55:00.000Z",
        "2026-12-01T00:00:00.000Z",
        "2026-12-01T00:05:00.000Z",
        "2026-12-01T00:10:00.000Z",
    ];

    fn scope(key: &[u8]) -> Scope {
        Scope {
            key: key.to_vec(),
            max_gap: std::time::Duration::from_secs(900),
            since: None,
            until: None,
            max_age: None,
        }
    }

    fn found(r: &Report) -> Vec<(Kind, &str)> {
        r.findings
            .iter()
            .map(|f| (f.kind, f.name.as_str()))
            .collect()
    }

    const O2: &str = "w1/2026/11/30/000000000002.jsonl.gz";
    const O4: &str = "w1/2026/12/01/000000000004.jsonl.gz";

    #[tokio::test]
    async fn an_intact_archive_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!((r.objects, r.days_signed, r.exit_code()), (5, 1, 0));
        assert_eq!(r.days_open, ["w1 2026-12-01"]);
    }

    #[tokio::test]
    async fn a_deleted_object_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        std::fs::remove_file(dir.path().join(O2)).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert!(found(&r).contains(&(Kind::Missing, O2)), "{:?}", r.findings);
        assert_eq!(r.exit_code(), 1);
        // In the open day, the chain alone names the hole.
        std::fs::remove_file(dir.path().join(O4)).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert!(found(&r).contains(&(Kind::Missing, O4)), "{:?}", r.findings);
        assert!(
            !r.findings.iter().any(|f| f.kind == Kind::Altered),
            "{:?}",
            r.findings
        );
    }

    #[tokio::test]
    async fn an_altered_object_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let path = dir.path().join(O2);
        let (header, _) =
            crate::sink::archive::object::decode(&std::fs::read(&path).unwrap()).unwrap();
        // Rewritten well-formed, header and all: one alert taken out.
        std::fs::write(&path, crate::sink::archive::object::encode(&header, &[])).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert_eq!(
            found(&r),
            [(Kind::Altered, O2), (Kind::Altered, O2)],
            "{:?}",
            r.findings
        );
        // The manifest and the object's own header both say so.
        assert!(r
            .findings
            .iter()
            .any(|f| f.detail.contains("signed manifest")));
        assert!(r.findings.iter().any(|f| f.detail.contains("do not match")));
    }

    #[tokio::test]
    async fn a_set_padding_bit_in_the_newest_object_is_named() {
        // Archives are built until one's newest object has an unused bit after its final
        // deflate block (7 in 8 have one), which is then set.
        for _ in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let store = archive(dir.path(), &TIMES).await;
            let newest = store
                .list()
                .await
                .unwrap()
                .into_iter()
                .filter_map(|n| match object::parse_name(&n) {
                    Some(Name::Object { seq, .. }) => Some((seq, n)),
                    _ => None,
                })
                .max()
                .map(|(_, n)| n)
                .unwrap();
            let path = dir.path().join(&newest);
            let bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() - 9;
            let padding = (0..8).rev().map(|bit| 1u8 << bit).find(|&b| {
                let mut set = bytes.clone();
                set[at] |= b;
                set != bytes && object::check(&set).is_ok()
            });
            let Some(b) = padding else { continue };
            let mut set = bytes.clone();
            set[at] |= b;
            std::fs::write(&path, &set).unwrap();
            let r = verify(&store, &scope(KEY)).await.unwrap();
            assert_eq!(
                found(&r),
                [(Kind::Altered, newest.as_str())],
                "{:?}",
                r.findings
            );
            return;
        }
        panic!("no archive of 8 had an unused bit in its newest object");
    }

    #[tokio::test]
    async fn swapped_objects_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let (a, b) = (
            dir.path().join(O4),
            dir.path().join("w1/2026/12/01/000000000005.jsonl.gz"),
        );
        let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        std::fs::write(&a, y).unwrap();
        std::fs::write(&b, x).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        let reordered: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Reordered)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            reordered,
            [O4, "w1/2026/12/01/000000000005.jsonl.gz"],
            "{:?}",
            r.findings
        );
        assert!(
            r.findings.iter().all(|f| f.kind == Kind::Reordered),
            "a swap breaks no link: {:?}",
            r.findings
        );
    }

    #[tokio::test]
    async fn a_missing_or_forged_manifest_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let r = verify(&store, &scope(b"not the archive key"))
            .await
            .unwrap();
        assert!(found(&r).contains(&(Kind::Manifest, "w1/2026/11/30/manifest.json")));
        let forged = r
            .findings
            .iter()
            .filter(|f| f.detail.contains("MAC does not hold"));
        assert_eq!(
            (forged.count(), r.findings.len()),
            (5, 6),
            "{:?}",
            r.findings
        );
        std::fs::remove_file(dir.path().join("w1/2026/11/30/manifest.json")).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert_eq!(found(&r), [(Kind::Manifest, "w1/2026/11/30/manifest.json")]);
        assert!(r.findings[0].detail.contains("missing"));
    }

    #[tokio::test]
    async fn an_inserted_object_and_a_stranger_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert_eq!(found(&r), [(Kind::Inserted, "notes.txt")]);
    }

    #[tokio::test]
    async fn a_forged_newest_object_and_a_forged_writer_need_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let last = dir.path().join("w1/2026/12/01/000000000005.jsonl.gz");
        let (mut header, _) =
            crate::sink::archive::object::decode(&std::fs::read(&last).unwrap()).unwrap();
        header.seal(&[], b"a guessed key");
        std::fs::write(&last, crate::sink::archive::object::encode(&header, &[])).unwrap();
        let ghost = dir.path().join("ghost/2026/12/01/000000000001.jsonl.gz");
        std::fs::create_dir_all(ghost.parent().unwrap()).unwrap();
        header.writer = "ghost".into();
        header.seq = 1;
        header.prev = None;
        header.seal(&[], b"a guessed key");
        std::fs::write(&ghost, crate::sink::archive::object::encode(&header, &[])).unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        let names: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.detail.contains("MAC"))
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "ghost/2026/12/01/000000000001.jsonl.gz",
                "w1/2026/12/01/000000000005.jsonl.gz"
            ]
        );
        assert_eq!(r.exit_code(), 1);
    }

    #[tokio::test]
    async fn sequence_zero_and_unreadable_names_are_findings_not_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        std::fs::write(dir.path().join("w1/2026/11/29/000000000000.jsonl.gz"), b"").ok();
        std::fs::create_dir_all(dir.path().join("w1/2026/11/29")).unwrap();
        std::fs::write(dir.path().join("w1/2026/11/29/000000000000.jsonl.gz"), b"").unwrap();
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert!(
            found(&r).contains(&(Kind::Altered, "w1/2026/11/29/000000000000.jsonl.gz")),
            "{:?}",
            r.findings
        );
        assert_eq!(r.exit_code(), 1);
    }

    #[tokio::test]
    async fn a_chain_whose_newest_object_is_old_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = archive(dir.path(), &TIMES).await;
        let mut s = scope(KEY);
        s.max_age = Some(std::time::Duration::from_secs(3600));
        let r = verify(&store, &s).await.unwrap();
        assert_eq!(found(&r), [(Kind::Stale, "w1/")]);
        assert_eq!(r.exit_code(), 3);
    }

    #[tokio::test]
    async fn a_silence_is_a_gap_not_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let mut times = TIMES.to_vec();
        times[4] = "2026-12-01T02:10:00.000Z";
        let store = archive(dir.path(), &times).await;
        let r = verify(&store, &scope(KEY)).await.unwrap();
        assert_eq!(
            found(&r),
            [(Kind::Gap, "w1/2026/12/01/000000000005.jsonl.gz")]
        );
        assert!(
            r.findings[0].detail.contains("2h 5m 0s"),
            "{}",
            r.findings[0].detail
        );
        assert_eq!(r.exit_code(), 3);
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Any change to any byte of any object or manifest is found, but one: the newest
        /// object's deflate data changed so that it still inflates to the same bytes (a
        /// back-reference moved to identical text), which docs/archive.md says is not caught
        /// until the next object names it.
        #[test]
        fn any_changed_byte_is_found(file in 0usize..64, at in proptest::prelude::any::<proptest::sample::Index>(), xor in 1u8..=255) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = runtime.block_on(archive(dir.path(), &TIMES));
            let names = runtime.block_on(store.list()).unwrap();
            let name = &names[file % names.len()];
            let path = dir.path().join(name);
            let mut bytes = std::fs::read(&path).unwrap();
            let original = bytes.clone();
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            std::fs::write(&path, &bytes).unwrap();
            let r = runtime.block_on(verify(&store, &scope(KEY))).unwrap();
            if r.exit_code() != 1 {
                let newest = names
                    .iter()
                    .filter_map(|n| match object::parse_name(n) {
                        Some(Name::Object { seq, .. }) => Some((seq, n)),
                        _ => None,
                    })
                    .max()
                    .map(|(_, n)| n);
                let inflated = |b: &[u8]| {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).map(|_| out).ok()
                };
                proptest::prop_assert_eq!(Some(name), newest, "byte {} ^ {}: {:?}", i, xor, r.findings);
                proptest::prop_assert_eq!(inflated(&bytes), inflated(&original), "{} byte {} ^ {}", name, i, xor);
                proptest::prop_assert_eq!(r.exit_code(), 0);
            }
        }

        /// Whatever bytes an object holds, reading it ends (no panic, bounded).
        #[test]
        fn any_object_bytes_are_read_or_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), gz in proptest::prelude::any::<bool>()) {
            let stored = if gz {
                use std::io::Write as _;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&bytes).unwrap();
                e.finish().unwrap()
            } else {
                bytes
            };
            let _ = crate::sink::archive::object::check(&stored);
        }
    }
}

//! The local spool: an encrypted journal of the records accepted since the last seal (a record
//! is acknowledged once its journal frame is on disk) and an outbox of sealed objects and
//! manifests waiting for the archive store. Sealing commits by saving the chain state; what an
//! interrupted seal left is undone on the next start, and the journal sealed again.

use super::manifest::{Entry, Manifest};
use super::object::{self, Header};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const NONCE: usize = 24;
/// A journal frame's head: its length and the length's complement.
const FRAME_HEAD: usize = 8;

fn frame_head(len: usize) -> [u8; FRAME_HEAD] {
    let len = len as u32;
    let mut head = [0; FRAME_HEAD];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&(!len).to_le_bytes());
    head
}
/// The largest frame a journal may hold: a frame is one batch's records.
const MAX_FRAME: usize = 256 << 20;

/// Why the spool refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file of the spool cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// The spool holds its configured maximum: the store has not taken objects for a while.
    #[error("the archive spool is full ({bytes} of {max} bytes): the archive store has not accepted objects; records are refused until it does")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// `spool_max_bytes`.
        max: u64,
    },
    /// A spool file does not decrypt or parse: written with another key, or damaged.
    #[error("{path}: {what}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a writer's chain stands: saved after every seal (the seal's commit point).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The last sealed object's sequence number (0: none yet).
    pub seq: u64,
    /// Its hex SHA-256.
    pub hash: Option<String>,
    /// The day (`YYYY-MM-DD`) of the objects in `day_objects`.
    pub day: Option<String>,
    /// The hash before the day's first object.
    pub day_prev: Option<String>,
    /// The current day's objects, for its manifest.
    pub day_objects: Vec<Entry>,
    /// The journal the last seal consumed.
    pub journal: Option<String>,
    /// The writer this chain belongs to.
    #[serde(default)]
    pub writer: Option<String>,
}

/// A sealed file waiting in the outbox for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The outbox file.
    pub path: PathBuf,
    /// The chain position it belongs to (a manifest: the seq of the object sealed with it).
    pub seq: u64,
}

/// The journal, the outbox and the chain state of one writer.
pub struct Spool {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    writer: String,
    key: Vec<u8>,
    max_bytes: u64,
    chain: Chain,
    journal: Option<(String, File)>,
    /// The records of the open journal, in order.
    records: Vec<Vec<u8>>,
    /// Bytes of the open journal's records.
    record_bytes: u64,
    /// When the first record of the open journal was accepted.
    opened: Option<String>,
    /// Journal and outbox bytes on disk.
    bytes: u64,
    /// Unsealed journals found at start besides the open one: removed by the next seal.
    earlier: Vec<PathBuf>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, undoing an interrupted seal and reloading the
    /// open journal. `key` is the archive key: it signs manifests and derives the spool's
    /// encryption key.
    pub fn open(dir: &Path, writer: &str, key: &[u8], max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir.join("outbox")).map_err(io_at(dir))?;
        let chain_path = dir.join("chain.json");
        let chain = match fs::read(&chain_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SpoolError::Damaged {
                path: chain_path.display().to_string(),
                what: format!("not a chain state: {e}"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Chain::default(),
            Err(e) => return Err(io_at(&chain_path)(e)),
        };
        if let Some(other) = chain.writer.as_deref().filter(|w| *w != writer) {
            return Err(SpoolError::Damaged {
                path: chain_path.display().to_string(),
                what: format!("the spool holds the chain of writer {other}, not {writer}: give each writer its own spool, or set writer back"),
            });
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            cipher: XChaCha20Poly1305::new(&spool_key(key).into()),
            writer: writer.to_string(),
            key: key.to_vec(),
            max_bytes,
            chain,
            journal: None,
            records: Vec::new(),
            record_bytes: 0,
            opened: None,
            bytes: 0,
            earlier: Vec::new(),
        };
        spool.recover()?;
        Ok(spool)
    }

    /// Drops what a seal left before its commit, deletes journals already sealed, reloads
    /// the rest and counts the bytes held.
    fn recover(&mut self) -> Result<(), SpoolError> {
        for out in self.outgoing()? {
            if out.seq > self.chain.seq {
                fs::remove_file(&out.path).map_err(io_at(&out.path))?;
            }
        }
        let mut journals = self.journal_files()?;
        journals.sort();
        for (id, path) in journals {
            if self.chain.journal.as_deref() == Some(id.as_str()) {
                fs::remove_file(&path).map_err(io_at(&path))?;
                continue;
            }
            let (frames, whole) = self.read_journal(&path)?;
            for frame in frames {
                self.take_frame(&frame, &path)?;
            }
            // Appends continue the unsealed journal, after its last whole frame. There is
            // only ever one; should there be more, the earlier ones go with the next seal.
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_at(&path))?;
            file.set_len(whole).map_err(io_at(&path))?;
            if let Some((_, older)) = self.journal.replace((id.clone(), file)) {
                drop(older);
            }
            self.earlier.push(path);
        }
        self.earlier.pop();
        self.bytes = self.disk_bytes()?;
        Ok(())
    }

    fn take_frame(&mut self, frame: &[u8], path: &Path) -> Result<(), SpoolError> {
        let batch: Batch = serde_json::from_slice(frame).map_err(|e| SpoolError::Damaged {
            path: path.display().to_string(),
            what: format!("a journal frame is not a batch of records: {e}"),
        })?;
        if self.opened.is_none() {
            self.opened = Some(batch.at);
        }
        for r in batch.records {
            self.record_bytes += r.get().len() as u64;
            self.records.push(r.get().as_bytes().to_vec());
        }
        Ok(())
    }

    /// The writer whose chain this is.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The chain as of the last seal.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Journal and outbox bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records accepted since the last seal, and their bytes.
    pub fn pending(&self) -> (usize, u64) {
        (self.records.len(), self.record_bytes)
    }

    /// Appends records (each one JSON text) to the journal and syncs it: when this returns
    /// `Ok`, they survive a crash. Refused while the spool is full.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.bytes >= self.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                max: self.max_bytes,
            });
        }
        let now = object::now_rfc3339();
        let mut frame = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
        frame.extend_from_slice(b"{\"at\":");
        frame.extend_from_slice(serde_json::to_string(&now).unwrap_or_default().as_bytes());
        frame.extend_from_slice(b",\"records\":[");
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                frame.push(b',');
            }
            frame.extend_from_slice(r);
        }
        frame.extend_from_slice(b"]}");
        let sealed = self.encrypt(&frame);
        let dir = self.dir.clone();
        let (id, file) = self.open_journal()?;
        let path = dir.join(format!("journal-{id}.log"));
        // One write of the frame (length, its complement, the sealed bytes): a crash tears at
        // most this last frame.
        let mut framed = Vec::with_capacity(FRAME_HEAD + sealed.len());
        framed.extend_from_slice(&frame_head(sealed.len()));
        framed.extend_from_slice(&sealed);
        file.write_all(&framed)
            .and_then(|()| file.sync_data())
            .map_err(io_at(&path))?;
        self.bytes += framed.len() as u64;
        if self.opened.is_none() {
            self.opened = Some(now);
        }
        for r in records {
            self.record_bytes += r.len() as u64;
            self.records.push(r.clone());
        }
        Ok(())
    }

    fn open_journal(&mut self) -> Result<&mut (String, File), SpoolError> {
        if self.journal.is_none() {
            let id = journal_id();
            let path = self.dir.join(format!("journal-{id}.log"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_at(&path))?;
            sync_dir(&self.dir).map_err(io_at(&self.dir))?;
            self.journal = Some((id, file));
        }
        Ok(self.journal.as_mut().expect("just opened"))
    }

    /// Seals the records accepted since the last seal into the chain's next object (a
    /// heartbeat when there are none, so that the archive shows the service alive), with the
    /// manifest of the previous day when the day changed; returns the new sequence number, or
    /// `None` for a heartbeat that does not fit below `max_bytes` (see [`Spool::seal_at`]).
    pub fn seal(&mut self) -> Result<Option<u64>, SpoolError> {
        self.seal_at(object::now_rfc3339())
    }

    /// [`Spool::seal`] at a given time (RFC 3339, UTC).
    ///
    /// A heartbeat is sealed only if it fits below `max_bytes` with the manifest sealed with
    /// it: while the store is down and the spool full, batches are refused anyway, and a
    /// heartbeat an outage long would grow the outbox without bound. The archive then shows
    /// the stretch as a gap (verify-archive: `GAP`), which it was: nothing was processed.
    /// Records are always sealed (they are acknowledged), so the spool holds at most
    /// `max_bytes` plus the last batch accepted below it.
    pub fn seal_at(&mut self, sealed: String) -> Result<Option<u64>, SpoolError> {
        let day = object::day_of(&sealed).to_string();
        let seq = self.chain.seq + 1;
        let mut chain = self.chain.clone();
        let mut manifest = None;
        if chain.day.as_deref() != Some(day.as_str()) {
            if let (Some(old), false) = (&chain.day, chain.day_objects.is_empty()) {
                let m = Manifest::signed(
                    &self.writer,
                    old,
                    chain.day_prev.clone(),
                    chain.day_objects.clone(),
                    &self.key,
                );
                manifest = Some((object::manifest_name(&self.writer, old), m.to_stored()));
            }
            chain.day = Some(day.clone());
            chain.day_prev = chain.hash.clone();
            chain.day_objects.clear();
        }
        let heartbeat;
        let records: &[Vec<u8>] = if self.records.is_empty() {
            heartbeat =
                vec![format!("{{\"kind\":\"heartbeat\",\"at\":\"{sealed}\"}}").into_bytes()];
            &heartbeat
        } else {
            &self.records
        };
        let journal = self
            .journal
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_else(journal_id);
        let mut header = Header {
            kind: "header".into(),
            format: object::FORMAT,
            writer: self.writer.clone(),
            seq,
            prev: chain.hash.clone(),
            opened: self.opened.clone().unwrap_or_else(|| sealed.clone()),
            sealed: sealed.clone(),
            records: records.len() as u64,
            journal: journal.clone(),
            records_sha256: String::new(),
            mac: String::new(),
        };
        header.seal(records, &self.key);
        let bytes = object::encode(&header, records);
        let name = object::object_name(&self.writer, &day, seq);
        if self.records.is_empty() {
            let adds = outbox_bytes(&name, &bytes)
                + manifest.as_ref().map_or(0, |(n, b)| outbox_bytes(n, b));
            if self.bytes.saturating_add(adds) > self.max_bytes {
                return Ok(None);
            }
        }
        if let Some((name, body)) = manifest {
            self.put_outbox(&format!("{seq:012}.manifest"), &name, &body)?;
        }
        let hash = object::sha256_hex(&bytes);
        self.put_outbox(&format!("{seq:012}.obj"), &name, &bytes)?;
        chain.seq = seq;
        chain.hash = Some(hash.clone());
        chain.day_objects.push(Entry { seq, sha256: hash });
        chain.journal = Some(journal);
        chain.writer = Some(self.writer.clone());
        // The commit point: from here the object exists, and the journal is sealed.
        let path = self.dir.join("chain.json");
        crate::durable::save_atomically(&path, &serde_json::to_vec(&chain).unwrap_or_default())
            .map_err(io_at(&path))?;
        self.chain = chain;
        self.journal = None;
        self.records.clear();
        self.record_bytes = 0;
        self.opened = None;
        for (id, path) in self.journal_files()? {
            if Some(&id) == self.chain.journal.as_ref() {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        for path in std::mem::take(&mut self.earlier) {
            fs::remove_file(&path).map_err(io_at(&path))?;
        }
        self.bytes = self.disk_bytes()?;
        Ok(Some(seq))
    }

    /// Writes an outbox file whole or not at all: the archive name, then the bytes, encrypted.
    fn put_outbox(&mut self, file: &str, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
        let mut plain = Vec::with_capacity(2 + name.len() + bytes.len());
        plain.extend_from_slice(&(name.len() as u16).to_le_bytes());
        plain.extend_from_slice(name.as_bytes());
        plain.extend_from_slice(bytes);
        let sealed = self.encrypt(&plain);
        // The heartbeat's room check counts files by outbox_bytes: keep the two in step.
        debug_assert_eq!(sealed.len() as u64, outbox_bytes(name, bytes));
        let path = self.dir.join("outbox").join(file);
        crate::durable::save_atomically(&path, &sealed).map_err(io_at(&path))
    }

    /// The committed outbox files, oldest first: what the store may take.
    pub fn ready(&self) -> Result<Vec<Outgoing>, SpoolError> {
        let seq = self.chain.seq;
        Ok(self
            .outgoing()?
            .into_iter()
            .filter(|o| o.seq <= seq)
            .collect())
    }

    /// An outbox file's archive name and bytes, decrypted.
    pub fn read_outgoing(&self, out: &Outgoing) -> Result<(String, Vec<u8>), SpoolError> {
        let damaged = |what: &str| SpoolError::Damaged {
            path: out.path.display().to_string(),
            what: what.to_string(),
        };
        let sealed = fs::read(&out.path).map_err(io_at(&out.path))?;
        let plain = self
            .decrypt(&sealed)
            .ok_or_else(|| damaged("does not decrypt with the archive key"))?;
        let len = plain
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| damaged("too short"))?;
        let name = plain
            .get(2..2 + len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or_else(|| damaged("no archive name"))?
            .to_string();
        Ok((name, plain[2 + len..].to_vec()))
    }

    /// Renames an outbox file that cannot be read to `<name>.damaged`, out of the queue.
    pub fn set_aside(&mut self, out: &Outgoing) -> Result<(), SpoolError> {
        let mut aside = out.path.clone().into_os_string();
        aside.push(".damaged");
        fs::rename(&out.path, &aside).map_err(io_at(&out.path))?;
        self.bytes = self.disk_bytes()?;
        Ok(())
    }

    /// Removes an outbox file the store confirmed.
    pub fn done(&mut self, out: &Outgoing) -> Result<(), SpoolError> {
        let size = fs::metadata(&out.path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&out.path).map_err(io_at(&out.path))?;
        self.bytes = self.bytes.saturating_sub(size);
        Ok(())
    }

    fn outgoing(&self) -> Result<Vec<Outgoing>, SpoolError> {
        let dir = self.dir.join("outbox");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let path = entry.map_err(io_at(&dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let seq = name.split('.').next().and_then(|s| s.parse::<u64>().ok());
            let known = name.ends_with(".obj") || name.ends_with(".manifest");
            match seq {
                Some(seq) if known => out.push(Outgoing { path, seq }),
                // A temporary file of an interrupted write.
                _ if name.ends_with(".tmp") => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        // Within one seq the manifest (of the day before) goes first: "manifest" < "obj".
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn journal_files(&self) -> Result<Vec<(String, PathBuf)>, SpoolError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let path = entry.map_err(io_at(&self.dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(id) = name
                .strip_prefix("journal-")
                .and_then(|n| n.strip_suffix(".log"))
            {
                out.push((id.to_string(), path.clone()));
            }
        }
        Ok(out)
    }

    /// Bytes of the journals and the outbox: what waits (the chain state is not counted).
    fn disk_bytes(&self) -> Result<u64, SpoolError> {
        let mut total = 0;
        for (_, path) in self.journal_files()? {
            total += fs::metadata(&path).map_err(io_at(&path))?.len();
        }
        for out in self.outgoing()? {
            total += fs::metadata(&out.path).map_err(io_at(&out.path))?.len();
        }
        Ok(total)
    }

    /// A journal's frames and the length of its whole frames; a frame cut short by a crash
    /// (never acknowledged) ends it.
    fn read_journal(&self, path: &Path) -> Result<(Vec<Vec<u8>>, u64), SpoolError> {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_at(path))?;
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let damaged = |what: String| SpoolError::Damaged {
                path: path.display().to_string(),
                what,
            };
            let Some(head) = bytes.get(at..at + FRAME_HEAD) else {
                tracing::warn!(path = %path.display(), at, "the journal ends in a frame cut short (a crash while writing it, before it was acknowledged); it is dropped");
                break;
            };
            let word =
                |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let len = word(0) as usize;
            // The complement tells a damaged length from a torn write: no write makes a
            // mismatch, and the acknowledged records after it must not be dropped.
            if word(4) != !word(0) || len > MAX_FRAME || len <= NONCE {
                return Err(damaged(format!(
                    "the frame at byte {at} has a damaged length"
                )));
            }
            let Some(sealed) = bytes.get(at + FRAME_HEAD..at + FRAME_HEAD + len) else {
                tracing::warn!(path = %path.display(), at, "the journal ends in a frame cut short (a crash while writing it, before it was acknowledged); it is dropped");
                break;
            };
            let plain = self.decrypt(sealed).ok_or_else(|| {
                damaged(format!(
                    "the frame at byte {at} does not decrypt with the archive key"
                ))
            })?;
            frames.push(plain);
            at += FRAME_HEAD + len;
        }
        Ok((frames, at as u64))
    }

    fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let mut out = nonce.to_vec();
        // Encryption into a Vec fails only on absurd lengths, bounded well below here.
        out.extend(
            self.cipher
                .encrypt(XNonce::from_slice(&nonce), plain)
                .unwrap_or_default(),
        );
        out
    }

    fn decrypt(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, text) = (sealed.get(..NONCE)?, sealed.get(NONCE..)?);
        self.cipher.decrypt(XNonce::from_slice(nonce), text).ok()
    }
}

/// One journal frame.
#[derive(Deserialize)]
struct Batch {
    at: String,
    records: Vec<Box<serde_json::value::RawValue>>,
}

/// The spool's encryption key: the archive key's HMAC of a fixed label, so the spool and the
/// manifests never use one key for two purposes.
fn spool_key(key: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"trailwatch archive spool v1");
    mac.finalize().into_bytes().into()
}

/// The size of an outbox file holding `bytes` under `name` (see [`Spool::put_outbox`]).
fn outbox_bytes(name: &str, bytes: &[u8]) -> u64 {
    const TAG: usize = 16;
    (NONCE + TAG + 2 + name.len() + bytes.len()) as u64
}

/// A journal id that sorts by creation time.
fn journal_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:024}-{:08x}", rand::random::<u32>())
}

/// Makes a directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    pub(crate) fn rec(i: usize) -> Vec<u8> {
        format!("{{\"kind\":\"alert\",\"alert\":{{\"alert_id\":\"a{i}\"}}}}").into_bytes()
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(dir, "w1", KEY, 1 << 30).unwrap()
    }

    /// Every object in the outbox, decoded: (name, seq, record count).
    fn objects(s: &Spool) -> Vec<(String, u64, u64)> {
        s.ready()
            .unwrap()
            .iter()
            .filter(|o| o.path.extension().is_some_and(|e| e == "obj"))
            .map(|o| {
                let (name, bytes) = s.read_outgoing(o).unwrap();
                let (h, records) = object::decode(&bytes).unwrap();
                assert_eq!(h.records as usize, records.len());
                (name, h.seq, h.records)
            })
            .collect()
    }

    fn copy_dir(from: &Path, to: &Path) {
        for e in walkdir::WalkDir::new(from) {
            let e = e.unwrap();
            let dest = to.join(e.path().strip_prefix(from).unwrap());
            if e.file_type().is_dir() {
                fs::create_dir_all(&dest).unwrap();
            } else {
                fs::copy(e.path(), &dest).unwrap();
            }
        }
    }

    #[test]
    fn records_are_sealed_into_a_chain_and_encrypted_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1), rec(2)]).unwrap();
        s.append(&[rec(3)]).unwrap();
        assert_eq!(s.pending().0, 3);
        for f in fs::read_dir(dir.path()).unwrap() {
            let bytes = fs::read(f.unwrap().path()).unwrap_or_default();
            assert!(
                !bytes.windows(5).any(|w| w == b"alert"),
                "plain text in the spool"
            );
        }
        assert_eq!(
            s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap(),
            Some(1)
        );
        assert_eq!(
            s.seal_at("2026-12-01T10:05:00.000Z".into()).unwrap(),
            Some(2)
        );
        assert_eq!(
            objects(&s),
            vec![
                ("w1/2026/12/01/000000000001.jsonl.gz".into(), 1, 3),
                ("w1/2026/12/01/000000000002.jsonl.gz".into(), 2, 1),
            ],
            "the second is a heartbeat"
        );
        let first = s.read_outgoing(&s.ready().unwrap()[0]).unwrap().1;
        let second = s.read_outgoing(&s.ready().unwrap()[1]).unwrap().1;
        assert_eq!(
            object::decode(&second).unwrap().0.prev,
            Some(object::sha256_hex(&first))
        );
        assert!(s.journal_files().unwrap().is_empty());
        // A restart continues the chain.
        drop(s);
        let mut s = open(dir.path());
        assert_eq!(
            s.seal_at("2026-12-01T10:10:00.000Z".into()).unwrap(),
            Some(3)
        );
    }

    #[test]
    fn a_new_day_seals_the_signed_manifest_of_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.seal_at("2026-12-01T23:55:00.000Z".into()).unwrap();
        s.seal_at("2026-12-01T23:59:59.000Z".into()).unwrap();
        s.seal_at("2026-12-02T00:04:59.000Z".into()).unwrap();
        let ready = s.ready().unwrap();
        let names: Vec<String> = ready
            .iter()
            .map(|o| s.read_outgoing(o).unwrap().0)
            .collect();
        assert_eq!(
            names,
            [
                "w1/2026/12/01/000000000001.jsonl.gz",
                "w1/2026/12/01/000000000002.jsonl.gz",
                "w1/2026/12/01/manifest.json",
                "w1/2026/12/02/000000000003.jsonl.gz",
            ]
        );
        let m: Manifest = serde_json::from_slice(&s.read_outgoing(&ready[2]).unwrap().1).unwrap();
        assert!(m.signature_holds(KEY));
        assert_eq!(m.objects.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(m.prev, None);
        assert_eq!(s.chain().day_prev, Some(m.objects[1].sha256.clone()));
    }

    #[test]
    fn a_seal_interrupted_before_its_commit_is_undone_and_done_again() {
        let dir = tempfile::tempdir().unwrap();
        let before = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap();
        s.append(&[rec(2), rec(3)]).unwrap();
        copy_dir(dir.path(), before.path());
        s.seal_at("2026-12-01T10:05:00.000Z".into()).unwrap();
        // The crash: the object of seal 2 written, its chain state not.
        fs::copy(
            dir.path().join("outbox/000000000002.obj"),
            before.path().join("outbox/000000000002.obj"),
        )
        .unwrap();
        let mut s = open(before.path());
        assert_eq!(s.chain().seq, 1);
        assert_eq!(s.pending().0, 2, "the journal is sealed again");
        assert_eq!(objects(&s).len(), 1, "the uncommitted object is gone");
        s.seal_at("2026-12-01T10:06:00.000Z".into()).unwrap();
        assert_eq!(
            objects(&s).iter().map(|o| (o.1, o.2)).collect::<Vec<_>>(),
            [(1, 1), (2, 2)]
        );
    }

    #[test]
    fn a_journal_sealed_just_before_a_crash_is_not_sealed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        let journal = s.journal_files().unwrap().remove(0).1;
        let kept = fs::read(&journal).unwrap();
        s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap();
        // The crash: committed, the journal not yet removed.
        fs::write(&journal, kept).unwrap();
        let s = open(dir.path());
        assert_eq!(s.pending().0, 0);
        assert!(s.journal_files().unwrap().is_empty());
    }

    #[test]
    fn a_frame_cut_short_is_dropped_and_appends_continue_after_the_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        s.append(&[rec(2)]).unwrap();
        let journal = s.journal_files().unwrap().remove(0).1;
        drop(s);
        let len = fs::metadata(&journal).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let mut s = open(dir.path());
        assert_eq!(s.pending().0, 1);
        s.append(&[rec(3)]).unwrap();
        drop(s);
        let mut s = open(dir.path());
        assert_eq!(s.pending().0, 2);
        s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap();
        let (_, bytes) = s.read_outgoing(&s.ready().unwrap()[0]).unwrap();
        let ids: Vec<String> = object::decode(&bytes)
            .unwrap()
            .1
            .iter()
            .map(|r| r["alert"]["alert_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["a1", "a3"]);
    }

    #[test]
    fn a_damaged_frame_length_refuses_instead_of_dropping_acknowledged_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        s.append(&[rec(2)]).unwrap();
        let journal = s.journal_files().unwrap().remove(0).1;
        drop(s);
        let bytes = fs::read(&journal).unwrap();
        let first = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        let mut grown = bytes.clone();
        grown[..4].copy_from_slice(&(first + 40_000).to_le_bytes());
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        for damaged in [grown, huge] {
            fs::write(&journal, damaged).unwrap();
            let e = Spool::open(dir.path(), "w1", KEY, 1 << 30).err().unwrap();
            assert!(
                e.to_string()
                    .contains("the frame at byte 0 has a damaged length"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_spool_serves_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap();
        drop(s);
        let e = Spool::open(dir.path(), "w2", KEY, 1 << 30).err().unwrap();
        assert!(e.to_string().contains("chain of writer w1, not w2"), "{e}");
    }

    #[test]
    fn a_write_torn_anywhere_in_the_last_frame_keeps_the_frames_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        let journal = s.journal_files().unwrap().remove(0).1;
        let one = fs::metadata(&journal).unwrap().len() as usize;
        s.append(&[rec(2)]).unwrap();
        drop(s);
        let whole = fs::read(&journal).unwrap();
        for cut in one..whole.len() {
            fs::write(&journal, &whole[..cut]).unwrap();
            let s = open(dir.path());
            assert_eq!(s.pending().0, 1, "cut at {cut}");
        }
    }

    #[test]
    fn another_key_cannot_read_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        s.append(&[rec(1)]).unwrap();
        drop(s);
        let e = Spool::open(dir.path(), "w1", b"another key entirely", 1 << 30)
            .err()
            .unwrap();
        assert!(matches!(e, SpoolError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("does not decrypt"), "{e}");
    }

    #[test]
    fn a_full_spool_refuses_records_until_the_store_takes_objects() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), "w1", KEY, 3000).unwrap();
        let big: Vec<Vec<u8>> = (0..20).map(rec).collect();
        s.append(&big).unwrap();
        s.seal_at("2026-12-01T10:00:00.000Z".into()).unwrap();
        let mut refused = None;
        for i in 0..100 {
            if let Err(e) = s.append(&big) {
                refused = Some((i, e));
                break;
            }
        }
        let (_, e) = refused.expect("the spool filled up");
        assert!(matches!(e, SpoolError::Full { max: 3000, .. }), "{e}");
        s.seal_at("2026-12-01T10:05:00.000Z".into()).unwrap();
        for out in s.ready().unwrap() {
            s.done(&out).unwrap();
        }
        s.append(&big).unwrap();
    }

    /// Seal times every five minutes from 2026-12-01T00:00Z, crossing days.
    fn every_five_minutes() -> impl FnMut() -> String {
        let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap();
        let mut n = 0;
        move || {
            n += 1;
            (start + chrono::Duration::minutes(5 * n))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        }
    }

    /// Bytes of the outbox files of the newest object (and the manifest sealed with it).
    fn newest_bytes(s: &Spool) -> u64 {
        s.ready()
            .unwrap()
            .iter()
            .filter(|o| o.seq == s.chain().seq)
            .map(|o| fs::metadata(&o.path).unwrap().len())
            .sum()
    }

    #[test]
    fn heartbeats_never_take_the_spool_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), "w1", KEY, 8000).unwrap();
        let mut at = every_five_minutes();
        // The store is down for three days: nothing leaves the outbox.
        let sealed = (0..3 * 288)
            .filter(|_| s.seal_at(at()).unwrap().is_some())
            .count();
        assert!(s.bytes() <= 8000, "{}", s.bytes());
        assert!((5..100).contains(&sealed), "{sealed} heartbeats fit");
        assert_eq!(s.chain().seq, sealed as u64);
        // The store takes the outbox: heartbeats resume, continuing the chain.
        for out in s.ready().unwrap() {
            s.done(&out).unwrap();
        }
        assert_eq!(s.seal_at(at()).unwrap(), Some(sealed as u64 + 1));
    }

    #[test]
    fn an_outage_takes_the_spool_past_its_limit_by_one_batch_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let max = 8000;
        let mut s = Spool::open(dir.path(), "w1", KEY, max).unwrap();
        let batch: Vec<Vec<u8>> = (0..20).map(rec).collect();
        let mut at = every_five_minutes();
        while s.append(&batch).is_ok() {
            s.seal_at(at()).unwrap();
            // All but the batch just sealed was below the limit when it was accepted.
            assert!(s.bytes() - newest_bytes(&s) < max, "{}", s.bytes());
        }
        assert!(s.bytes() >= max);
        let (full, seq) = (s.bytes(), s.chain().seq);
        for _ in 0..2 * 288 {
            assert_eq!(s.seal_at(at()).unwrap(), None, "a heartbeat while full");
        }
        assert_eq!((s.bytes(), s.chain().seq), (full, seq));
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Whatever a journal, a chain state or an outbox file holds, opening the spool ends in
        /// a spool or an error naming the file, never a panic; a journal is never silently
        /// emptied of whole frames.
        #[test]
        fn any_spool_files_open_or_refuse(journal in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), chain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), which in 0u8..3) {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("outbox")).unwrap();
            match which {
                0 => fs::write(dir.path().join("journal-000000000000000000000001-00000000.log"), &journal).unwrap(),
                1 => fs::write(dir.path().join("chain.json"), &chain).unwrap(),
                _ => fs::write(dir.path().join("outbox/000000000001.obj"), &journal).unwrap(),
            }
            let _ = Spool::open(dir.path(), "w1", KEY, 1 << 30);
        }
    }
}

//! Writing generated events as CloudTrail delivers them to S3: gzip log files of
//! `{"Records":[...]}` per account, region and five minutes, under
//! `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Records one log file holds at most.
const PER_FILE: usize = 1000;

struct Batch {
    /// `YYYYMMDDTHHMMZ` of the five-minute slot.
    slot: String,
    records: Vec<Value>,
}

/// Buffers events into per-account, per-region, five-minute log files.
pub struct S3Writer {
    root: PathBuf,
    open: BTreeMap<(String, String), Batch>,
    files: u64,
}

/// `2023-11-14T22:13:20Z` → `20231114T2210Z` (the five-minute slot).
fn slot(time: &str) -> Option<String> {
    let b = time.as_bytes();
    if b.len() < 16 {
        return None;
    }
    let minute: u32 = time.get(14..16)?.parse().ok()?;
    Some(format!(
        "{}{}{}T{}{:02}Z",
        time.get(0..4)?,
        time.get(5..7)?,
        time.get(8..10)?,
        time.get(11..13)?,
        minute / 5 * 5
    ))
}

impl S3Writer {
    /// A writer under `root` (created if needed).
    pub fn new(root: PathBuf) -> Self {
        S3Writer {
            root,
            open: BTreeMap::new(),
            files: 0,
        }
    }

    /// Adds one event; files are written as their slot closes or fills.
    pub fn push(&mut self, ev: Value) -> Result<()> {
        let account = ev["recipientAccountId"]
            .as_str()
            .unwrap_or("000000000000")
            .to_string();
        let region = ev["awsRegion"].as_str().unwrap_or("us-east-1").to_string();
        let slot = slot(ev["eventTime"].as_str().unwrap_or_default())
            .unwrap_or_else(|| "19700101T0000Z".into());
        let key = (account, region);
        let full = self
            .open
            .get(&key)
            .is_some_and(|b| b.slot != slot || b.records.len() >= PER_FILE);
        if full {
            if let Some(batch) = self.open.remove(&key) {
                self.write(&key, batch)?;
            }
        }
        self.open
            .entry(key)
            .or_insert_with(|| Batch {
                slot,
                records: Vec::new(),
            })
            .records
            .push(ev);
        Ok(())
    }

    /// Writes every open file; returns how many files were written in all.
    pub fn finish(mut self) -> Result<u64> {
        for (key, batch) in std::mem::take(&mut self.open) {
            self.write(&key, batch)?;
        }
        Ok(self.files)
    }

    fn write(&mut self, (account, region): &(String, String), batch: Batch) -> Result<()> {
        let s = &batch.slot;
        let dir = self.root.join(format!(
            "AWSLogs/{account}/CloudTrail/{region}/{}/{}/{}",
            &s[0..4],
            &s[4..6],
            &s[6..8]
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.files += 1;
        let path = dir.join(format!(
            "{account}_CloudTrail_{region}_{s}_{:08x}.json.gz",
            self.files
        ));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::default(),
        );
        serde_json::to_writer(&mut gz, &serde_json::json!({ "Records": batch.records }))?;
        gz.finish()?.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(
            slot("2023-11-14T22:13:20Z").as_deref(),
            Some("20231114T2210Z")
        );
        assert_eq!(
            slot("2023-11-14T22:04:59Z").as_deref(),
            Some("20231114T2200Z")
        );
        assert_eq!(slot("bad"), None);
    }

    #[test]
    fn files_per_account_region_and_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = S3Writer::new(dir.path().to_path_buf());
        for (acct, region, time) in [
            ("1", "us-east-1", "2023-11-14T22:00:01Z"),
            ("1", "us-east-1", "2023-11-14T22:04:01Z"),
            ("1", "us-east-1", "2023-11-14T22:05:00Z"),
            ("2", "eu-west-1", "2023-11-14T22:01:00Z"),
        ] {
            w.push(serde_json::json!({"recipientAccountId": acct, "awsRegion": region, "eventTime": time})).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 3);
        let day = dir.path().join("AWSLogs/1/CloudTrail/us-east-1/2023/11/14");
        let mut names: Vec<String> = std::fs::read_dir(day)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert!(
            names[0].starts_with("1_CloudTrail_us-east-1_20231114T2200Z_"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("1_CloudTrail_us-east-1_20231114T2205Z_"),
            "{names:?}"
        );
    }
}

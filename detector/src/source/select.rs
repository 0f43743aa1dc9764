//! Which history a replay reads: an event-time range, accounts and regions.
//!
//! The selection is applied twice. Coarsely, to skip whole files (and, in S3, whole date,
//! account and region prefixes before listing deeper) by what their CloudTrail names and paths
//! say: a date folder holds files delivered that day, whose events happened that day or up to
//! an hour before (a late delivery just after midnight), and a file holds events from an hour
//! before the time in its name to five minutes after it. Exactly, to each record, so the
//! alerts are those of the selected events only.

use crate::engine::RuleSet;
use crate::event::{Event, FieldId};
use std::collections::BTreeSet;

/// How long (seconds) before its delivery time an event in a log file may have happened.
const DELIVERY: i64 = 3_600;
/// How long after the time in its name a log file's events may run (one file per 5 minutes).
const PERIOD: i64 = 300;

/// What to replay. The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Events at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Events before this time (Unix seconds).
    pub until: Option<i64>,
    /// Only these accounts (`recipientAccountId`); empty for all.
    pub accounts: BTreeSet<String>,
    /// Only these regions (`awsRegion`); empty for all.
    pub regions: BTreeSet<String>,
    /// Only these principals (a `userIdentity` ARN, user name, principal id, or the name at
    /// the end of its ARN); empty for all.
    pub principals: BTreeSet<String>,
    /// Only the accounts of shard K of N (1-based K): N replays split an archive by account,
    /// as correlation state is per account, and together give one full replay's alerts.
    pub shard: Option<(u64, u64)>,
    /// The endpoint of an S3-compatible store (else `AWS_ENDPOINT_URL` or AWS's own).
    pub s3_endpoint: Option<String>,
}

/// How a folder of a bucket is listed; see [`Selection::listing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Nothing under it is selected.
    Skip,
    /// Its files, then each sub-folder in turn.
    Descend,
    /// Every file under it at once.
    Flat,
}

/// Whether a key part is an AWS account id (twelve digits).
fn is_account(part: &str) -> bool {
    part.len() == 12 && part.bytes().all(|b| b.is_ascii_digit())
}

/// The fields a [`Selection`] reads, captured in a rule set before decoding.
#[derive(Debug, Clone, Copy)]
pub struct SelectionFields {
    time: FieldId,
    account: FieldId,
    region: FieldId,
    /// `userIdentity.arn`, `.userName`, `.principalId`.
    principal: [FieldId; 3],
}

impl SelectionFields {
    /// Makes `set` capture what a selection reads.
    pub fn register(set: &mut RuleSet) -> Self {
        let ids = set.capture(&[
            "eventTime",
            "recipientAccountId",
            "awsRegion",
            "userIdentity.arn",
            "userIdentity.userName",
            "userIdentity.principalId",
        ]);
        SelectionFields {
            time: ids[0],
            account: ids[1],
            region: ids[2],
            principal: [ids[3], ids[4], ids[5]],
        }
    }
}

impl Selection {
    /// Whether it selects everything.
    pub fn is_all(&self) -> bool {
        Selection {
            s3_endpoint: None,
            ..self.clone()
        } == Selection::default()
    }

    /// Whether record `ev` is selected. A record without a readable time is kept only when no
    /// time range is asked for.
    pub fn keeps(&self, ev: &Event<'_>, f: &SelectionFields) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = ev.get(f.time).text().and_then(crate::window::event_time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        let has = |set: &BTreeSet<String>, id: FieldId| {
            set.is_empty() || ev.get(id).text().is_some_and(|v| set.contains(v))
        };
        has(&self.accounts, f.account)
            && has(&self.regions, f.region)
            && self.in_shard(ev.get(f.account).text())
            && self.has_principal(ev, f)
    }

    /// Whether record `ev` is of a selected principal.
    fn has_principal(&self, ev: &Event<'_>, f: &SelectionFields) -> bool {
        if self.principals.is_empty() {
            return true;
        }
        let [arn, name, id] = f.principal.map(|field| ev.get(field).text());
        // An assumed role's ARN ends in its session name, a user's in the user name.
        let arn_tail = arn.and_then(|a| a.rsplit('/').next());
        [arn, name, id, arn_tail]
            .into_iter()
            .flatten()
            .any(|v| self.principals.contains(v))
    }

    /// Whether `account` belongs to this replay's shard. Records without an account go to
    /// shard 1, so the shards still add up to the whole.
    pub fn in_shard(&self, account: Option<&str>) -> bool {
        let Some((k, n)) = self.shard else {
            return true;
        };
        match account {
            Some(a) => xxhash_rust::xxh3::xxh3_64(a.as_bytes()) % n == k - 1,
            None => k == 1,
        }
    }

    /// Whether a CloudTrail file name (`<account>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_...`)
    /// may hold selected events. Names of another shape are always read.
    pub fn may_hold(&self, file_name: &str) -> bool {
        // Nothing a name says is outside a selection of everything, and reading its time is a
        // good part of walking a folder of many log files.
        let names_nothing = self.since.is_none()
            && self.until.is_none()
            && self.accounts.is_empty()
            && self.regions.is_empty()
            && self.shard.is_none();
        if names_nothing {
            return true;
        }
        let parts: Vec<&str> = file_name.split('_').collect();
        let Some(at) = parts.iter().position(|p| *p == "CloudTrail") else {
            return true;
        };
        let (Some(account), Some(region), Some(time)) = (
            at.checked_sub(1).map(|i| parts[i]),
            parts.get(at + 1),
            parts.get(at + 2),
        ) else {
            return true;
        };
        let in_set = |set: &BTreeSet<String>, v: &str| set.is_empty() || set.contains(v);
        in_set(&self.accounts, account)
            && in_set(&self.regions, region)
            && self.in_shard(Some(account))
            && file_time(time).is_none_or(|t| self.overlaps(t - DELIVERY, t + PERIOD))
    }

    /// Whether a key prefix (`.../AWSLogs/[org/]<account>/CloudTrail/<region>/YYYY/MM/DD/`,
    /// cut anywhere) may lead to selected files.
    pub fn may_lead_to(&self, prefix: &str) -> bool {
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        let account_ok = parts.iter().filter(|p| is_account(p)).all(|p| {
            (self.accounts.is_empty() || self.accounts.contains(*p)) && self.in_shard(Some(p))
        });
        let Some(at) = parts.iter().position(|p| *p == "CloudTrail") else {
            return account_ok;
        };
        let region_ok = parts
            .get(at + 1)
            .is_none_or(|r| self.regions.is_empty() || self.regions.contains(*r));
        let date: Vec<u32> = parts[(at + 2).min(parts.len())..]
            .iter()
            .take(3)
            .map_while(|p| p.parse().ok())
            .collect();
        account_ok
            && region_ok
            && date_span(&date).is_none_or(|(a, b)| self.overlaps(a - DELIVERY, b))
    }

    /// How to list folder `prefix` of a bucket: not at all when it cannot lead to selected
    /// files (another account, region or date, or another service's logs beside CloudTrail's);
    /// folder by folder while that can skip something or split the listing (down to each
    /// region, the unit listed in parallel, and down to the day when a time range is asked
    /// for); else every key below it in one paginated listing.
    pub fn listing(&self, prefix: &str) -> Listing {
        if !self.may_lead_to(prefix) {
            return Listing::Skip;
        }
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        let Some(logs) = parts.iter().rposition(|p| *p == "AWSLogs") else {
            return Listing::Descend; // above the trail's AWSLogs/ (a trail's own key prefix)
        };
        let below = &parts[logs + 1..];
        // AWSLogs/[o-org/]<account>/CloudTrail/<region>/YYYY/MM/DD/
        let Some(account) = below.iter().take(2).position(|p| is_account(p)) else {
            return Listing::Descend;
        };
        match below.get(account + 1) {
            None => Listing::Descend,
            Some(&"CloudTrail") => {
                let dates = below.len().saturating_sub(account + 3);
                let timed = self.since.is_some() || self.until.is_some();
                if below.len() < account + 3 || (timed && dates < 3) {
                    Listing::Descend
                } else {
                    Listing::Flat
                }
            }
            Some(_) => Listing::Skip,
        }
    }

    /// Whether events of [lo, hi] (Unix seconds) can be in the time range.
    fn overlaps(&self, lo: i64, hi: i64) -> bool {
        self.since.is_none_or(|s| hi >= s) && self.until.is_none_or(|u| lo < u)
    }
}

/// `YYYYMMDDTHHMMZ` as Unix seconds.
fn file_time(text: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%MZ")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// The seconds a year, a month or a day covers: [start, end].
fn date_span(date: &[u32]) -> Option<(i64, i64)> {
    use chrono::NaiveDate;
    let start = |y: u32, m: u32, d: u32| {
        NaiveDate::from_ymd_opt(y as i32, m, d)
            .and_then(|x| x.and_hms_opt(0, 0, 0))
            .map(|x| x.and_utc().timestamp())
    };
    match *date {
        [y] => Some((start(y, 1, 1)?, start(y + 1, 1, 1)? - 1)),
        [y, m] => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Some((start(y, m, 1)?, start(ny, nm, 1)? - 1))
        }
        [y, m, d] => {
            let s = start(y, m, d)?;
            Some((s, s + 86_399))
        }
        _ => None,
    }
}

/// Parses `--shard K/N` (1 <= K <= N).
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{text}' is not a shard K/N with 1 <= K <= N (e.g. 2/8)");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (u64, u64) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// Parses a `--since`/`--until` time: RFC 3339, or a date (`2026-11-01`, midnight UTC).
pub fn parse_time(text: &str) -> Result<i64, String> {
    crate::window::event_time(text)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp())
        })
        .ok_or_else(|| format!("'{text}' is not a time (2026-11-01 or 2026-11-01T10:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    fn one_day() -> Selection {
        Selection {
            since: Some(day("2023-11-14")),
            until: Some(day("2023-11-15")),
            ..Selection::default()
        }
    }

    #[test]
    fn date_prefixes_outside_the_range_are_pruned() {
        let s = one_day();
        let base = "AWSLogs/o-abc/111122223333/CloudTrail/us-east-1";
        assert!(s.may_lead_to("AWSLogs/o-abc/"));
        assert!(s.may_lead_to(&format!("{base}/")));
        assert!(s.may_lead_to(&format!("{base}/2023/")));
        assert!(s.may_lead_to(&format!("{base}/2023/11/14/")));
        assert!(
            s.may_lead_to(&format!("{base}/2023/11/15/")),
            "late deliveries of the 14th's last hour"
        );
        assert!(
            !s.may_lead_to(&format!("{base}/2023/11/13/")),
            "delivered before it began"
        );
        assert!(!s.may_lead_to(&format!("{base}/2023/11/17/")));
        assert!(!s.may_lead_to(&format!("{base}/2023/10/")));
        assert!(!s.may_lead_to(&format!("{base}/2019/")));
    }

    #[test]
    fn accounts_and_regions_prune_prefixes_and_file_names() {
        let s = Selection {
            accounts: ["111122223333".to_string()].into(),
            regions: ["eu-west-1".to_string()].into(),
            ..Selection::default()
        };
        assert!(s.may_lead_to("AWSLogs/o-abc/111122223333/"));
        assert!(!s.may_lead_to("AWSLogs/o-abc/444455556666/"));
        assert!(!s.may_lead_to("AWSLogs/111122223333/CloudTrail/us-east-1/"));
        assert!(s.may_lead_to("AWSLogs/111122223333/CloudTrail/eu-west-1/2023/"));
        assert!(s.may_hold("111122223333_CloudTrail_eu-west-1_20231114T2215Z_x.json.gz"));
        assert!(!s.may_hold("111122223333_CloudTrail_us-east-1_20231114T2215Z_x.json.gz"));
        assert!(!s.may_hold("444455556666_CloudTrail_eu-west-1_20231114T2215Z_x.json.gz"));
        assert!(s.may_hold("events.jsonl"), "other names are read");
        assert!(!one_day().may_hold("1_CloudTrail_r_20231120T0000Z_x.json.gz"));
        assert!(one_day().may_hold("1_CloudTrail_r_20231114T2215Z_x.json.gz"));
    }

    #[test]
    fn listings_descend_to_regions_and_to_days_only_when_dates_prune() {
        use Listing::*;
        let all = Selection::default();
        let region = "trail/AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/";
        assert_eq!(
            all.listing(""),
            Descend,
            "the bucket's top, to find AWSLogs/"
        );
        assert_eq!(all.listing("trail/"), Descend, "a trail's own key prefix");
        assert_eq!(all.listing("trail/AWSLogs/"), Descend);
        assert_eq!(all.listing("trail/AWSLogs/o-abc/"), Descend);
        assert_eq!(all.listing("AWSLogs/111122223333/"), Descend);
        assert_eq!(all.listing("AWSLogs/111122223333/CloudTrail/"), Descend);
        assert_eq!(all.listing(region), Flat, "nothing to prune: list it whole");
        assert_eq!(all.listing("AWSLogs/111122223333/vpcflowlogs/"), Skip);
        assert_eq!(all.listing("AWSLogs/111122223333/CloudTrail-Digest/"), Skip);
        assert_eq!(one_day().listing(region), Descend);
        assert_eq!(one_day().listing(&format!("{region}2023/11/")), Descend);
        assert_eq!(one_day().listing(&format!("{region}2023/11/14/")), Flat);
        assert_eq!(one_day().listing(&format!("{region}2023/10/")), Skip);
    }

    #[test]
    fn shards_split_accounts_without_overlap() {
        let accounts: Vec<String> = (0..200).map(|i| format!("{:012}", 100_000 + i)).collect();
        let mut owners = vec![0; accounts.len()];
        for k in 1..=4 {
            let s = Selection {
                shard: Some((k, 4)),
                ..Selection::default()
            };
            for (i, a) in accounts.iter().enumerate() {
                if s.in_shard(Some(a)) {
                    owners[i] += 1;
                }
            }
            assert!(s.in_shard(None) == (k == 1));
        }
        assert!(
            owners.iter().all(|&n| n == 1),
            "each account in exactly one shard"
        );
        assert_eq!(parse_shard("2/8"), Ok((2, 8)));
        assert!(
            parse_shard("0/8").is_err() && parse_shard("9/8").is_err() && parse_shard("x").is_err()
        );
    }

    #[test]
    fn times_parse_as_dates_or_rfc3339() {
        assert_eq!(day("2023-11-14"), 1_699_920_000);
        assert_eq!(parse_time("2023-11-14T00:00:10Z").unwrap(), 1_699_920_010);
        assert!(parse_time("yesterday").is_err());
    }

    proptest::proptest! {
        /// Key prefixes an attacker with write access to the bucket could shape: any mix of
        /// layout words, accounts, dates and junk. Listing never panics, and never descends into
        /// or flat-lists what the selection says cannot lead to selected files.
        #[test]
        fn listing_any_prefix_is_total_and_agrees_with_pruning(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("AWSLogs".to_string()),
                    proptest::strategy::Just("CloudTrail".to_string()),
                    proptest::strategy::Just("111122223333".to_string()),
                    proptest::strategy::Just("o-abc".to_string()),
                    proptest::strategy::Just("us-east-1".to_string()),
                    proptest::strategy::Just("2023".to_string()),
                    proptest::strategy::Just("11".to_string()),
                    proptest::strategy::Just("14".to_string()),
                    proptest::strategy::Just(String::new()),
                    "\\PC{0,12}",
                ],
                0..12,
            ),
            trailing in proptest::bool::ANY,
        ) {
            let mut prefix = parts.join("/");
            if trailing {
                prefix.push('/');
            }
            for s in [Selection::default(), one_day()] {
                let l = s.listing(&prefix);
                proptest::prop_assert!(l == Listing::Skip || s.may_lead_to(&prefix), "{prefix:?}");
            }
        }
    }
}

//! `trailwatch replay s3://...` against moto's S3 (started by scripts/test.sh, which sets
//! MOTO_URL): the CloudTrail files of an organization trail, read where they live, give exactly
//! the alerts a replay of the same files on disk gives; digests and other objects are skipped.

mod live;

use aws_sdk_s3::primitives::ByteStream;
use live::*;
use std::path::Path;
use trailwatch_e2e::{load_test, root, trailwatch_aws};

/// Every file under `dir`, as (key relative to `dir`, path).
fn files(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((key, p));
            }
        }
    }
    out
}

/// Creates `bucket` and uploads the trail under `local`/AWSLogs as `prefix`/...; returns the
/// uploaded (key below AWSLogs, local path) pairs.
async fn upload_trail(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    local: &Path,
    prefix: &str,
) -> Vec<(String, std::path::PathBuf)> {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let uploaded = files(&local.join("AWSLogs"));
    for (key, path) in &uploaded {
        s3.put_object()
            .bucket(bucket)
            .key(format!("{prefix}/{key}"))
            .body(ByteStream::from_path(path).await.unwrap())
            .send()
            .await
            .unwrap();
    }
    uploaded
}

/// `load-test generate` with `args` into `out`; it must succeed.
fn generate(args: &[&str], out: &Path) {
    let mut all = vec!["generate"];
    all.extend_from_slice(args);
    all.extend(["--output", out.to_str().unwrap()]);
    let done = load_test(&all);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// `trailwatch replay` of `input` with the shipped rules; (stdout, stderr).
fn replay(input: &str, url: &str, dir: &Path) -> (String, String) {
    replay_with(input, &[], url, dir)
}

/// [`replay`] with more arguments.
fn replay_with(input: &str, args: &[&str], url: &str, dir: &Path) -> (String, String) {
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let out = trailwatch_aws(Some(url))
        .args(["replay", "--rules"])
        .arg(root().join("rules"))
        .arg("--hmac-key-file")
        .arg(dir.join("hmac.key"))
        .args(args)
        .arg(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {input}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_from_s3_gives_the_alerts_of_the_same_files_on_disk() {
    let Some(url) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("trail");
    generate(
        &["--events", "3000", "--seed", "21", "--format", "s3"],
        &local,
    );
    let s3 = s3_client(&url);
    let bucket = format!("trail-{}", std::process::id());
    // An organization trail: AWSLogs/<org id>/<account>/CloudTrail/...
    let uploaded = upload_trail(&s3, &bucket, &local, "AWSLogs/o-abc123").await;
    assert!(uploaded.len() > 100, "{}", uploaded.len());
    // What replay must skip: digests (not events), other services' logs beside CloudTrail's
    // (never even listed: they are not JSON here, and reading them would be an error) and
    // other objects.
    for key in [
        "AWSLogs/o-abc123/111122223333/CloudTrail-Digest/us-east-1/2023/11/14/111122223333_CloudTrail-Digest_us-east-1_x_20231114T2300Z.json.gz",
        "AWSLogs/o-abc123/111122223333/vpcflowlogs/us-east-1/2023/11/14/flows.json",
        "AWSLogs/o-abc123/README.txt",
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from_static(b"{\"not\": events"))
            .send()
            .await
            .unwrap();
    }

    let (from_disk, _) = replay(local.to_str().unwrap(), &url, dir.path());
    let location = format!("s3://{bucket}/AWSLogs/o-abc123/");
    let (from_s3, notes) = replay(&location, &url, dir.path());
    assert!(from_disk.lines().count() > 20, "{from_disk}");
    assert_eq!(from_s3, from_disk, "{notes}");
    assert!(!notes.contains("Digest"), "{notes}");
    assert!(!notes.contains("vpcflowlogs"), "{notes}");

    // A selection: one account, from half an hour in. S3 (pruned listing) and disk agree, and
    // only that account's events alert.
    let all = trailwatch_e2e::json_lines(from_disk.as_bytes());
    let last = all
        .iter()
        .rev()
        .find(|a| a["events"][0]["account"].is_string())
        .unwrap();
    let account = last["events"][0]["account"].as_str().unwrap().to_string();
    let since = last["first_seen"].as_str().unwrap().to_string();
    let args = ["--account", &account, "--since", &since];
    let (some_disk, _) = replay_with(local.to_str().unwrap(), &args, &url, dir.path());
    let (some_s3, notes) = replay_with(&location, &args, &url, dir.path());
    assert_eq!(some_s3, some_disk, "{notes}");
    assert!(notes.contains("outside the selection"), "{notes}");
    let alerts = trailwatch_e2e::json_lines(some_s3.as_bytes());
    assert!(!alerts.is_empty() && alerts.len() < from_disk.lines().count());
    for a in &alerts {
        let group = a["group_key"].as_str().unwrap_or_default();
        assert!(group.contains(&account), "{a}");
    }

    // Three shards by account (rate caps off: they count over one replay's stream) add up to
    // one full replay, no alert twice.
    let uncapped = ["--rate-per-rule", "0", "--rate-global", "0"];
    let (full, _) = replay_with(&location, &uncapped, &url, dir.path());
    let mut union: Vec<String> = Vec::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let mut args = uncapped.to_vec();
        args.extend(["--shard", &shard]);
        let (part, _) = replay_with(&location, &args, &url, dir.path());
        assert!(part.lines().count() > 0, "shard {shard} is empty");
        union.extend(part.lines().map(String::from));
    }
    let mut full: Vec<String> = full.lines().map(String::from).collect();
    full.sort();
    union.sort();
    assert_eq!(union, full);

    // From an alert to its records in the bucket: `show` reads only the log files around the
    // alerts' times and prints each record its lineage names.
    let alerts_file = dir.path().join("alerts.jsonl");
    std::fs::write(&alerts_file, &from_s3).unwrap();
    let rollup = trailwatch_e2e::json_lines(from_s3.as_bytes())
        .into_iter()
        .find(|a| a["kind"] == "rollup")
        .expect("a roll-up");
    let out = trailwatch_aws(Some(&url))
        .args(["show", "--allow-phi", "--alerts"])
        .arg(&alerts_file)
        .args([
            "--alert-id",
            rollup["alert_id"].as_str().unwrap(),
            &location,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut shown: Vec<String> = trailwatch_e2e::json_lines(&out.stdout)
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_string())
        .collect();
    let mut named: Vec<String> = rollup["lineage"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventID"].as_str().unwrap().to_string())
        .collect();
    shown.sort();
    named.sort();
    assert!(named.len() >= 2, "{rollup}");
    assert_eq!(shown, named, "{stderr}");

    // A location that does not exist is an error that names it, not an empty replay (the
    // endpoint given by flag this time).
    let out = trailwatch_aws(None)
        .args(["replay", "--rules"])
        .arg(root().join("rules"))
        .args(["--s3-endpoint", &url])
        .arg("s3://no-such-bucket-here/AWSLogs/")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("s3://no-such-bucket-here/AWSLogs/"),
        "{stderr}"
    );
}

/// Four days of an organization trail behind a proxy that records and breaks requests: a
/// one-day selection lists and gets nothing of the day before or two days after (the day after
/// is listed: it can hold late deliveries); a download that fails once is retried; one that
/// always fails is reported by its key and skipped, and everything else is replayed.
#[tokio::test(flavor = "multi_thread")]
async fn s3_replay_requests_only_the_days_asked_and_survives_broken_downloads() {
    let Some(url) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("trail");
    // 2023-11-15 to 2023-11-18, from 01:00 each day.
    for day in 0..4 {
        let start = (1_700_010_000 + day * 86_400).to_string();
        let seed = (30 + day).to_string();
        generate(
            &[
                "--events", "600", "--seed", &seed, "--start", &start, "--format", "s3",
            ],
            &local,
        );
    }
    let s3 = s3_client(&url);
    let bucket = format!("days-{}", std::process::id());
    let uploaded = upload_trail(&s3, &bucket, &local, "AWSLogs/o-org").await;
    let (proxy, recorder) = recording_proxy(url.trim_start_matches("http://").to_string()).await;
    let location = format!("s3://{bucket}/AWSLogs/o-org/");
    let day = [
        "--since",
        "2023-11-16",
        "--until",
        "2023-11-17",
        "--s3-endpoint",
        &proxy,
    ];
    let (from_s3, notes) = replay_with(&location, &day, &url, dir.path());
    let (from_disk, _) = replay_with(local.to_str().unwrap(), &day[..4], &url, dir.path());
    assert_eq!(from_s3, from_disk, "{notes}");
    assert!(from_s3.lines().count() > 5, "{from_s3}");
    let touches = |d: &str| {
        let encoded = d.replace('/', "%2F");
        let mut r = recorder.matching(d);
        r.extend(recorder.matching(&encoded));
        r
    };
    assert!(
        touches("2023/11/15/").is_empty(),
        "{:?}",
        touches("2023/11/15/")
    );
    assert!(
        touches("2023/11/18/").is_empty(),
        "{:?}",
        touches("2023/11/18/")
    );
    assert!(!touches("2023/11/16/").is_empty());
    let gets_17: Vec<String> = touches("2023/11/17/")
        .into_iter()
        .filter(|r| r.starts_with("GET") && !r.contains("list-type"))
        .collect();
    assert!(
        gets_17.is_empty(),
        "no file of the 17th can hold the 16th's events: {gets_17:?}"
    );

    // Break two of the 16th's files: one fails once, one always.
    let of_16: Vec<&String> = uploaded
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("/2023/11/16/"))
        .collect();
    let name = |k: &str| k.rsplit('/').next().unwrap().to_string();
    let (flaky, broken) = (name(of_16[0]), name(of_16[1]));
    recorder.fail_once.lock().unwrap().push(flaky.clone());
    recorder.fail_always.lock().unwrap().push(broken.clone());
    recorder.requests.lock().unwrap().clear();
    let (from_s3, notes) = replay_with(&location, &day, &url, dir.path());
    assert_eq!(recorder.matching(&flaky).len(), 2, "retried once");
    assert!(
        recorder.matching(&broken).len() >= 2,
        "retried before giving up"
    );
    assert!(
        notes.contains(&broken),
        "the broken object is named: {notes}"
    );
    std::fs::remove_file(
        &uploaded
            .iter()
            .find(|(k, _)| k.ends_with(&broken))
            .unwrap()
            .1,
    )
    .unwrap();
    let (from_disk, _) = replay_with(local.to_str().unwrap(), &day[..4], &url, dir.path());
    assert_eq!(
        from_s3, from_disk,
        "everything but the broken object: {notes}"
    );
}

/// An exported archive of 9,000 events in one 10 MB object is read from the network as it is
/// consumed, not held whole; when its download breaks off half way it resumes from where it
/// stopped (a ranged request), and the alerts equal those of the same file on disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_object_is_streamed_and_resumes_where_its_download_broke() {
    let Some(url) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("export.jsonl");
    generate(&["--events", "9000", "--seed", "23"], &local);
    let size = std::fs::metadata(&local).unwrap().len();
    assert!(size > 9 << 20, "larger than what is held whole: {size}");
    let s3 = s3_client(&url);
    let bucket = format!("export-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("exports/export.jsonl")
        .body(ByteStream::from_path(&local).await.unwrap())
        .send()
        .await
        .unwrap();
    let (proxy, recorder) = recording_proxy(url.trim_start_matches("http://").to_string()).await;
    recorder
        .cut_once
        .lock()
        .unwrap()
        .push("export.jsonl".to_string());
    let location = format!("s3://{bucket}/exports/");
    let (from_s3, notes) = replay_with(&location, &["--s3-endpoint", &proxy], &url, dir.path());
    let (from_disk, _) = replay(local.to_str().unwrap(), &url, dir.path());
    assert_eq!(from_s3, from_disk, "{notes}");
    assert!(from_s3.lines().count() > 20, "{from_s3}");
    let gets = recorder.matching("export.jsonl");
    assert_eq!(gets.len(), 2, "one download and one resumption: {gets:?}");
    assert!(recorder.cut_once.lock().unwrap().is_empty(), "it was cut");
}

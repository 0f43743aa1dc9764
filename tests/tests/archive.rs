//! The audit archive of `trailwatch run` against moto's S3 (started by scripts/test.sh, which
//! sets MOTO_URL): every alert and every batch archived under Object Lock with SSE-KMS, a
//! chain that `verify-archive` finds intact, an S3 outage that loses nothing, and tampering
//! (a deleted, an altered and two swapped objects) named object by object.

mod live;

use aws_sdk_s3::primitives::ByteStream;
use live::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailwatch::sink::archive::object;
use trailwatch_e2e::trailwatch_aws;

const KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/0f4e3c2a-archive-test";
const PREFIX: &str = "audit";

/// Every object of the archive: key below the prefix -> (header, records).
async fn objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> BTreeMap<String, (object::Header, Vec<Value>)> {
    let mut out = BTreeMap::new();
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{PREFIX}/"))
        .send()
        .await
        .unwrap();
    for o in listed.contents() {
        let key = o.key().unwrap();
        if !key.ends_with(".jsonl.gz") {
            continue;
        }
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        let decoded = object::decode(&bytes).unwrap();
        out.insert(
            key.trim_start_matches(&format!("{PREFIX}/")).to_string(),
            decoded,
        );
    }
    out
}

/// Alert ids in the archive, with how often each is there.
fn archived_alerts(
    objects: &BTreeMap<String, (object::Header, Vec<Value>)>,
) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for (_, records) in objects.values() {
        for r in records.iter().filter(|r| r["kind"] == "alert") {
            *ids.entry(r["alert"]["alert_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    ids
}

/// StopLogging by `user` in us-east-1 (two rules alert on it).
fn stop_logging(id: &str, user: &str) -> String {
    envelope(
        id,
        serde_json::json!({"eventID": id, "eventTime": "2026-11-01T10:00:00Z", "eventSource": "cloudtrail.amazonaws.com",
               "eventName": "StopLogging", "recipientAccountId": "111122223333", "awsRegion": "us-east-1",
               "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/{user}")}}),
    )
}

fn verify(url: &str, key: &std::path::Path, bucket: &str) -> (i32, String) {
    let out = trailwatch_aws(Some(url))
        .args([
            "verify-archive",
            "--key-file",
            key.to_str().unwrap(),
            "--s3-endpoint",
            url,
        ])
        .arg(format!("s3://{bucket}/{PREFIX}"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_and_batches_are_archived_locked_chained_and_kept_through_an_s3_outage() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let s3 = s3_client(&url);
    let tag = format!("archive-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let bucket = tag.clone();
    s3.create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("archive.key");
    std::fs::write(&key, "archive-secret-0123456789abcdef\n").unwrap();
    let archive = format!(
        "key_file = \"archive.key\"\nspool = \"spool\"\nbucket = {bucket:?}\nprefix = {PREFIX:?}\nendpoint_url = {proxy:?}\nkms_key_id = {KMS_KEY:?}\nretention_days = 30\nwriter = \"node-a\"\nseal_every = \"1s\"\n"
    );
    let extra = Extra {
        archive: &archive,
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);

    // Before the outage: two events of two alerts each (two rules, a user each).
    for i in 0..2 {
        send(
            &sqs,
            &q.events,
            stop_logging(&format!("ev-a{i}"), &format!("a{i}")),
        )
        .await;
    }
    let mut published: Vec<String> = receive(&sqs, &q.alerts, 4).await;
    wait_metric(&metrics, "trailwatch_archive_objects_stored_total", 3).await;

    // S3 down: alerts still go out on SNS, the archive spools them.
    up.store(false, Ordering::SeqCst);
    let failures = wait_metric(&metrics, "trailwatch_archive_store_failures_total", 1).await;
    assert!(failures >= 1);
    for i in 0..3 {
        send(
            &sqs,
            &q.events,
            stop_logging(&format!("ev-b{i}"), &format!("b{i}")),
        )
        .await;
    }
    published.extend(receive(&sqs, &q.alerts, 6).await);
    assert_eq!(published.len(), 10, "{published:?}");
    let spooled = metric(&metrics, "trailwatch_archive_spool_bytes");
    assert!(spooled > 0, "the spool holds what S3 did not take");
    let sealed_down = metric(&metrics, "trailwatch_archive_objects_sealed_total");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        metric(&metrics, "trailwatch_archive_objects_sealed_total") > sealed_down,
        "sealing goes on while S3 is down"
    );

    // S3 back: the spool drains; a stop seals and puts the rest.
    up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&metrics, "trailwatch_archive_spool_bytes") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        Instant::now() < deadline,
        "the spool drains once S3 is back"
    );
    stop_service(service);

    let objects = objects(&s3, &bucket).await;
    let ids = archived_alerts(&objects);
    for body in &published {
        let alert: Value = serde_json::from_str(body).unwrap();
        let id = alert["alert_id"].as_str().unwrap();
        assert_eq!(ids.get(id), Some(&1), "alert {id} archived once: {ids:?}");
    }
    assert_eq!(
        ids.len(),
        published.len(),
        "nothing archived that was not published: {ids:?}"
    );
    // Every message is in a batch record, with the rule set in force.
    let records: Vec<&Value> = objects.values().flat_map(|(_, r)| r).collect();
    let batched: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "batch")
        .flat_map(|r| {
            r["range"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
        })
        .collect();
    assert_eq!(batched.len(), 5, "{batched:?}");
    let events: u64 = records
        .iter()
        .filter(|r| r["kind"] == "batch")
        .map(|r| r["events"].as_u64().unwrap())
        .sum();
    assert_eq!(events, 5);
    let coverage: u64 = records
        .iter()
        .filter(|r| r["kind"] == "batch")
        .flat_map(|r| r["coverage"].as_array().unwrap())
        .filter(|c| c["account"] == "111122223333" && c["region"] == "us-east-1")
        .map(|c| c["events"].as_u64().unwrap())
        .sum();
    assert_eq!(coverage, 5, "events by account and region");
    let rules: Vec<&&Value> = records.iter().filter(|r| r["kind"] == "rules").collect();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["rules"]["hash"].as_str().unwrap().len(), 64);
    assert!(records.iter().any(|r| r["kind"] == "stop"));
    // The chain: 1, 2, 3... each naming the one before.
    let seqs: Vec<u64> = objects.values().map(|(h, _)| h.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() >= 6, "objects every second: {}", seqs.len());

    // Locked and encrypted, each object.
    let (first, _) = objects.iter().next().unwrap();
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(format!("{PREFIX}/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode().map(|m| m.as_str()),
        Some("COMPLIANCE")
    );
    let until = head.object_lock_retain_until_date().unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (until - now - 30 * 86_400).abs() < 3600,
        "30 days of retention: {until} vs {now}"
    );
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some(KMS_KEY));

    let (code, text) = verify(&url, &key, &bucket);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(": intact"), "{text}");

    // Tampering: one object deleted (a delete marker over its locked version), one altered
    // (a new version), two swapped.
    let names: Vec<&String> = objects.keys().collect();
    let (deleted, altered, a, b) = (names[1], names[2], names[3], names[4]);
    s3.delete_object()
        .bucket(&bucket)
        .key(format!("{PREFIX}/{deleted}"))
        .send()
        .await
        .unwrap();
    let (header, _) = &objects[altered];
    let forged = object::encode(header, &[]);
    let put = |key: &str, body: Vec<u8>| {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("{PREFIX}/{key}"))
            .body(ByteStream::from(body))
            .send()
    };
    put(altered, forged).await.unwrap();
    let get = |key: &str| {
        s3.get_object()
            .bucket(&bucket)
            .key(format!("{PREFIX}/{key}"))
            .send()
    };
    let body = |key: &str| {
        let got = get(key);
        async move {
            got.await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
                .to_vec()
        }
    };
    let (x, y) = (body(a).await, body(b).await);
    put(a, y).await.unwrap();
    put(b, x).await.unwrap();
    let (code, text) = verify(&url, &key, &bucket);
    assert_eq!(code, 1, "{text}");
    for (kind, name) in [
        ("MISSING", deleted),
        ("ALTERED", altered),
        ("REORDERED", a),
        ("REORDERED", b),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{kind} {name}:"))),
            "{kind} {name}:\n{text}"
        );
    }
}

/// Killed (SIGKILL) with records in the journal and nothing sealed: the restart seals them;
/// every alert is in the local archive once and the chain is intact. The archive names no
/// store, so it is the default: `archive` beside `windows.state_file` (`state.snap`).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_service_loses_no_archived_record() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("archive-kill-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("archive.key"),
        "archive-secret-0123456789abcdef\n",
    )
    .unwrap();
    let archive =
        "key_file = \"archive.key\"\nspool = \"spool\"\nwriter = \"node-k\"\nseal_every = \"1h\"\n";
    let extra = || Extra {
        archive,
        ..Extra::default()
    };
    let (mut service, metrics) = start_with(&url, &q, dir.path(), extra());
    for i in 0..3 {
        send(
            &sqs,
            &q.events,
            stop_logging(&format!("ev-k{i}"), &format!("k{i}")),
        )
        .await;
    }
    let mut published = receive(&sqs, &q.alerts, 6).await;
    assert_eq!(published.len(), 6);
    wait_metric(&metrics, "trailwatch_messages_deleted_total", 3).await;
    assert_eq!(
        metric(&metrics, "trailwatch_archive_objects_sealed_total"),
        0
    );
    service.0.kill().unwrap();
    service.0.wait().unwrap();

    let (service, metrics) = start_with(&url, &q, dir.path(), extra());
    send(&sqs, &q.events, stop_logging("ev-k9", "k9")).await;
    published.extend(receive(&sqs, &q.alerts, 2).await);
    wait_metric(&metrics, "trailwatch_messages_deleted_total", 1).await;
    stop_service(service);

    let out = trailwatch_aws(None)
        .args([
            "verify-archive",
            "--config",
            dir.path().join("trailwatch.toml").to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["findings"], serde_json::json!([]));
    let mut ids = BTreeMap::<String, usize>::new();
    let mut starts = 0;
    for (_, records) in archive_objects(&dir.path().join("archive")).await {
        for r in &records {
            if r["kind"] == "alert" {
                *ids.entry(r["alert"]["alert_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            starts += usize::from(r["kind"] == "rules");
        }
    }
    assert_eq!(starts, 2, "each start records its rules");
    // The report over the archive: every archived alert, the verdict, the service's uptime.
    let out = dir.path().join("report");
    let o = trailwatch_aws(None)
        .args([
            "report",
            "--config",
            dir.path().join("trailwatch.toml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = std::fs::read_to_string(out.join("alerts.csv")).unwrap();
    for id in ids.keys() {
        assert!(listed.contains(id.as_str()), "{id} in the report");
    }
    assert_eq!(listed.lines().count(), 1 + ids.len());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("Archive integrity: <span class=\"verdict ok\">intact"),
        "verdict"
    );
    let service = std::fs::read_to_string(out.join("service.csv")).unwrap();
    assert!(
        service.starts_with("writer,objects") && service.contains("\nnode-k,"),
        "{service}"
    );
    assert_eq!(ids.len(), 8, "{ids:?}");
    for body in &published {
        let id = serde_json::from_str::<Value>(body).unwrap()["alert_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(ids.get(&id), Some(&1), "{id} archived once");
    }
}

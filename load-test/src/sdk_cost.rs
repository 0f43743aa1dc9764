//! `load-test sqs-cost`: what one SQS request costs this process in CPU through the AWS SDK,
//! the floor under the live SQS path's CPU per event (docs/PERFORMANCE.md, issue 16 target 4).
//!
//! Process CPU time (every thread) is read around each kind of request, on a runtime of the
//! flavour asked for, against whatever endpoint the SDK environment names (moto's server here).

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use std::time::Instant;

/// CPU seconds this process has used, all threads.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Per-request figures of one kind of request, µs.
struct Cost {
    cpu: f64,
    wall: f64,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} | {:.1}", self.cpu, self.wall)
    }
}

/// Runs `requests` rounds of each request kind and prints a markdown table.
pub fn run(requests: u32, current_thread: bool) -> Result<()> {
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let rows = runtime.block_on(measure(requests.max(1)))?;
    let flavour = if current_thread {
        "current-thread"
    } else {
        "multi-thread"
    };
    println!("| request ({flavour} runtime) | CPU µs a request | wall µs a request |");
    println!("|---|---|---|");
    for (what, cost) in rows {
        println!("| {what} | {cost} |");
    }
    Ok(())
}

async fn measure(n: u32) -> Result<Vec<(&'static str, Cost)>> {
    let aws = aws_config::load_from_env().await;
    let client = aws_sdk_sqs::Client::new(&aws);
    let url = client
        .create_queue()
        .queue_name(format!("trailwatch-sqs-cost-{}", std::process::id()))
        .send()
        .await?
        .queue_url
        .context("queue url")?;
    // The first requests open the connection and resolve credentials: not counted.
    for _ in 0..3 {
        receive(&client, &url).await?;
    }
    let started = Stamp::now();
    for _ in 0..n {
        receive(&client, &url).await?;
    }
    let empty = started.cost(n);
    let body = "x".repeat(1200);
    let (mut send, mut recv, mut delete) = (Cost::zero(), Cost::zero(), Cost::zero());
    for _ in 0..n {
        let entries = (0..10)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(&body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let started = Stamp::now();
        let request = client.send_message_batch().queue_url(&url);
        request.set_entries(Some(entries)).send().await?;
        send.add(started.cost(1));
        let started = Stamp::now();
        let receipts = receive(&client, &url).await?;
        recv.add(started.cost(1));
        if receipts.is_empty() {
            anyhow::bail!("a receive right after sending ten messages returned none");
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(receipt)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let started = Stamp::now();
        let request = client.delete_message_batch().queue_url(&url);
        request.set_entries(Some(entries)).send().await?;
        delete.add(started.cost(1));
    }
    client.delete_queue().queue_url(&url).send().await?;
    let per = |c: Cost| Cost {
        cpu: c.cpu / n as f64,
        wall: c.wall / n as f64,
    };
    Ok(vec![
        ("ReceiveMessage, empty queue, no wait", empty),
        ("SendMessageBatch, 10 messages of 1.2 KB", per(send)),
        ("ReceiveMessage, up to 10 messages", per(recv)),
        ("DeleteMessageBatch, the messages received", per(delete)),
    ])
}

impl Cost {
    fn zero() -> Self {
        Cost {
            cpu: 0.0,
            wall: 0.0,
        }
    }

    fn add(&mut self, other: Cost) {
        self.cpu += other.cpu;
        self.wall += other.wall;
    }
}

/// CPU and wall clock at a moment.
struct Stamp {
    cpu: f64,
    wall: Instant,
}

impl Stamp {
    fn now() -> Self {
        Stamp {
            cpu: cpu_seconds(),
            wall: Instant::now(),
        }
    }

    /// The mean cost of `n` requests made since this moment.
    fn cost(&self, n: u32) -> Cost {
        Cost {
            cpu: (cpu_seconds() - self.cpu) * 1e6 / n as f64,
            wall: self.wall.elapsed().as_secs_f64() * 1e6 / n as f64,
        }
    }
}

/// One receive of up to ten messages without waiting; their receipt handles.
async fn receive(client: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<String>> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await?;
    Ok(out
        .messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.receipt_handle)
        .collect())
}

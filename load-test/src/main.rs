//! `load-test`: generate realistic CloudTrail traffic for trailwatch benchmarks and tests.

mod check;
mod files;
mod generate;
mod kafka;
mod pause;
mod readback;
mod scenario;
mod sdk_cost;
mod sqs;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use generate::Generator;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "load-test",
    about = "CloudTrail traffic generator for trailwatch (seeded, reproducible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write generated events to a file.
    Generate {
        /// How many events.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Random seed: the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First event time, Unix seconds.
        #[arg(long, default_value_t = 1_700_000_000)]
        start: i64,
        /// Layout of the file.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Gzip the output.
        #[arg(long)]
        gzip: bool,
        /// Inject the attack scenarios and write the alerts they must raise to FILE (JSON lines).
        #[arg(long, value_name = "FILE")]
        truth: Option<PathBuf>,
        /// Output file (`-` for stdout).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Failed console sign-ins for COUNT distinct users within 50 minutes (correlation memory bench).
    DistinctKeys {
        /// How many distinct users (group keys).
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Write a small geolocation database placing the scenario addresses (for --geoip).
    Geoip {
        /// Output .mmdb file.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Compare the alerts of a run with the ground truth of `generate --truth`.
    Check {
        /// The ground truth (JSON lines).
        #[arg(long)]
        truth: PathBuf,
        /// trailwatch's alerts (JSON lines, `--emit alerts`).
        #[arg(long)]
        alerts: PathBuf,
        /// The rule pack the truth refers to.
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// The run had an IP geolocation database, so geo expectations count.
        #[arg(long)]
        geoip: bool,
    },
    /// Create an events queue, an alerts topic and a queue subscribed to it (endpoint and
    /// credentials from the AWS SDK environment); prints their names as JSON.
    SqsSetup {
        /// Name prefix.
        #[arg(long, default_value = "trailwatch-load")]
        name: String,
    },
    /// Send generated events through SQS to a running trailwatch and report throughput and the
    /// latency trailwatch adds (from its /metrics).
    SqsRun {
        /// The events queue URL.
        #[arg(long)]
        events_queue: String,
        /// The queue subscribed to the alerts topic.
        #[arg(long)]
        alerts_queue: String,
        /// trailwatch's metrics address (host:port).
        #[arg(long)]
        metrics: String,
        /// How many events.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Inject the attack scenarios and check the alerts read back against them (the rule
        /// directory the running trailwatch uses).
        #[arg(long, value_name = "RULES")]
        check_rules: Option<PathBuf>,
        /// With --check-rules: after the event that completes each expected correlation, send
        /// nothing for SECS seconds (a quiet stream), then go on with event times moved on by
        /// the pause.
        #[arg(long, value_name = "SECS", requires = "check_rules")]
        pause_after_completion: Option<u64>,
        /// With --check-rules: send the traffic in stretches of at most SECS seconds of event
        /// time, each once the one before is processed (0: all at once). The scenarios crowd
        /// hours of event time into seconds of wall time, so the reordering of several pollers
        /// would otherwise make events later than trailwatch's lateness; keep SECS below it
        /// (pauses after completions move later events on, and add to a stretch's span).
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 1200,
            requires = "check_rules"
        )]
        stretch: i64,
        /// The running trailwatch has a geolocation database placing the scenario addresses
        /// (`load-test geoip`), so geo expectations count.
        #[arg(long)]
        geoip: bool,
    },
    /// What one SQS request costs this process in CPU through the AWS SDK (endpoint and
    /// credentials from the SDK environment): empty receives, then sends, receives and deletes
    /// of ten messages; prints a markdown table.
    SqsCost {
        /// Requests of each kind.
        #[arg(long, default_value_t = 300)]
        requests: u32,
        /// On a current-thread runtime instead of a multi-thread one.
        #[arg(long)]
        current_thread: bool,
    },
    /// Produce the events of a JSON-lines file (from `generate`) to a Kafka topic, keyed by
    /// account, at a target rate; creates the topic first if it is missing.
    KafkaProduce {
        /// `bootstrap.servers`.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// The events topic.
        #[arg(long)]
        topic: String,
        /// Partitions of the topic, if it has to be created.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Read trailwatch's alerts back from this queue (subscribed to its SNS topic) and report
        /// the event-to-alert latency; AWS settings come from the environment.
        #[arg(long, value_name = "URL")]
        alerts_queue: Option<String>,
        /// With --alerts-queue: the ground truth of `generate --truth` to check the alerts
        /// against, and the rule directory the running trailwatch uses.
        #[arg(long, value_name = "FILE", requires = "alerts_queue")]
        truth: Option<PathBuf>,
        /// The rules for --truth.
        #[arg(long, value_name = "DIR", default_value = "rules")]
        rules: PathBuf,
        /// With --alerts-queue: stop reading after this many seconds without a new alert.
        #[arg(long, default_value_t = 10)]
        quiet_seconds: u64,
        /// With --truth: after the event that completes each expected correlation, produce
        /// nothing for SECS seconds (a quiet partition), then go on with event times moved on by
        /// the pause.
        #[arg(long, value_name = "SECS", requires = "truth")]
        pause_after_completion: Option<u64>,
        /// The running trailwatch has a geolocation database placing the scenario addresses
        /// (`load-test geoip`), so geo expectations count.
        #[arg(long)]
        geoip: bool,
        /// The events (one JSON record per line).
        input: PathBuf,
    },
    /// Baseline for benchmarks: parse every line of a JSON-lines file into `serde_json::Value`.
    ParseBaseline {
        /// The JSON-lines file.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One bare record per line.
    Jsonl,
    /// One CloudTrail log file: `{"Records":[...]}`.
    Records,
    /// One EventBridge "AWS API Call via CloudTrail" envelope per line.
    Eventbridge,
    /// CloudTrail's S3 layout under the output directory: gzip log files per account, region and
    /// five minutes in `AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`.
    S3,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Generate {
            events,
            seed,
            start,
            format,
            gzip,
            output,
            truth,
        } => {
            let injected = match &truth {
                Some(path) => {
                    // Base traffic advances about half a second an event; spread the scenarios over it.
                    let span = (events / 2) as i64;
                    let (injected, expect) =
                        scenario::scenarios(start + 600, (span / 11).max(1200), "111122223333");
                    let lines: Vec<String> =
                        expect.iter().map(|e| e.to_json().to_string()).collect();
                    std::fs::write(path, lines.join("\n") + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    injected
                }
                None => Vec::new(),
            };
            if let Format::S3 = format {
                let mut w = files::S3Writer::new(output);
                for ev in merged(Generator::new(seed, start), events, injected) {
                    w.push(ev)?;
                }
                let n = w.finish()?;
                eprintln!("wrote {n} log files");
                return Ok(());
            }
            let file: Box<dyn Write> = if output.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(
                    std::fs::File::create(&output)
                        .with_context(|| format!("creating {}", output.display()))?,
                )
            };
            let mut out: Box<dyn Write> = if gzip {
                Box::new(flate2::write::GzEncoder::new(
                    BufWriter::new(file),
                    flate2::Compression::default(),
                ))
            } else {
                Box::new(BufWriter::with_capacity(1 << 20, file))
            };
            write_events(
                &mut out,
                Generator::new(seed, start),
                events,
                format,
                injected,
            )?;
            out.flush()?;
        }
        Command::ParseBaseline { file } => parse_baseline(&file)?,
        Command::SqsSetup { name } => {
            let r = tokio::runtime::Runtime::new()?.block_on(sqs::setup(&name))?;
            let out = serde_json::json!({"events_queue": r.events_queue, "topic_arn": r.topic_arn, "alerts_queue": r.alerts_queue});
            println!("{out}");
        }
        Command::SqsCost {
            requests,
            current_thread,
        } => sdk_cost::run(requests, current_thread)?,
        Command::SqsRun {
            events_queue,
            alerts_queue,
            metrics,
            events,
            rate,
            seed,
            check_rules,
            pause_after_completion,
            stretch,
            geoip,
        } => {
            let run = SqsRun {
                events_queue: &events_queue,
                alerts_queue: &alerts_queue,
                metrics: &metrics,
                n: events,
                rate,
                seed,
                check_rules: check_rules.as_deref(),
                pause: pause_after_completion,
                stretch: (stretch > 0).then_some(stretch),
                geoip,
            };
            let report = tokio::runtime::Runtime::new()?.block_on(run.run())?;
            println!("{report}");
        }
        Command::KafkaProduce {
            brokers,
            topic,
            partitions,
            rate,
            alerts_queue,
            truth,
            rules,
            quiet_seconds,
            pause_after_completion,
            geoip,
            input,
        } => {
            let expected = match &truth {
                Some(path) => check::json_lines(path)?,
                None => Vec::new(),
            };
            let pauses = pause_after_completion
                .map(|secs| pause::Pauses::after_completions(secs, &expected));
            let report = tokio::runtime::Runtime::new()?.block_on(async {
                kafka::create_topic(&brokers, &topic, partitions).await?;
                let t0 = std::time::Instant::now();
                let reader = alerts_queue.clone().map(|q| readback::Reader::start(q, t0));
                let (mut report, handed) =
                    kafka::produce(&brokers, &topic, &input, rate, pauses.as_ref(), t0).await?;
                if let Some(reader) = reader {
                    let alerts = reader.finish_after_quiet(quiet_seconds).await?;
                    report["alerts_received"] = alerts.len().into();
                    report["event_to_alert"] = readback::latency(&handed, &alerts);
                    if let Some(truth) = &truth {
                        report["scenarios"] = readback::check(truth, &rules, &alerts, geoip)?;
                        let firing = readback::correlation_firing(&rules)?;
                        report["event_to_page"] =
                            readback::latency_by_kind(&handed, &alerts, &expected, &firing);
                    }
                }
                anyhow::Ok(report)
            })?;
            println!("{report}");
        }
        Command::Geoip { output } => {
            trailwatch::geo::mmdb_writer::write_city(&output, scenario::TRAVEL_NETWORKS)?
        }
        Command::Check {
            truth,
            alerts,
            rules,
            geoip,
        } => {
            let report = check::check(&truth, &alerts, &rules, geoip)?;
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            eprintln!("{report}");
            if !report.missing.is_empty() {
                std::process::exit(1);
            }
        }
        Command::DistinctKeys { count, output } => distinct_keys(count, &output)?,
    }
    Ok(())
}

/// Background traffic with the scenario events merged in where its time reaches theirs.
fn merged(
    mut g: Generator,
    n: u64,
    injected: Vec<(i64, serde_json::Value)>,
) -> impl Iterator<Item = serde_json::Value> {
    let mut injected = injected.into_iter().peekable();
    std::iter::from_fn(move || match injected.peek() {
        Some((t, _)) if *t <= g.time() || g.produced >= n => injected.next().map(|(_, e)| e),
        _ if g.produced < n => Some(g.next_event()),
        _ => None,
    })
}

fn write_events(
    out: &mut dyn Write,
    g: Generator,
    n: u64,
    format: Format,
    injected: Vec<(i64, serde_json::Value)>,
) -> Result<()> {
    if let Format::Records = format {
        out.write_all(b"{\"Records\":[")?;
    }
    for (i, ev) in merged(g, n, injected).enumerate() {
        match format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, &ev)?;
                out.write_all(b"\n")?;
            }
            Format::Records => {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &ev)?;
            }
            Format::S3 => anyhow::bail!("the S3 layout is written by files::S3Writer"),
            Format::Eventbridge => {
                let detail_type = if ev["eventName"] == "ConsoleLogin" {
                    "AWS Console Sign In via CloudTrail"
                } else {
                    "AWS API Call via CloudTrail"
                };
                let source = ev["eventSource"]
                    .as_str()
                    .unwrap_or("")
                    .trim_end_matches(".amazonaws.com")
                    .to_string();
                let envelope = serde_json::json!({
                    "version": "0",
                    "id": ev["eventID"],
                    "detail-type": detail_type,
                    "source": format!("aws.{source}"),
                    "account": ev["recipientAccountId"],
                    "time": ev["eventTime"],
                    "region": ev["awsRegion"],
                    "resources": [],
                    "detail": ev,
                });
                serde_json::to_writer(&mut *out, &envelope)?;
                out.write_all(b"\n")?;
            }
        }
    }
    if let Format::Records = format {
        out.write_all(b"]}")?;
    }
    Ok(())
}

/// Reads lines and parses each into a `Value`, as a naive detector would before matching.
fn parse_baseline(file: &std::path::Path) -> Result<()> {
    use std::io::BufRead;
    let start = std::time::Instant::now();
    let reader = std::io::BufReader::with_capacity(256 << 10, std::fs::File::open(file)?);
    let (mut events, mut keys) = (0u64, 0usize);
    for line in reader.split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line)?;
        keys += v.as_object().map_or(0, |o| o.len());
        events += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "parse-baseline: {events} events ({keys} top-level keys) in {secs:.2}s ({:.0} events/s)",
        events as f64 / secs
    );
    Ok(())
}

/// One failed sign-in per user, `count` users, spread evenly over 3,000 seconds.
fn distinct_keys(count: u64, output: &std::path::Path) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    for i in 0..count {
        let t = 1_700_000_000 + (i * 3000 / count.max(1)) as i64;
        let ev = serde_json::json!({
            "eventID": format!("k{i}"),
            "eventTime": generate::format_time(t),
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "userIdentity": {"type": "IAMUser", "userName": format!("user{i:07}")},
            "recipientAccountId": "111122223333",
            "sourceIPAddress": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            "errorMessage": "Failed authentication",
        });
        serde_json::to_writer(&mut out, &ev)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Sends, waits for the queue to drain, and reports.
/// A run through SQS: what to send and where to read alerts back.
struct SqsRun<'a> {
    events_queue: &'a str,
    alerts_queue: &'a str,
    metrics: &'a str,
    n: u64,
    rate: u64,
    seed: u64,
    check_rules: Option<&'a std::path::Path>,
    /// Seconds of quiet after each event completing an expected correlation.
    pause: Option<u64>,
    /// Seconds of event time sent before waiting for the queue to drain.
    stretch: Option<i64>,
    /// Geo expectations count.
    geoip: bool,
}

impl SqsRun<'_> {
    /// Sends, waits for the queue to drain, reads the alerts back, and reports throughput,
    /// event-to-alert latency, the latency trailwatch adds, and (with scenarios) what is missing
    /// or unexpected.
    async fn run(&self) -> Result<serde_json::Value> {
        let start = 1_700_000_000;
        let (injected, truth) = match self.check_rules {
            Some(_) => scenario::scenarios(
                start + 600,
                ((self.n / 2) as i64 / 11).max(1200),
                "111122223333",
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut events: Vec<serde_json::Value> =
            merged(Generator::new(self.seed, start), self.n, injected).collect();
        if self.check_rules.is_some() {
            // Background traffic five hours on moves trailwatch's watermark past every
            // scenario (the scenario runs set a lateness of up to three hours), short of the
            // six hours that would make the background's own sources silent.
            let last = events
                .last()
                .and_then(|e| e["eventTime"].as_str())
                .and_then(trailwatch::window::event_time)
                .unwrap_or(start);
            let mut tail = Generator::new(self.seed + 1, last + 5 * 3600);
            events.extend((0..50).map(|_| tail.next_event()));
        }
        let expected: Vec<serde_json::Value> = truth.iter().map(|e| e.to_json()).collect();
        let pauses = self
            .pause
            .map(|secs| pause::Pauses::after_completions(secs, &expected));
        let t0 = std::time::Instant::now();
        let reader = readback::Reader::start(self.alerts_queue.to_string(), t0);
        // Scenario history before the traffic goes first, in order (see send_history).
        let split = events.partition_point(|e| {
            e["eventTime"]
                .as_str()
                .and_then(trailwatch::window::event_time)
                .is_some_and(|t| t < start)
        });
        let traffic = events.split_off(split);
        let mut sent = sqs::send_history(self.events_queue, events, t0).await?;
        let late = |text: &str| {
            trailwatch::metrics::Metrics::sample(text, "trailwatch_window_late_events")
                .map(|n| n as u64)
        };
        let late_before = late(&trailwatch::metrics::Metrics::scrape(self.metrics));
        let stretch = self.check_rules.and(self.stretch);
        sent.extend(
            sqs::send(
                self.events_queue,
                traffic,
                self.rate,
                pauses.as_ref(),
                stretch,
                t0,
            )
            .await?,
        );
        let send_secs = t0.elapsed().as_secs_f64();
        let done = sqs::drained(self.events_queue, std::time::Duration::from_secs(600)).await?;
        let elapsed = done.duration_since(t0).as_secs_f64();
        let alerts = reader.finish().await?;
        let text = trailwatch::metrics::Metrics::scrape(self.metrics);
        let q = |p| {
            sqs::histogram_quantile(&text, "trailwatch_sink_latency_seconds", p)
                .map(|s| (s * 1000.0 * 10.0).round() / 10.0)
        };
        let mut report = serde_json::json!({
            "events": sent.len(),
            "send_seconds": (send_secs * 100.0).round() / 100.0,
            "seconds_until_drained": (elapsed * 100.0).round() / 100.0,
            "events_per_second": (sent.len() as f64 / elapsed).round(),
            "alerts_received": alerts.len(),
            "event_to_alert": readback::latency(&sent, &alerts),
            "batch_latency_ms_p50": q(0.5),
            "batch_latency_ms_p99": q(0.99),
            "late_events": late(&text),
            "late_events_in_traffic": late(&text).zip(late_before).map(|(n, b)| n.saturating_sub(b)),
        });
        if let Some(rules) = self.check_rules {
            let dir = tempfile::tempdir()?;
            let truth_file = dir.path().join("truth.jsonl");
            let lines: Vec<String> = truth.iter().map(|e| e.to_json().to_string()).collect();
            std::fs::write(&truth_file, lines.join("\n") + "\n")?;
            report["scenarios"] = readback::check(&truth_file, rules, &alerts, self.geoip)?;
            let firing = readback::correlation_firing(rules)?;
            report["event_to_page"] = readback::latency_by_kind(&sent, &alerts, &expected, &firing);
        }
        Ok(report)
    }
}

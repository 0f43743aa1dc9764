//! `load-test`: generate realistic CloudTrail traffic for trailwatch benchmarks and tests.

mod check;
mod files;
mod generate;
mod scenario;

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
                        scenario::scenarios(start + 600, (span / 8).max(1200), "111122223333");
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

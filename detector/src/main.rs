//! The `trailwatch` command line: replay, check, explain, test, run, show, diff, verify-archive, report.

mod cli;

use clap::{Parser, Subcommand};
use cli::diff::{cmd_diff, DiffArgs};
use cli::replay::{cmd_replay, ReplayArgs};
use cli::report::{cmd_report, ReportArgs};
use cli::rules::{cmd_check, cmd_explain, cmd_test, CheckArgs, ExplainArgs, TestArgs};
use cli::run::{cmd_run, RunArgs};
use cli::show::{cmd_show, ShowArgs};
use cli::verify::{cmd_verify, VerifyArgs};
use std::io;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "trailwatch",
    version,
    about = "Sigma detection for AWS CloudTrail: live on SQS or Kafka, and over history"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate historical CloudTrail input and write alerts (or hits) as JSON lines.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(Box<ReplayArgs>),
    /// Validate and lint rule files; exit 2 if any rule is invalid.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Say for each rule whether it matches an event, and which entries decided it.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Run every rule's fixtures (`trailwatch.tests`); fail on a wrong verdict or a rule without any.
    #[command(after_help = TEST_EXAMPLES)]
    Test(TestArgs),
    /// Run the live service: SQS or Kafka in, deduplicated alerts to SNS and/or a file, /metrics.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Print the CloudTrail records behind alerts (by eventID); needs --allow-phi.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Replay history through old and new rules in one pass: alerts gained and lost per rule.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Check the audit archive: chains unbroken, manifests signed, no gaps (exit 0 intact,
    /// 1 tampered or damaged, 3 gaps only, 2 could not check).
    #[command(name = "verify-archive", after_help = VERIFY_EXAMPLES)]
    VerifyArchive(VerifyArgs),
    /// Write the auditor's report (HTML and CSV) over the archive, or over a replay of history.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(Box<ReportArgs>),
}

const REPORT_EXAMPLES: &str = "Examples:
  trailwatch report --config /etc/trailwatch/trailwatch.toml --since 2026-10-01 --until 2026-11-01 --out q4/
  trailwatch report --archive s3://audit-bucket/trailwatch --key-file archive.key --since 2026-11-01
  trailwatch report --rules rules/ --since 2026-11-01 --out report/ s3://my-trail-bucket/AWSLogs/

Sections and columns: docs/report.md. With the archive key (--config or --key-file) the archive
is verified first and the verdict heads the report.";

const VERIFY_EXAMPLES: &str = "Examples:
  trailwatch verify-archive --config /etc/trailwatch/trailwatch.toml
  trailwatch verify-archive --key-file archive.key --since 2026-11-01 s3://audit-bucket/trailwatch
  trailwatch verify-archive --key-file archive.key --format json /var/lib/trailwatch/archive

Objects of a day that is not closed yet (the last of each chain) are checked by their chain;
its manifest comes when the next day's first object is sealed.";

const REPLAY_EXAMPLES: &str = "Examples:
  trailwatch replay --rules rules/ AWSLogs/ > alerts.jsonl
  trailwatch replay --rules rules/ --emit hits --fail-on-hit events.jsonl.gz
  trailwatch replay --rules rules/ --since 2026-11-01 --until 2026-11-02 \\
      --account 111122223333 s3://my-trail-bucket/AWSLogs/o-abc123/
  trailwatch replay --rules rules/ --shard 3/8 --rate-per-rule 0 --rate-global 0 \\
      s3://my-trail-bucket/AWSLogs/
  trailwatch replay --rules rules/ --principal alice --level high AWSLogs/

S3 needs s3:ListBucket on the prefix, s3:GetObject, and kms:Decrypt for SSE-KMS trails
(ops/iam/replay-s3-read.json).";

const CHECK_EXAMPLES: &str = "Examples:
  trailwatch check --rules rules/
  trailwatch check --rules rules/,my-rules/ --deny-warnings   # in CI: lint warnings fail too";

const EXPLAIN_EXAMPLES: &str = "Examples:
  trailwatch explain --rules rules/ event.json
  trailwatch explain --rules rules/ --rule 'Root User Activity' --all events.jsonl
  aws cloudtrail lookup-events ... | jq -c '.Events[].CloudTrailEvent | fromjson' \\
      | trailwatch explain --rules rules/ -";

const TEST_EXAMPLES: &str = "Examples:
  trailwatch test                                 # the rules/ folder
  trailwatch test --rules my-rules/ --junit results.xml";

const RUN_EXAMPLES: &str = "Examples:
  trailwatch run --check --config /etc/trailwatch/trailwatch.toml   # check, then exit
  trailwatch run --config /etc/trailwatch/trailwatch.toml --log-format json

Every configuration key: docs/configuration.md.";

const SHOW_EXAMPLES: &str = "Examples:
  trailwatch show --allow-phi 3038ebd2-c98a-4c65-9b6e-e22506292313 AWSLogs/
  trailwatch show --allow-phi --alerts alerts.jsonl --alert-id 9300166c62b61633a62a3515dabcdc88 \\
      s3://my-trail-bucket/AWSLogs/o-abc123/

Records may hold PHI: only an investigator authorised to see them should pass --allow-phi.
With --alerts, only the log files of the alerts' event times are read.";

const DIFF_EXAMPLES: &str = "Examples:
  trailwatch diff --before rules/ --after my-branch/rules/ AWSLogs/
  git worktree add /tmp/main main && \\
      trailwatch diff --before /tmp/main/rules --after rules/ --fail-on-change samples/
  trailwatch diff --before old.yml --after new.yml --format json s3://my-trail-bucket/AWSLogs/

Rate caps are off (each rule's suppression stays), so a change to one rule does not move
other rules' alerts in and out of storms. Exit 1 with --fail-on-change when anything differs.";

fn main() -> ExitCode {
    cli::allocator::tune();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => cmd_replay(*a),
        Command::Check(a) => cmd_check(a),
        Command::Explain(a) => cmd_explain(a),
        Command::Test(a) => cmd_test(a),
        Command::Run(a) => cmd_run(a),
        Command::Show(a) => cmd_show(a),
        Command::Diff(a) => cmd_diff(a),
        Command::VerifyArchive(a) => cmd_verify(a),
        Command::Report(a) => cmd_report(*a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "trailwatch: {}",
                trailwatch::escape::line(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}

//! Issue 12: hostile rule files are rejected with a typed error naming the file and line; they
//! never crash the loader, overflow its stack or exhaust memory, and messages quote them short.
//!
//! Each case runs on a thread with a small stack (256 KiB, an eighth of a test thread's), so a
//! recursion that grows with the input fails here long before it could in production.

use std::path::Path;
use trailwatch::engine::RuleSet;
use trailwatch::rule::{limits, parse_file, Placeholders, RuleError};

const HEAD: &str = "title: hostile\nid: 5e4e0000-0000-4000-8000-000000000001\nlogsource: {product: aws, service: cloudtrail}\n";

/// Parses and compiles `text` as `hostile.yml` on a small stack; the errors of either step.
fn load(text: String) -> Vec<RuleError> {
    load_with(text, Placeholders::new())
}

fn load_with(text: String, placeholders: Placeholders) -> Vec<RuleError> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let (rules, mut errors) = parse_file(Path::new("hostile.yml"), &text, &placeholders);
            if errors.is_empty() {
                if let Err(e) = RuleSet::compile(rules) {
                    errors.extend(e);
                }
            }
            errors
        })
        .unwrap()
        .join()
        .expect("loading a hostile rule must not panic")
}

/// The one error of `text`; checks it names the file and is short.
fn rejected(text: String, line: usize, needle: &str) -> RuleError {
    let errors = load(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], line, needle);
    errors.into_iter().next().unwrap()
}

fn check(e: &RuleError, line: usize, needle: &str) {
    let shown = e.to_string();
    assert_eq!(e.file, Path::new("hostile.yml"), "{shown}");
    assert_eq!(e.line, line, "{shown}");
    assert!(shown.contains(needle), "expected '{needle}' in: {shown}");
    assert!(
        shown.len() < 1_000,
        "a {} byte message: {shown:.300}",
        shown.len()
    );
}

fn detection(entry: &str) -> String {
    format!("{HEAD}detection:\n  sel:\n    {entry}\n  condition: sel\n")
}

#[test]
fn a_666_byte_alias_bomb_is_rejected() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        text.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    let text = format!("{HEAD}{text}detection:\n  sel: {{eventName: x}}\n  condition: sel\n");
    rejected(text, 8, "aliases expand to more than 10000 nodes");
}

#[test]
fn twenty_thousand_nested_lists_and_mappings_are_rejected() {
    let msg = "nested deeper than 64";
    rejected(format!("{HEAD}x:\n{}1\n", "- ".repeat(20_000)), 5, msg);
    let mut indented = format!("{HEAD}x:\n");
    for i in 1..1_400 {
        indented.push_str(&format!("{}- \n", " ".repeat(i)));
    }
    rejected(indented, 68, msg);
    for open in ["[", "{a: "] {
        let errors = load(format!("{HEAD}x: {}", open.repeat(20_000)));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().contains("YAML syntax"),
            "{}",
            errors[0]
        );
    }
}

#[test]
fn a_file_over_one_mebibyte_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yml");
    let filler = "#".repeat(limits::MAX_FILE_BYTES as usize);
    std::fs::write(&big, format!("{HEAD}{filler}\n")).unwrap();
    let (rules, errors) =
        trailwatch::rule::load_paths(&[dir.path().to_path_buf()], &Placeholders::new());
    assert!(rules.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, big);
    assert!(
        errors[0].message.contains("larger than 1048576 bytes"),
        "{}",
        errors[0]
    );
    // Text handed over directly is held to the same limit.
    let errors = load(format!("{HEAD}{filler}"));
    assert!(errors[0].message.contains("larger than"), "{}", errors[0]);
    // Not UTF-8: an error, not a panic.
    std::fs::write(&big, b"title: \xff\xfe\n").unwrap();
    let (_, errors) = trailwatch::rule::load_paths(&[big], &Placeholders::new());
    assert!(errors[0].message.contains("not UTF-8"), "{}", errors[0]);
}

#[test]
fn a_huge_regex_is_rejected_and_quoted_short() {
    let e = rejected(
        detection(&format!("eventName|re: '{}'", "a".repeat(1 << 19))),
        6,
        "bytes long; the limit is 8192",
    );
    assert!(
        e.to_string().contains(&format!("'{}… (", "a".repeat(80))),
        "{e}"
    );
    // Short patterns whose automaton would be huge hit the compiled-size limit.
    let e = rejected(
        detection(r"eventName|re: '\w{1000}{1000}'"),
        6,
        "invalid regular expression",
    );
    assert!(e.message.contains("exceeded limit of 2097152"), "{e}");
    // Nesting inside a regex is bounded too.
    let nested = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
    rejected(
        detection(&format!("eventName|re: '{nested}'")),
        6,
        "invalid regular expression",
    );
}

#[test]
fn a_four_megabyte_condition_is_rejected() {
    // Over the file limit as a whole ...
    let huge = "sel and ".repeat(500_000) + "sel";
    let errors = load(format!(
        "{HEAD}detection:\n  sel: {{eventName: x}}\n  condition: {huge}\n"
    ));
    assert!(errors[0].message.contains("larger than"), "{}", errors[0]);
    // ... and over the condition limit within a file.
    let long = "sel and ".repeat(10_000) + "sel";
    rejected(
        format!("{HEAD}detection:\n  sel: {{eventName: x}}\n  condition: {long}\n"),
        6,
        "is longer than 65536 bytes",
    );
    let deep = format!("{}sel{}", "(not ".repeat(40), ")".repeat(40));
    rejected(
        format!("{HEAD}detection:\n  sel: {{eventName: x}}\n  condition: '{deep}'\n"),
        6,
        "nests deeper than 64 levels",
    );
    let unknown = "x".repeat(50_000);
    rejected(
        format!("{HEAD}detection:\n  sel: {{eventName: x}}\n  condition: {unknown}\n"),
        6,
        "is not a search of this rule",
    );
}

#[test]
fn value_lists_and_modifier_expansions_are_bounded() {
    let many = (0..20_000)
        .map(|i| format!("v{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    rejected(
        detection(&format!("eventName: [{many}]")),
        6,
        "an entry may hold at most 10000",
    );
    // Each `wide` doubles a value: 30 of them would make 64 GiB of one.
    let wide = "|wide".repeat(30);
    rejected(
        detection(&format!("eventName{wide}: abc")),
        6,
        "the limit is 65536",
    );
    // Each `base64offset` triples the values.
    let offsets = "|base64offset".repeat(12);
    rejected(
        detection(&format!("eventName{offsets}: abc")),
        6,
        "more than 10000 values",
    );
    // `expand` multiplies placeholder values: 10^10 combinations.
    let mut ph = Placeholders::new();
    ph.insert("p".into(), (0..10).map(|i| i.to_string()).collect());
    let errors = load_with(
        detection(&format!("eventName|expand: '{}'", "%p%".repeat(10))),
        ph,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], 6, "combinations of placeholder values");
    // Many entries, each within its own limit, are bounded per rule.
    let list = (0..9_000)
        .map(|i| format!("v{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!("{HEAD}detection:\n");
    for s in 0..12 {
        text.push_str(&format!("  s{s}:\n    eventName: [{list}]\n"));
    }
    text.push_str("  condition: 1 of s*\n");
    rejected(text, 27, "more than 100000 values");
}

#[test]
fn hostile_timespans_are_rejected() {
    let corr = |span: &str| {
        format!("title: c\nid: c\ncorrelation:\n  type: event_count\n  rules: [r]\n  timespan: {span}\n  condition: {{gte: 2}}\n")
    };
    rejected(corr("5é"), 6, "timespan '5é' is not a number and a unit");
    rejected(corr("9223372036854775807s"), 6, "at most 100 years");
    let long = "9".repeat(100_000);
    let e = rejected(corr(&long), 6, "is not a number");
    assert!(e.to_string().contains('…'), "{e}");
    let refs = vec!["r"; 2_000].join(", ");
    rejected(
        format!("title: c\nid: c\ncorrelation:\n  type: event_count\n  rules: [{refs}]\n  timespan: 5m\n  condition: {{gte: 2}}\n"),
        5,
        "the limit is 1000",
    );
}

#[test]
fn a_long_chain_of_correlations_compiles_without_deep_recursion() {
    let mut text =
        format!("{HEAD}name: c0\ndetection:\n  sel: {{eventName: x}}\n  condition: sel\n");
    for i in 1..3_000 {
        text.push_str(&format!(
            "---\ntitle: c{i}\nid: c{i}\nname: c{i}\ncorrelation:\n  type: event_count\n  rules: [c{}]\n  timespan: 5m\n  condition: {{gte: 1}}\n",
            i - 1
        ));
    }
    // A cycle at the end of the chain is still found.
    text.push_str("---\ntitle: loop\nid: loop\nname: loop\ncorrelation:\n  type: event_count\n  rules: [loop2]\n  timespan: 5m\n  condition: {gte: 1}\n");
    text.push_str("---\ntitle: loop2\nid: loop2\nname: loop2\ncorrelation:\n  type: event_count\n  rules: [loop, c2999]\n  timespan: 5m\n  condition: {gte: 1}\n");
    let errors = load(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("cycle"), "{}", errors[0]);
}

#[test]
fn huge_keys_and_ids_are_quoted_short() {
    // YAML itself caps a plain implicit key at 1024 characters.
    let key = "k".repeat(1_000);
    let errors = load(format!(
        "{HEAD}detection:\n  sel:\n    {key}|nope: x\n  condition: sel\n"
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], 6, "unknown modifier 'nope'");
    let id = "i".repeat(200_000);
    let errors = load(format!("title: t\nid: {id}\nlogsource: {{}}\nlevel: {id}\ndetection:\n  sel: {{a: b}}\n  condition: sel\n"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], 4, "is not one of informational");
}

#[test]
fn a_global_document_copied_into_thousands_of_rules_is_bounded() {
    // 400 KB of global description, then 20,000 two-line rules that each merge it in: 8 GB.
    let mut text = format!(
        "action: global\n{HEAD}description: {}\ndetection:\n  sel: {{eventName: x}}\n  condition: sel\n",
        "d".repeat(400_000)
    );
    for i in 0..20_000 {
        text.push_str(&format!("---\nid: r{i}\n"));
    }
    assert!(text.len() < limits::MAX_FILE_BYTES as usize);
    let errors = load(text);
    let last = errors.last().expect("an error");
    assert!(
        last.message
            .contains("once 'action: global' and 'action: repeat' are merged in"),
        "{last}"
    );
    assert!(errors.len() < 20, "{} errors", errors.len());
}

#[test]
fn many_small_regexes_are_bounded_by_the_rule_set_budget() {
    // 3,000 patterns in 60 KB; compiled, they would need about 200 MB.
    let values: Vec<String> = (0..3_000)
        .map(|i| format!("      - '\\w{{20}}{i}'"))
        .collect();
    let text = format!(
        "{HEAD}detection:\n  sel:\n    eventName|re:\n{}\n  condition: sel\n",
        values.join("\n")
    );
    rejected(text, 6, "need more than 67108864 bytes");
    // What the pack and SigmaHQ's rules need is far below the budget.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let paths = [
        root.join("rules"),
        root.join("../shared/corpus/sigma-cloudtrail"),
    ];
    let (rules, errors) = trailwatch::rule::load_paths(&paths, &Placeholders::new());
    assert!(errors.is_empty(), "{errors:?}");
    let set = RuleSet::compile(rules).unwrap();
    assert!(set.matcher_bytes() > 0);
    assert!(
        set.matcher_bytes() < 1 << 20,
        "{} bytes",
        set.matcher_bytes()
    );
}

#[test]
fn values_grown_by_modifiers_are_bounded_per_file() {
    // 10 values of 1 KB, each `wide` six times: 64 KiB each (the per-value limit), 640 KB
    // per rule; two such rules pass 1 MiB.
    let value = "v".repeat(1_000);
    let list = (0..10)
        .map(|i| format!("'{i}{value}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let wide = "|wide".repeat(6);
    let rule = |id: &str| {
        format!("title: t\nid: {id}\nlogsource: {{product: aws}}\ndetection:\n  sel:\n    eventName{wide}|contains: [{list}]\n  condition: sel\n")
    };
    let errors = load(format!("{}---\n{}", rule("a"), rule("b")));
    assert_eq!(errors.len(), 1, "{errors:?}");
    check(&errors[0], 9, "take more than 1048576 bytes");
}

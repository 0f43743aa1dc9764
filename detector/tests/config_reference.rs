//! `docs/configuration.md` lists every key of `trailwatch run`'s configuration file, generated
//! from the configuration structs in `src/config.rs`: their doc comments, types and defaults.
//! This test fails when the two drift; `UPDATE_DOCS=1 cargo test --test config_reference`
//! rewrites the generated part. The example configurations in the document must parse.

use std::collections::HashMap;
use std::path::PathBuf;
use trailwatch::config::Config;

const BEGIN: &str = "<!-- BEGIN GENERATED: the key reference, from detector/src/config.rs -->";
const END: &str = "<!-- END GENERATED -->";

/// Every section present, with only the keys that have no default, so the defaults of all the
/// others can be read back.
const MINIMAL: &str = r#"
[rules]
paths = []
[source.sqs]
queue_url = "(required)"
[source.kafka]
brokers = "(required)"
topic = "(required)"
[sink.sns]
topic_arn = "(required)"
[sink.archive]
key_file = "(required)"
spool = "(required)"
"#;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A field of a configuration struct as written in the source.
struct Field {
    name: String,
    ty: String,
    doc: String,
    serde: String,
}

/// The fields of every `pub struct` in `source`, read line by line: the file is ours and
/// written one field a line, doc comment and attributes above it (rustfmt's layout).
fn structs(source: &str) -> HashMap<String, Vec<Field>> {
    let mut out = HashMap::new();
    let mut current: Option<(String, Vec<Field>)> = None;
    let (mut doc, mut serde) = (Vec::<String>::new(), String::new());
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest
                .trim_end_matches(" {")
                .trim_end_matches(';')
                .to_string();
            current = Some((name, Vec::new()));
            doc.clear();
            serde.clear();
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                out.insert(name, fields);
            }
        } else if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if line.starts_with("#[serde(") {
            serde.push_str(line);
        } else if let (Some(rest), Some((_, fields))) = (line.strip_prefix("pub "), &mut current) {
            let (name, ty) = rest.split_once(": ").expect("a field is `pub name: Type,`");
            fields.push(Field {
                name: name.to_string(),
                ty: ty.trim_end_matches(',').to_string(),
                doc: doc.join(" "),
                serde: std::mem::take(&mut serde),
            });
            doc.clear();
        } else if !line.starts_with("#[") {
            doc.clear();
            serde.clear();
        }
    }
    out
}

/// `Option<T>` as `(T, true)`, anything else as `(ty, false)`.
fn unwrap_option(ty: &str) -> (&str, bool) {
    match ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        Some(inner) => (inner, true),
        None => (ty, false),
    }
}

/// How a reader should write a value of type `ty`.
fn type_text(ty: &str) -> String {
    let last = |t: &str| t.rsplit("::").next().unwrap_or(t).to_string();
    if let Some(inner) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        return format!("list of {}s", type_text(inner));
    }
    if let Some((_, v)) = ty
        .split_once("Map<")
        .and_then(|(_, t)| t.strip_suffix('>')?.split_once(", "))
    {
        return format!("table of {}s", type_text(v));
    }
    match last(ty).as_str() {
        "String" => "string".into(),
        "usize" | "u32" | "u64" | "i32" | "i64" => "integer".into(),
        "bool" => "boolean".into(),
        "PathBuf" => "path".into(),
        "Format" => "`native` or `ocsf`".into(),
        "RetentionMode" => "`compliance` or `governance`".into(),
        other => panic!("config_reference.rs: teach type_text about {other}"),
    }
}

/// A default as TOML would spell it.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(s) if s == "(required)" => "required".into(),
        serde_json::Value::Object(m) if m.is_empty() => "`{}`".into(),
        other => format!("`{other}`"),
    }
}

/// Appends the table of struct `name` as section `section` (and its sub-sections after it).
fn render(
    structs: &HashMap<String, Vec<Field>>,
    name: &str,
    section: &str,
    defaults: &serde_json::Value,
    out: &mut String,
) {
    let mut rows = Vec::new();
    let mut subsections = Vec::new();
    for f in &structs[name] {
        if f.serde.contains("skip") {
            continue;
        }
        let (inner, optional) = unwrap_option(&f.ty);
        assert!(!f.doc.is_empty(), "{name}.{} has no doc comment", f.name);
        if structs.contains_key(inner) {
            let path = if section.is_empty() {
                f.name.clone()
            } else {
                format!("{section}.{}", f.name)
            };
            subsections.push((inner.to_string(), path, f));
            continue;
        }
        let default = if optional || f.serde.contains("default") {
            value_text(&defaults[f.name.as_str()])
        } else {
            "required".into()
        };
        rows.push(format!(
            "| `{}` | {} | {default} | {} |",
            f.name,
            type_text(inner),
            f.doc.replace('|', "\\|")
        ));
    }
    if !rows.is_empty() {
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
        out.push('\n');
    }
    for (sub, path, f) in subsections {
        out.push_str(&format!("### `[{path}]`\n\n{}\n\n", f.doc));
        render(structs, &sub, &path, &defaults[f.name.as_str()], out);
    }
}

/// The reference as generated from the source today.
fn generated() -> String {
    let source = std::fs::read_to_string(manifest_dir().join("src/config.rs")).unwrap();
    let structs = structs(&source);
    let config: Config = toml::from_str(MINIMAL).unwrap();
    let defaults = serde_json::to_value(&config).unwrap();
    let mut out = String::new();
    render(&structs, "Config", "", &defaults, &mut out);
    out
}

#[test]
fn the_configuration_reference_is_generated_from_the_source() {
    let path = manifest_dir().join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{} lacks the generated markers", path.display());
    };
    let want = format!("{BEGIN}\n\n{}{END}", generated());
    let have = &doc[b..e + END.len()];
    if have != want {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, doc.replace(have, &want)).unwrap();
            return;
        }
        panic!(
            "docs/configuration.md is out of date with src/config.rs; run \
             UPDATE_DOCS=1 cargo test -p trailwatch --test config_reference"
        );
    }
}

#[test]
fn every_key_is_in_the_reference_and_the_examples_parse() {
    let doc = std::fs::read_to_string(manifest_dir().join("../docs/configuration.md")).unwrap();
    let examples: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|s| s.split("```").next())
        .collect();
    assert!(examples.len() >= 2, "the document shows its examples");
    for example in examples {
        let parsed: Result<Config, _> = toml::from_str(example);
        assert!(parsed.is_ok(), "{example}\n{:?}", parsed.err());
    }
    // Spot checks that the generator reads what it should.
    let reference = generated();
    for needle in [
        "### `[source.sqs]`",
        "| `wait_seconds` | integer | `20` |",
        "| `max_batch` | integer | `500` |",
        "| `queue_url` | string | required |",
        "| `dedup_horizon` | string | `\"24h\"` |",
        "| `asn` | path | none |",
    ] {
        assert!(reference.contains(needle), "{needle} not in:\n{reference}");
    }
}

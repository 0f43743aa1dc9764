//! Sigma YAML documents to [`Rule`]s: metadata, searches and condition.

use super::condition::{self, Cond};
use super::error::{excerpt, Located, RuleError};
use super::limits::{
    MAX_CONDITION_BYTES, MAX_FILE_BYTES, MAX_FILE_VALUE_BYTES, MAX_MERGED_BYTES, MAX_MERGED_NODES,
    MAX_RULE_VALUES,
};
use super::value::{parse_entry, FieldSpec, Placeholders};
use super::yaml::{load_documents, Key, Node, NodeKind, Scalar};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Sigma severity levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `informational`
    Informational,
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Level {
    /// Parses a Sigma level name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// The Sigma name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSource {
    /// `product`, e.g. `aws`.
    pub product: Option<String>,
    /// `service`, e.g. `cloudtrail`.
    pub service: Option<String>,
    /// `category`.
    pub category: Option<String>,
}

/// One named search of a detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The identifier the condition uses.
    pub name: String,
    /// Line of the identifier.
    pub line: usize,
    /// What it matches.
    pub body: SearchBody,
}

/// The shapes a search can take.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchBody {
    /// A mapping: every entry must match.
    AllOf(Vec<FieldSpec>),
    /// A list of mappings: any one must match in full.
    AnyOf(Vec<Vec<FieldSpec>>),
}

/// A Sigma detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The file it came from.
    pub file: PathBuf,
    /// Line where the rule's document starts.
    pub line: usize,
    /// `id` (a UUID in SigmaHQ rules).
    pub id: Option<String>,
    /// `name`, which correlation rules may refer to.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `level`.
    pub level: Option<Level>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `logsource`.
    pub logsource: LogSource,
    /// The searches, in file order.
    pub searches: Vec<Search>,
    /// The condition (several conditions are OR-ed).
    pub condition: Cond,
    /// The condition as written.
    pub condition_text: String,
    /// For a correlation rule, its `correlation:` section (then there are no searches).
    pub correlation: Option<super::correlation::Correlation>,
    /// What the rule asks of its alerts (`trailwatch:` suppress and fields).
    pub policy: super::policy::AlertPolicy,
    /// The document as parsed, for linting and extensions.
    pub doc: Node,
}

impl Rule {
    /// The id if present, else the title: how messages name the rule.
    pub fn label(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.title)
    }
}

/// Reads every rule in the given files and directories (`.yml`/`.yaml`, recursively).
///
/// Returns the rules that loaded and the errors of those that did not.
pub fn load_paths(paths: &[PathBuf], placeholders: &Placeholders) -> (Vec<Rule>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let mut folders = HashMap::new();
    // One set of values per folder, shared by its files: a placeholder file may hold megabytes.
    let mut merged: HashMap<PathBuf, std::sync::Arc<Placeholders>> = HashMap::new();
    let files: Vec<(PathBuf, std::sync::Arc<Placeholders>, Vec<RuleError>)> =
        rule_files(paths, &mut errors)
            .into_iter()
            .map(|file| {
                let mut folder_errors = Vec::new();
                let folder = file.parent().unwrap_or(Path::new("")).to_path_buf();
                let values = merged.entry(folder).or_insert_with(|| {
                    let mut values =
                        folder_placeholders(&file, paths, &mut folders, &mut folder_errors);
                    values.extend(placeholders.iter().map(|(k, v)| (k.clone(), v.clone())));
                    std::sync::Arc::new(values)
                });
                (file, values.clone(), folder_errors)
            })
            .collect();
    let parsed = in_parallel(
        &files,
        load_threads(),
        |(file, values, _)| match read_rule_file(file) {
            Ok(text) => parse_file(file, &text, values),
            Err(e) => (Vec::new(), vec![e]),
        },
    );
    let mut rules = Vec::new();
    // In file order, each file's folder errors before its own, whatever thread read it.
    for ((_, _, folder_errors), (r, e)) in files.into_iter().zip(parsed) {
        errors.extend(folder_errors);
        rules.extend(r);
        errors.extend(e);
    }
    (rules, errors)
}

/// Threads that read rule files: as many as the process may use (the CPU mask counts, so
/// `taskset -c 0` gives one), at most 8. A replay's workers wait for the rules, and reading YAML
/// is most of the time before them (a large pack takes tens of milliseconds on one core).
fn load_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// `f` of every item, in order, on up to `threads` threads (the calling one included).
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let share = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|s| {
        let spawn = || {
            std::thread::Builder::new()
                .name("rules".into())
                .spawn_scoped(s, share)
        };
        // A thread that cannot be had leaves its share to the others.
        let others: Vec<_> = (1..threads).filter_map(|_| spawn().ok()).collect();
        let mut done = share();
        for other in others {
            // A panic while parsing is a bug: shown as one, as on one thread.
            done.extend(
                other
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        for (i, r) in done {
            out[i] = Some(r);
        }
    });
    out.into_iter()
        .map(|r| r.expect("every index below the length is taken by exactly one thread"))
        .collect()
}

/// The file in a rule folder that gives its rules' placeholder values: defaults for the rules
/// in and below the folder (a nearer folder's win), which `--placeholders` overrides by name.
pub const PLACEHOLDER_FILE: &str = "placeholders.yml";

/// The placeholder values the folders of `file` give, from the folder given in `roots` down.
fn folder_placeholders(
    file: &Path,
    roots: &[PathBuf],
    cache: &mut HashMap<PathBuf, Placeholders>,
    errors: &mut Vec<RuleError>,
) -> Placeholders {
    let inside = |d: &Path| roots.iter().any(|r| r.is_dir() && d.starts_with(r));
    let folders: Vec<&Path> = file.ancestors().skip(1).take_while(|d| inside(d)).collect();
    let mut values = Placeholders::new();
    for dir in folders.into_iter().rev() {
        let own = cache.entry(dir.to_path_buf()).or_insert_with(|| {
            let path = dir.join(PLACEHOLDER_FILE);
            if !path.is_file() {
                return Placeholders::new();
            }
            super::value::load_placeholders(&path).unwrap_or_else(|e| {
                errors.push(e);
                Placeholders::new()
            })
        });
        values.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    values
}

/// Reads a rule file, refusing one over [`MAX_FILE_BYTES`] without reading it all.
pub fn read_rule_file(file: &Path) -> Result<String, RuleError> {
    use std::io::Read as _;
    let too_big = || {
        RuleError::new(
            file,
            0,
            format!("the file is larger than {MAX_FILE_BYTES} bytes, the limit of a rule file"),
        )
    };
    let cannot = |e: std::io::Error| RuleError::new(file, 0, format!("cannot read: {e}"));
    let f = std::fs::File::open(file).map_err(cannot)?;
    if f.metadata().map_err(cannot)?.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    // The file may grow between the check and the read: read one byte past the limit at most.
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        RuleError::new(
            file,
            0,
            format!(
                "cannot read: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Expands directories into their rule files, sorted for a stable order.
pub fn rule_files(paths: &[PathBuf], errors: &mut Vec<RuleError>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
                // A rule's fixtures beside it (`x.tests.yml`) and a folder's placeholder
                // values are not rules.
                .filter(|f| !crate::fixture::is_side_file(f))
                .filter(|f| f.file_name().is_none_or(|n| n != PLACEHOLDER_FILE))
                .collect();
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            errors.push(RuleError::new(p, 0, "no such file or directory"));
        }
    }
    out
}

/// Hex SHA-256 of a rule set's sources: every rule file, every folder's placeholder file and
/// the placeholders file given, each by its name below the configured path and its bytes. What
/// an audit record names as "the rules in force": the same files give the same hash wherever
/// they are installed.
pub fn rules_digest(paths: &[PathBuf], placeholders: Option<&Path>) -> String {
    use sha2::Digest;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let named = |root: &Path, f: &Path| {
        let rel = f
            .strip_prefix(root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty());
        let rel = rel.or_else(|| f.file_name().map(Path::new)).unwrap_or(f);
        rel.to_string_lossy().replace('\\', "/")
    };
    for root in paths {
        for f in rule_files(std::slice::from_ref(root), &mut Vec::new()) {
            files.push((named(root, &f), f));
        }
        if root.is_dir() {
            let found = walkdir::WalkDir::new(root)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file() && e.file_name() == PLACEHOLDER_FILE);
            for e in found {
                files.push((named(root, e.path()), e.into_path()));
            }
        }
    }
    if let Some(p) = placeholders {
        files.push((format!("--placeholders {}", named(p, p)), p.to_path_buf()));
    }
    files.sort();
    files.dedup();
    let mut hash = sha2::Sha256::new();
    for (name, f) in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for part in [name.as_bytes(), &bytes] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    crate::sink::archive::object::hex(&hash.finalize())
}

/// Parses one rule file, which may hold several YAML documents.
pub fn parse_file(
    file: &Path,
    text: &str,
    placeholders: &Placeholders,
) -> (Vec<Rule>, Vec<RuleError>) {
    if text.len() as u64 > MAX_FILE_BYTES {
        return (
            vec![],
            vec![RuleError::new(
                file,
                0,
                format!("the file is larger than {MAX_FILE_BYTES} bytes, the limit of a rule file"),
            )],
        );
    }
    let docs = match load_documents(text) {
        Ok(d) => d,
        Err(e) => {
            return (
                vec![],
                vec![RuleError::new(
                    file,
                    e.line,
                    format!("YAML syntax: {}", e.message),
                )],
            )
        }
    };
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut global: Option<Node> = None;
    let mut previous: Option<Node> = None;
    // Each rule is kept for an `action: repeat` after it only where the file has one: copying a
    // rule costs about as much as parsing it, and a rule's embedded tests can be most of a file.
    let repeats = docs
        .iter()
        .any(|d| d.get("action").and_then(Node::as_text).as_deref() == Some("repeat"));
    let mut merged = (0usize, 0usize);
    let mut value_bytes = 0usize;
    for doc in docs {
        if doc.as_map().is_none() {
            errors.push(RuleError::new(
                file,
                doc.line,
                "a rule document must be a mapping",
            ));
            continue;
        }
        let action = doc.get("action").and_then(Node::as_text);
        let doc = match action.as_deref() {
            Some("global") => {
                global = Some(match global.take() {
                    Some(g) => merge(g, without(&doc, "action")),
                    None => without(&doc, "action"),
                });
                continue;
            }
            Some("reset") => {
                global = None;
                continue;
            }
            Some("repeat") => match &previous {
                Some(p) => merge(p.clone(), without(&doc, "action")),
                None => {
                    errors.push(RuleError::new(
                        file,
                        doc.line,
                        "'action: repeat' without a rule before it",
                    ));
                    continue;
                }
            },
            Some(other) => {
                errors.push(RuleError::new(
                    file,
                    doc.line,
                    format!(
                        "unknown action '{}' (global, reset or repeat)",
                        excerpt(other)
                    ),
                ));
                continue;
            }
            None => match &global {
                Some(g) => merge(g.clone(), doc),
                None => doc,
            },
        };
        // `global` and `repeat` copy documents into each rule: bound what the copies add up to.
        let (n, b) = super::yaml::weight(&doc);
        merged = (merged.0.saturating_add(n), merged.1.saturating_add(b));
        if merged.0 > MAX_MERGED_NODES || merged.1 > MAX_MERGED_BYTES {
            errors.push(RuleError::new(
                file,
                doc.line,
                format!(
                    "the rules of this file hold more than {MAX_MERGED_NODES} YAML nodes or \
                     {MAX_MERGED_BYTES} bytes once 'action: global' and 'action: repeat' are merged in"
                ),
            ));
            break;
        }
        if repeats {
            previous = Some(doc.clone());
        }
        match parse_rule(file, doc, placeholders) {
            Ok(r) => {
                value_bytes = value_bytes.saturating_add(rule_value_bytes(&r));
                if value_bytes > MAX_FILE_VALUE_BYTES {
                    errors.push(
                        RuleError::new(
                            file,
                            r.line,
                            format!(
                                "the values of this file's rules take more than \
                                 {MAX_FILE_VALUE_BYTES} bytes once modifiers expanded them"
                            ),
                        )
                        .with_rule(Some(r.label())),
                    );
                    break;
                }
                rules.push(r)
            }
            Err(e) => errors.push(e),
        }
    }
    (rules, errors)
}

fn without(doc: &Node, key: &str) -> Node {
    let entries = doc
        .as_map()
        .unwrap_or_default()
        .iter()
        .filter(|(k, _)| k.text != key)
        .cloned()
        .collect();
    Node {
        line: doc.line,
        kind: NodeKind::Map(entries),
        plain: false,
    }
}

/// Deep-merges `over` onto `base` (mappings merge key by key; anything else is replaced).
fn merge(base: Node, over: Node) -> Node {
    match (base.kind, over.kind) {
        (NodeKind::Map(mut b), NodeKind::Map(o)) => {
            for (k, v) in o {
                match b.iter().position(|(bk, _)| bk.text == k.text) {
                    Some(i) => {
                        let old = b.remove(i).1;
                        b.insert(i, (k, merge(old, v)));
                    }
                    None => b.push((k, v)),
                }
            }
            Node {
                line: over.line.min(base.line).max(1),
                kind: NodeKind::Map(b),
                plain: false,
            }
        }
        (_, kind) => Node {
            line: over.line,
            kind,
            plain: over.plain,
        },
    }
}

fn text_field(doc: &Node, key: &str) -> Result<Option<String>, Located> {
    match doc.get(key) {
        None => Ok(None),
        Some(n) if matches!(n.kind, NodeKind::Scalar(Scalar::Null)) => Ok(None),
        Some(n) => n.as_text().map(Some).ok_or_else(|| {
            Located::new(
                n.line,
                format!("'{key}' must be a string, not a {}", n.type_name()),
            )
        }),
    }
}

fn string_list(doc: &Node, key: &str) -> Result<Vec<String>, Located> {
    match doc.get(key) {
        None => Ok(vec![]),
        Some(n) => match &n.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| {
                    i.as_text()
                        .ok_or_else(|| Located::new(i.line, format!("'{key}' must list strings")))
                })
                .collect(),
            NodeKind::Scalar(Scalar::Null) => Ok(vec![]),
            _ => n
                .as_text()
                .map(|t| vec![t])
                .ok_or_else(|| Located::new(n.line, format!("'{key}' must be a list of strings"))),
        },
    }
}

/// Parses one (merged) rule document.
pub fn parse_rule(file: &Path, doc: Node, placeholders: &Placeholders) -> Result<Rule, RuleError> {
    let id = text_field(&doc, "id").ok().flatten();
    let title = text_field(&doc, "title").ok().flatten();
    let label = id.clone().or_else(|| title.clone());
    parse_rule_inner(file, doc, placeholders).map_err(|e| e.into_rule_error(file, label.as_deref()))
}

fn parse_rule_inner(file: &Path, doc: Node, placeholders: &Placeholders) -> Result<Rule, Located> {
    let title = text_field(&doc, "title")?
        .ok_or_else(|| Located::new(doc.line, "the rule has no 'title'"))?;
    let level = match text_field(&doc, "level")? {
        None => None,
        Some(l) => Some(Level::parse(&l).ok_or_else(|| {
            let line = doc.get("level").map_or(doc.line, |n| n.line);
            Located::new(
                line,
                format!(
                    "level '{}' is not one of informational, low, medium, high, critical",
                    excerpt(&l)
                ),
            )
        })?),
    };
    let extension = |k: &str| doc.get("trailwatch").and_then(|t| t.get(k));
    let (geo, first_seen, silence) = (
        extension("geo"),
        extension("first_seen"),
        extension("silence"),
    );
    let kinds = [doc.get("correlation"), geo, first_seen, silence];
    if let Some(second) = kinds.iter().flatten().nth(1) {
        return Err(Located::new(
            second.line,
            "a rule is one of a correlation, a geo, a first_seen or a silence rule",
        ));
    }
    let correlation = if let Some(section) = doc.get("correlation") {
        Some(super::correlation::parse(&doc, section)?)
    } else if let Some(g) = geo {
        Some(super::correlation::parse_geo(g)?)
    } else if let Some(f) = first_seen {
        Some(super::first_seen::parse(f)?)
    } else {
        silence.map(super::silence::parse).transpose()?
    };
    let logsource = match doc.get("logsource") {
        None if correlation.is_some() => LogSource::default(),
        Some(ls) if ls.as_map().is_some() => LogSource {
            product: text_field(ls, "product")?,
            service: text_field(ls, "service")?,
            category: text_field(ls, "category")?,
        },
        Some(ls) => return Err(Located::new(ls.line, "'logsource' must be a mapping")),
        None => return Err(Located::new(doc.line, "the rule has no 'logsource'")),
    };
    let (searches, condition, condition_text) = match (&correlation, doc.get("detection")) {
        (Some(_), None) => (Vec::new(), Cond::Or(Vec::new()), String::new()),
        (Some(_), Some(d)) => {
            return Err(Located::new(
                d.line,
                "a correlation rule has no 'detection'; put it in a rule of its own",
            ))
        }
        (None, Some(detection)) => parse_detection(detection, placeholders)?,
        (None, None) => return Err(Located::new(doc.line, "the rule has no 'detection'")),
    };
    Ok(Rule {
        file: file.to_path_buf(),
        line: doc.line,
        id: text_field(&doc, "id")?,
        name: text_field(&doc, "name")?,
        title,
        description: text_field(&doc, "description")?,
        status: text_field(&doc, "status")?,
        level,
        tags: string_list(&doc, "tags")?,
        logsource,
        searches,
        condition,
        condition_text,
        policy: super::policy::parse(&doc, correlation.is_some())?,
        correlation,
        doc,
    })
}

fn parse_detection(
    detection: &Node,
    placeholders: &Placeholders,
) -> Result<(Vec<Search>, Cond, String), Located> {
    let entries = detection
        .as_map()
        .ok_or_else(|| Located::new(detection.line, "'detection' must be a mapping"))?;
    let mut searches = Vec::new();
    let mut cond_node = None;
    let mut values = 0usize;
    for (key, node) in entries {
        match key.text.as_str() {
            "condition" => cond_node = Some(node),
            "timeframe" => {}
            _ => {
                let search = parse_search(key, node, placeholders)?;
                values = values.saturating_add(search_values(&search));
                if values > MAX_RULE_VALUES {
                    return Err(Located::new(
                        key.line,
                        format!(
                            "the rule's searches hold more than {MAX_RULE_VALUES} values \
                             (after modifiers expanded them)"
                        ),
                    ));
                }
                searches.push(search);
            }
        }
    }
    let cond_node =
        cond_node.ok_or_else(|| Located::new(detection.line, "'detection' has no 'condition'"))?;
    let names: Vec<String> = searches.iter().map(|s| s.name.clone()).collect();
    let texts: Vec<(usize, String)> = match &cond_node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_text()
                    .map(|t| (i.line, t))
                    .ok_or_else(|| Located::new(i.line, "a condition must be a string"))
            })
            .collect::<Result<_, _>>()?,
        _ => vec![(
            cond_node.line,
            cond_node
                .as_text()
                .ok_or_else(|| Located::new(cond_node.line, "'condition' must be a string"))?,
        )],
    };
    if texts.is_empty() {
        return Err(Located::new(cond_node.line, "'condition' is an empty list"));
    }
    let mut conds = Vec::new();
    for (line, text) in &texts {
        if text.len() > MAX_CONDITION_BYTES {
            return Err(Located::new(
                *line,
                format!(
                    "condition '{}' is longer than {MAX_CONDITION_BYTES} bytes",
                    excerpt(text)
                ),
            ));
        }
        conds.push(
            condition::parse(text, &names)
                .map_err(|m| Located::new(*line, format!("condition '{}': {m}", excerpt(text))))?,
        );
    }
    let cond = if conds.len() == 1 {
        conds.remove(0)
    } else {
        Cond::Or(conds)
    };
    let text = texts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(" or ");
    Ok((searches, cond, text))
}

/// The bytes of a rule's values (after modifier expansion).
fn rule_value_bytes(rule: &Rule) -> usize {
    let entry = |spec: &FieldSpec| {
        spec.values
            .iter()
            .flatten()
            .map(super::value::value_len)
            .sum::<usize>()
    };
    rule.searches
        .iter()
        .map(|s| match &s.body {
            SearchBody::AllOf(specs) => specs.iter().map(entry).sum::<usize>(),
            SearchBody::AnyOf(alts) => alts.iter().flatten().map(entry).sum(),
        })
        .sum()
}

/// The values a search holds (after modifier expansion).
fn search_values(search: &Search) -> usize {
    let entry = |spec: &FieldSpec| spec.values.iter().map(Vec::len).sum::<usize>();
    match &search.body {
        SearchBody::AllOf(specs) => specs.iter().map(entry).sum(),
        SearchBody::AnyOf(alts) => alts.iter().flatten().map(entry).sum(),
    }
}

fn parse_search(key: &Key, node: &Node, placeholders: &Placeholders) -> Result<Search, Located> {
    let fields = |map: &[(Key, Node)]| -> Result<Vec<FieldSpec>, Located> {
        if map.is_empty() {
            return Err(Located::new(
                key.line,
                format!("search '{}' is an empty mapping", excerpt(&key.text)),
            ));
        }
        map.iter()
            .map(|(k, v)| parse_entry(&k.text, k.line, v, placeholders))
            .collect()
    };
    let body = match &node.kind {
        NodeKind::Map(map) => SearchBody::AllOf(fields(map)?),
        NodeKind::Seq(items) if items.iter().all(|i| i.as_map().is_some()) && !items.is_empty() => {
            SearchBody::AnyOf(
                items
                    .iter()
                    .map(|i| fields(i.as_map().unwrap_or_default()))
                    .collect::<Result<_, _>>()?,
            )
        }
        NodeKind::Seq(items)
            if items.iter().all(|i| matches!(i.kind, NodeKind::Scalar(_))) && !items.is_empty() =>
        {
            SearchBody::AllOf(vec![parse_entry("", key.line, node, placeholders)?])
        }
        NodeKind::Seq(items) if items.is_empty() => {
            return Err(Located::new(
                key.line,
                format!("search '{}' is an empty list", excerpt(&key.text)),
            ))
        }
        NodeKind::Seq(_) => {
            return Err(Located::new(
                key.line,
                format!(
                    "search '{}' mixes mappings and plain values in one list",
                    excerpt(&key.text)
                ),
            ))
        }
        NodeKind::Scalar(_) => {
            return Err(Located::new(
                key.line,
                format!(
                    "search '{}' must be a mapping of fields or a list, not a single value",
                    excerpt(&key.text)
                ),
            ))
        }
    };
    Ok(Search {
        name: key.text.clone(),
        line: key.line,
        body,
    })
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn the_digest_follows_content_and_names_not_the_install_location() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("aws")).unwrap();
            std::fs::write(d.join("aws/r.yml"), "title: r").unwrap();
            std::fs::write(d.join("aws/placeholders.yml"), "admins: [x]").unwrap();
        }
        let digest = |d: &Path| rules_digest(&[d.to_path_buf()], None);
        assert_eq!(digest(a.path()), digest(b.path()));
        std::fs::write(b.path().join("aws/placeholders.yml"), "admins: [y]").unwrap();
        assert_ne!(
            digest(a.path()),
            digest(b.path()),
            "placeholders are part of the rules"
        );
        std::fs::write(b.path().join("aws/placeholders.yml"), "admins: [x]").unwrap();
        std::fs::rename(b.path().join("aws/r.yml"), b.path().join("aws/s.yml")).unwrap();
        assert_ne!(
            digest(a.path()),
            digest(b.path()),
            "a renamed rule file is another set"
        );
        assert_eq!(digest(a.path()).len(), 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Rule, RuleError> {
        let (mut rules, mut errs) = parse_file(Path::new("t.yml"), text, &Placeholders::new());
        if let Some(e) = errs.pop() {
            return Err(e);
        }
        Ok(rules.remove(0))
    }

    const BASE: &str = "title: t\nid: 11111111-2222-3333-4444-555555555555\nlogsource: {product: aws, service: cloudtrail}\nlevel: high\n";

    #[test]
    fn parses_a_rule() {
        let r = one(&format!(
            "{BASE}detection:\n  sel:\n    eventName: [A, B]\n  filter:\n    - userAgent: x\n    - errorCode: null\n  condition: sel and not filter\ntags: [attack.t1]\n"
        ))
        .unwrap();
        assert_eq!(r.searches.len(), 2);
        assert_eq!(r.level, Some(Level::High));
        assert_eq!(r.tags, vec!["attack.t1"]);
        assert!(matches!(r.searches[1].body, SearchBody::AnyOf(ref v) if v.len() == 2));
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = one(&format!(
            "{BASE}detection:\n  sel:\n    eventName|contans: x\n  condition: sel\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 7);
        assert_eq!(e.field.as_deref(), Some("eventName"));
        assert_eq!(
            e.rule.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        let text = e.to_string();
        assert!(text.starts_with("t.yml:7: rule '11111111"), "{text}");

        let e = one(&format!(
            "{BASE}detection:\n  sel:\n    a: x\n  condition: sel and nope\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 8);
        assert!(e.message.contains("'nope' is not a search"));

        let e = one("title: t\nlogsource: {}\ndetection:\n  sel: {a: b}\n").unwrap_err();
        assert!(e.message.contains("no 'condition'"));
        let e = one("logsource: {}\ndetection: {}\n").unwrap_err();
        assert!(e.message.contains("no 'title'"));
        let e = one(&format!("{BASE}level: urgent\n")).unwrap_err();
        assert!(e.message.contains("YAML syntax") || e.message.contains("urgent"));
    }

    #[test]
    fn keyword_lists() {
        let r = one(&format!(
            "{BASE}detection:\n  keywords:\n    - evil\n    - bad\n  condition: keywords\n"
        ))
        .unwrap();
        match &r.searches[0].body {
            SearchBody::AllOf(specs) => {
                assert_eq!(specs[0].field, None);
                assert_eq!(specs[0].values.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collections_global_and_repeat() {
        let text = "action: global\ntitle: g\nlogsource: {product: aws}\ndetection:\n  condition: sel\n---\nid: a\ndetection:\n  sel: {eventName: X}\n---\naction: repeat\nid: b\ndetection:\n  sel: {eventName: Y}\n";
        let (rules, errs) = parse_file(Path::new("c.yml"), text, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].title, "g");
        assert_eq!(rules[1].id.as_deref(), Some("b"));
    }

    #[test]
    fn a_folder_loads_in_file_order_whatever_thread_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("s");
        std::fs::create_dir(&sub).unwrap();
        // A broken placeholder file: its error comes before the errors of the files below it.
        std::fs::write(sub.join(PLACEHOLDER_FILE), "[unclosed\n").unwrap();
        let mut want_rules = Vec::new();
        let mut want_errors = Vec::new();
        for i in 0..40 {
            let folder = if i < 20 { dir.path() } else { &sub };
            let name = format!("r{i:02}.yml");
            if i == 20 {
                want_errors.push(PLACEHOLDER_FILE.to_string());
            }
            let text = if i % 3 == 0 {
                want_errors.push(name.clone());
                "title: [unclosed\n".to_string()
            } else {
                want_rules.push(format!("r{i:02}"));
                format!("title: r{i:02}\nlogsource: {{product: aws}}\ndetection:\n  sel: {{eventName: X}}\n  condition: sel\n")
            };
            std::fs::write(folder.join(name), text).unwrap();
        }
        let (rules, errors) = load_paths(&[dir.path().to_path_buf()], &Placeholders::new());
        let titles: Vec<String> = rules.iter().map(|r| r.title.clone()).collect();
        assert_eq!(titles, want_rules);
        let failed: Vec<String> = errors
            .iter()
            .map(|e| e.file.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(failed, want_errors);
    }

    #[test]
    fn in_parallel_keeps_the_order_of_its_items_whatever_finishes_first() {
        let items: Vec<u64> = (0..64).collect();
        // The first items are the slowest, so threads finish them after later ones.
        let slow_first = |i: &u64| {
            std::thread::sleep(std::time::Duration::from_micros((64 - i) * 200));
            i * 2
        };
        for threads in [1, 2, 4, 100] {
            let doubled = in_parallel(&items, threads, slow_first);
            assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
        assert!(in_parallel(&[] as &[u64], 4, |i| *i).is_empty());
    }

    #[test]
    fn bad_yaml_is_a_rule_error() {
        let (rules, errs) = parse_file(
            Path::new("b.yml"),
            "title: [unclosed\n",
            &Placeholders::new(),
        );
        assert!(rules.is_empty());
        assert!(errs[0].message.starts_with("YAML syntax"));
    }
}

//! A YAML tree that remembers the line of every node, so rule errors can point at it.
//!
//! `yaml-rust2`'s own `Yaml` type drops positions; we build ours from its event stream.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use super::error::excerpt;
use super::limits::{MAX_ALIAS_BYTES, MAX_ALIAS_NODES};

/// A scalar as written: its text and whether it was quoted (quoted scalars are always strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string (quoted, block or plain text that is no other type).
    Str(String),
    /// An integer, kept with the text it was written as.
    Int(i64),
    /// A float, kept as written.
    Float(String),
    /// `true` / `false`.
    Bool(bool),
    /// `null`, `~` or an empty value.
    Null,
}

/// One YAML node with the 1-based line where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: usize,
    /// The node's content.
    pub kind: NodeKind,
    /// A scalar written without quotes (YAML 1.1 tools may type it differently).
    pub plain: bool,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar value.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys are their scalar text.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text (non-scalar keys are rejected while loading).
    pub text: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Node {
    /// The mapping entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// The text of a string-like scalar (numbers and booleans give their text too).
    pub fn as_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str(s)) => Some(s.clone()),
            NodeKind::Scalar(Scalar::Int(i)) => Some(i.to_string()),
            NodeKind::Scalar(Scalar::Float(f)) => Some(f.clone()),
            NodeKind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null) => "null",
            NodeKind::Scalar(_) => "scalar",
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "mapping",
        }
    }
}

/// Parses every document of a YAML stream.
pub fn load_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // The event loop is ours: `Parser::load` recurses once per nesting level of block
    // collections and overflows the stack on 20,000 nested `- `. The builder keeps its own
    // stack on the heap and stops at MAX_DEPTH; reading stops at the first error.
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.docs)
}

/// Deepest nesting a rule file may use.
pub const MAX_DEPTH: usize = super::limits::MAX_YAML_DEPTH;

enum Frame {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(Key, Node)>, Option<Key>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Anchored nodes: (anchor id, node, its node count, its scalar bytes).
    anchors: Vec<(usize, Node, usize, usize)>,
    pending_anchor: Vec<usize>,
    /// Nodes and scalar bytes copied in by aliases so far.
    alias_nodes: usize,
    alias_bytes: usize,
    error: Option<YamlError>,
}

/// The number of nodes in `node` and the bytes of its scalar text (keys included).
pub(crate) fn weight(node: &Node) -> (usize, usize) {
    match &node.kind {
        NodeKind::Scalar(s) => (1, scalar_len(s)),
        NodeKind::Seq(items) => items.iter().map(weight).fold((1, 0), add),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| add((1, k.text.len()), weight(v)))
            .fold((1, 0), add),
    }
}

fn add(a: (usize, usize), b: (usize, usize)) -> (usize, usize) {
    (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
}

fn scalar_len(s: &Scalar) -> usize {
    match s {
        Scalar::Str(t) | Scalar::Float(t) => t.len(),
        _ => 8,
    }
}

impl Builder {
    fn fail(&mut self, line: usize, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                line,
                message: message.into(),
            });
        }
    }

    /// Rule files are shallow; refusing deep nesting keeps every later recursion bounded.
    fn too_deep(&mut self, line: usize) -> bool {
        if self.error.is_some() || self.stack.len() >= MAX_DEPTH {
            self.fail(line, format!("YAML nested deeper than {MAX_DEPTH} levels"));
            return true;
        }
        false
    }

    /// Attaches a finished node to its parent (or ends a document).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 && self.error.is_none() {
            let (nodes, bytes) = weight(&node);
            self.anchors.push((anchor, node.clone(), nodes, bytes));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => match &node.kind {
                    NodeKind::Scalar(s) => {
                        let text = scalar_key_text(s);
                        if entries.iter().any(|(k, _)| k.text == text) {
                            let line = node.line;
                            self.fail(line, format!("duplicate key '{}'", excerpt(&text)));
                        }
                        if let Some(Frame::Map(_, _, key)) = self.stack.last_mut() {
                            *key = Some(Key {
                                text,
                                line: node.line,
                            });
                        }
                    }
                    _ => {
                        let line = node.line;
                        self.fail(line, "mapping keys must be plain scalars");
                        if let Some(Frame::Map(_, _, key)) = self.stack.last_mut() {
                            *key = Some(Key {
                                text: String::new(),
                                line,
                            });
                        }
                    }
                },
            },
        }
    }
}

fn scalar_key_text(s: &Scalar) -> String {
    match s {
        Scalar::Str(t) | Scalar::Float(t) => t.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Null => "null".to_string(),
    }
}

fn scalar_from(text: String, style: TScalarStyle) -> Scalar {
    if style != TScalarStyle::Plain {
        return Scalar::Str(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => Scalar::Int(i),
        Yaml::Real(r) => Scalar::Float(r),
        Yaml::Boolean(b) => Scalar::Bool(b),
        Yaml::Null => Scalar::Null,
        _ => Scalar::Str(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                if self.error.is_some() {
                    return;
                }
                let node = Node {
                    line,
                    plain: style == TScalarStyle::Plain,
                    kind: NodeKind::Scalar(scalar_from(text, style)),
                };
                self.push(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                if self.too_deep(line) {
                    return;
                }
                self.pending_anchor.push(anchor);
                self.stack.push(Frame::Seq(line, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                if self.too_deep(line) {
                    return;
                }
                self.pending_anchor.push(anchor);
                self.stack.push(Frame::Map(line, Vec::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if self.error.is_some() {
                    return;
                }
                let anchor = self.pending_anchor.pop().unwrap_or(0);
                let node = match self.stack.pop() {
                    Some(Frame::Seq(l, items)) => Node {
                        line: l,
                        kind: NodeKind::Seq(items),
                        plain: false,
                    },
                    Some(Frame::Map(l, entries, _)) => Node {
                        line: l,
                        kind: NodeKind::Map(entries),
                        plain: false,
                    },
                    None => return,
                };
                self.push(node, anchor);
            }
            Event::Alias(id) => {
                if self.error.is_some() {
                    return;
                }
                match self.anchors.iter().rev().find(|(a, ..)| *a == id) {
                    Some(&(_, ref node, nodes, bytes)) => {
                        // Count before copying: nested aliases grow exponentially.
                        self.alias_nodes = self.alias_nodes.saturating_add(nodes);
                        self.alias_bytes = self.alias_bytes.saturating_add(bytes);
                        if self.alias_nodes > MAX_ALIAS_NODES || self.alias_bytes > MAX_ALIAS_BYTES
                        {
                            self.fail(
                                line,
                                format!(
                                    "YAML aliases expand to more than {MAX_ALIAS_NODES} nodes or \
                                     {MAX_ALIAS_BYTES} bytes (an alias bomb?)"
                                ),
                            );
                            return;
                        }
                        let node = node.clone();
                        self.push(node, 0);
                    }
                    None => self.fail(line, "alias to an unknown anchor"),
                };
            }
            Event::DocumentStart => {
                // Anchors belong to their document.
                self.anchors.clear();
            }
            Event::DocumentEnd => {
                // An empty document (`---` with nothing after it) yields no node; skip it.
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_and_types() {
        let docs = load_documents("a: 1\nb:\n  - 'x'\n  - yes\nc: ~\n").unwrap();
        assert_eq!(docs.len(), 1);
        let b = docs[0].get("b").unwrap();
        assert_eq!(b.line, 3);
        match &b.kind {
            NodeKind::Seq(items) => {
                assert_eq!(items[0].kind, NodeKind::Scalar(Scalar::Str("x".into())));
                // YAML 1.2: `yes` is a string, not a boolean.
                assert_eq!(items[1].kind, NodeKind::Scalar(Scalar::Str("yes".into())));
            }
            other => panic!("not a list: {other:?}"),
        }
        assert_eq!(
            docs[0].get("a").unwrap().kind,
            NodeKind::Scalar(Scalar::Int(1))
        );
        assert_eq!(
            docs[0].get("c").unwrap().kind,
            NodeKind::Scalar(Scalar::Null)
        );
    }

    #[test]
    fn multi_document() {
        let docs = load_documents("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b").unwrap().line, 3);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let docs = load_documents("a: '1'\nb: \"true\"\n").unwrap();
        assert_eq!(
            docs[0].get("a").unwrap().kind,
            NodeKind::Scalar(Scalar::Str("1".into()))
        );
        assert_eq!(
            docs[0].get("b").unwrap().kind,
            NodeKind::Scalar(Scalar::Str("true".into()))
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let err = load_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn duplicate_key_rejected() {
        let err = load_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("duplicate key 'a'"));
    }

    #[test]
    fn aliases_resolve() {
        let docs = load_documents("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(
            docs[0].get("a").unwrap().kind,
            docs[0].get("b").unwrap().kind
        );
        assert!(matches!(docs[0].get("b").unwrap().kind, NodeKind::Seq(ref v) if v.len() == 2));
    }

    /// The classic "billion laughs": 666 bytes whose aliases expand to 10^9 scalars.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_rejected_by_the_expansion_limit() {
        let bomb = billion_laughs();
        assert!(bomb.len() < 700, "{} bytes", bomb.len());
        let err = load_documents(&bomb).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err}");
        // The fifth level (9^5 = 59049 nodes) is the first over the limit.
        assert_eq!(err.line, 5, "{err}");
        // Few aliases of a big scalar exhaust the byte budget instead.
        let big = "x".repeat(300_000);
        let text = format!("a: &a '{big}'\nb: [*a, *a, *a, *a]\n");
        let err = load_documents(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err}");
        // Modest reuse stays fine.
        let docs = load_documents("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n").unwrap();
        assert!(matches!(docs[0].get("b").unwrap().kind, NodeKind::Seq(ref v) if v.len() == 3));
    }

    #[test]
    fn twenty_thousand_nested_block_sequences_are_an_error() {
        // `- - - - … x` on one line, and the same indented one level per line.
        let inline = format!("{}x\n", "- ".repeat(20_000));
        let err = load_documents(&inline).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
        let mut indented = String::new();
        for i in 0..2_000 {
            indented.push_str(&" ".repeat(i));
            indented.push_str("-\n");
        }
        assert!(load_documents(&indented).is_err());
        let flow = format!("{}{}", "{a: ".repeat(20_000), "}".repeat(20_000));
        assert!(load_documents(&flow).is_err());
        let flow = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(load_documents(&flow).is_err());
    }

    #[test]
    fn an_alias_to_an_anchor_of_an_earlier_document_is_an_error() {
        let err = load_documents("a: &x 1\n---\nb: *x\n").unwrap_err();
        assert!(err.message.contains("unknown anchor"), "{err}");
        assert_eq!(err.line, 3);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let unclosed = "[".repeat(10_000);
        assert!(load_documents(&unclosed).is_err());
        let closed = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
        let err = load_documents(&closed).unwrap_err();
        assert!(
            err.message.contains("nested deeper") || err.message.contains("recursion limit"),
            "{err}"
        );
    }
}

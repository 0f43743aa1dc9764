//! Hard limits on what one rule file may ask of the loader and compiler.
//!
//! Rule files are untrusted input: a watched rules folder accepts whatever a deploy tool, a
//! colleague or an attacker with write access drops into it. Each limit below turns an input
//! that would exhaust memory, time or the stack into a [`RuleError`](super::RuleError) naming
//! the file and line; the running rule set stays. The values are far above anything SigmaHQ's
//! rules or the shipped pack use (the largest SigmaHQ CloudTrail rule is under 4 KiB, its
//! longest value list under 100 entries, its longest condition under 100 characters).

/// Largest rule file read (bytes). Bigger files are rejected before they are read in full.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Deepest YAML nesting (mappings and lists) in a rule file.
pub const MAX_YAML_DEPTH: usize = 64;

/// Nodes that YAML aliases (`*name`) may copy into one file, all aliases together. An alias
/// copies its anchor's whole subtree, so a few hundred bytes of nested aliases ("billion
/// laughs") would otherwise expand to billions of nodes.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// Bytes of scalar text that YAML aliases may copy into one file, all aliases together.
pub const MAX_ALIAS_BYTES: usize = 1 << 20;

/// Nodes the rule documents of one file may hold after `action: global` and `action: repeat`
/// merged into them, all documents together. A large global document followed by thousands
/// of two-line rules would otherwise copy it thousands of times.
pub const MAX_MERGED_NODES: usize = 250_000;

/// Bytes of scalar text the rule documents of one file may hold after merging.
pub const MAX_MERGED_BYTES: usize = 4 << 20;

/// Longest condition (bytes, each condition of a list).
pub const MAX_CONDITION_BYTES: usize = 64 * 1024;

/// Deepest condition nesting: parentheses and `not` together.
pub const MAX_CONDITION_DEPTH: usize = 64;

/// Values one detection entry may hold after its modifiers expanded them (`windash`,
/// `base64offset`, `expand`).
pub const MAX_ENTRY_VALUES: usize = 10_000;

/// Values one rule may hold, all entries together, after expansion.
pub const MAX_RULE_VALUES: usize = 100_000;

/// Longest single value (bytes) after modifiers (encodings grow a value: `wide` doubles it).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Bytes of all values of the rules of one file, after modifiers (`wide` doubles a value,
/// `base64offset` triples it): what the matchers are compiled from. No larger than the file
/// itself may be, so modifiers cannot multiply it.
pub const MAX_FILE_VALUE_BYTES: usize = 1 << 20;

/// Longest `re` pattern (bytes).
pub const MAX_REGEX_BYTES: usize = 8 * 1024;

/// Deepest nesting of groups and repetitions inside a regex.
pub const MAX_REGEX_NEST: u32 = 64;

/// Largest compiled form of one regex (regex-automata's NFA size limit, bytes); the lazy DFA
/// and one-pass DFA built from it are held to the same budget.
pub const MAX_REGEX_COMPILED_BYTES: usize = 2 << 20;

/// Largest compiled form of the wildcard patterns of one entry (one regex, bytes).
pub const MAX_WILDCARD_COMPILED_BYTES: usize = 8 << 20;

/// Compiled regexes and substring automata of a whole rule set (bytes, as regex-automata and
/// aho-corasick report them). Each regex is small on its own, but 10,000 `\w+` patterns fit
/// in a 250 KB file and compile to 700 MB. SigmaHQ's CloudTrail rules and the pack need
/// well under 1 MiB.
pub const MAX_SET_MATCHER_BYTES: usize = 64 << 20;

/// What a substring automaton is assumed to need per byte of its patterns when checked against
/// [`MAX_SET_MATCHER_BYTES`] before it is built (over 64 KiB of patterns it is a contiguous
/// NFA; as a DFA, 3.2 MB of `contains` values took over 64 MiB and a minute): the budget
/// admits 2 MiB of `contains` values per rule set.
pub const CONTAINS_BYTES_FACTOR: usize = 32;

/// Entries of a correlation's `rules` or `group-by` list.
pub const MAX_CORRELATION_LIST: usize = 1_000;

/// Longest timespan (seconds) a correlation, geo rule or suppression window may use:
/// 100 years. Larger ones would overflow event-time arithmetic.
pub const MAX_TIMESPAN_SECS: i64 = 100 * 366 * 86_400;

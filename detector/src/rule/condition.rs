//! The Sigma condition language: `and`, `or`, `not`, parentheses, `1 of x*`, `all of them`.

use super::error::excerpt;

/// A parsed condition over search identifiers (indexes into the rule's searches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// One search.
    Search(usize),
    /// All must hold.
    And(Vec<Cond>),
    /// Any must hold.
    Or(Vec<Cond>),
    /// At least `n` must hold (`2 of selection_*`).
    AtLeast(usize, Vec<Cond>),
    /// Negation.
    Not(Box<Cond>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Of,
    All,
    Them,
    Num(usize),
    Ident(String),
    Pipe,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        match c {
            '(' | ')' | '|' => {
                chars.next();
                toks.push(match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    _ => Tok::Pipe,
                });
                continue;
            }
            _ => {}
        }
        let mut end = i;
        while let Some(&(j, d)) = chars.peek() {
            if d.is_whitespace() || d == '(' || d == ')' || d == '|' {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let word = &s[i..end];
        toks.push(match word {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "of" => Tok::Of,
            "all" => Tok::All,
            "any" => Tok::Num(1),
            "them" => Tok::Them,
            w if w.bytes().all(|b| b.is_ascii_digit()) => Tok::Num(
                w.parse()
                    .map_err(|_| format!("number '{}' is too large", excerpt(w)))?,
            ),
            w => Tok::Ident(w.to_string()),
        });
    }
    Ok(toks)
}

/// Deepest nesting accepted: parentheses and `not`s together (each makes one level of the
/// condition tree, which compiling and matching walk recursively).
const MAX_NESTING: usize = super::limits::MAX_CONDITION_DEPTH;

/// Parses `text` against the rule's search names.
pub fn parse(text: &str, names: &[String]) -> Result<Cond, String> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err("the condition is empty".into());
    }
    let mut depth = 0usize;
    for t in &toks {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!("parentheses nest deeper than {MAX_NESTING} levels"));
        }
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        names,
    };
    let cond = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(cond),
        Some(Tok::Pipe) => Err(
            "aggregations after '|' (count(), near) are not Sigma 2; write a correlation rule instead"
                .into(),
        ),
        Some(t) => Err(format!("unexpected {} after the end of the condition", show(t))),
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::And => "'and'".into(),
        Tok::Or => "'or'".into(),
        Tok::Not => "'not'".into(),
        Tok::Of => "'of'".into(),
        Tok::All => "'all'".into(),
        Tok::Them => "'them'".into(),
        Tok::Num(n) => format!("'{n}'"),
        Tok::Ident(s) => format!("'{}'", excerpt(s)),
        Tok::Pipe => "'|'".into(),
    }
}

struct Parser<'n> {
    toks: Vec<Tok>,
    pos: usize,
    /// Open parentheses and `not`s around the current position.
    depth: usize,
    names: &'n [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut items = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::And(items)
        })
    }

    /// Enters `levels` more levels of nesting, unless that goes past the limit.
    fn enter(&mut self, levels: usize) -> Result<(), String> {
        self.depth += levels;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "the condition nests deeper than {MAX_NESTING} levels (parentheses and 'not' together)"
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Cond, String> {
        let mut count = 0;
        while self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            count += 1;
            if count > MAX_NESTING {
                return Err(format!("more than {MAX_NESTING} 'not' in a row"));
            }
        }
        self.enter(count)?;
        let c = self.primary();
        self.depth -= count;
        let mut c = c?;
        for _ in 0..count {
            c = Cond::Not(Box::new(c));
        }
        Ok(c)
    }

    fn primary(&mut self) -> Result<Cond, String> {
        match self.next() {
            Some(Tok::LParen) => {
                self.enter(1)?;
                let c = self.or();
                self.depth -= 1;
                let c = c?;
                match self.next() {
                    Some(Tok::RParen) => Ok(c),
                    Some(t) => Err(format!("expected ')' but found {}", show(&t))),
                    None => Err("missing ')' at the end of the condition".into()),
                }
            }
            Some(Tok::Ident(name)) => match self.names.iter().position(|n| *n == name) {
                Some(i) => Ok(Cond::Search(i)),
                None => Err(format!(
                    "'{}' is not a search of this rule (searches: {})",
                    excerpt(&name),
                    excerpt(&self.names.join(", "))
                )),
            },
            Some(Tok::All) => self.quantified(None),
            Some(Tok::Num(n)) => self.quantified(Some(n)),
            Some(t) => Err(format!(
                "expected a search name, '(' or 'not' but found {}",
                show(&t)
            )),
            None => Err("the condition ends where a search name was expected".into()),
        }
    }

    /// `N of pattern`, `all of them`; `None` means all.
    fn quantified(&mut self, n: Option<usize>) -> Result<Cond, String> {
        if self.next() != Some(Tok::Of) {
            return Err("expected 'of' after the count".into());
        }
        let (label, items): (String, Vec<Cond>) = match self.next() {
            Some(Tok::Them) => (
                "them".into(),
                (0..self.names.len())
                    .filter(|&i| !self.names[i].starts_with('_'))
                    .map(Cond::Search)
                    .collect(),
            ),
            Some(Tok::Ident(pat)) => {
                let items = (0..self.names.len())
                    .filter(|&i| glob_match(&pat, &self.names[i]))
                    .map(Cond::Search)
                    .collect();
                (pat, items)
            }
            Some(t) => {
                return Err(format!(
                    "expected a name pattern or 'them' after 'of', found {}",
                    show(&t)
                ))
            }
            None => return Err("expected a name pattern or 'them' after 'of'".into()),
        };
        if items.is_empty() {
            return Err(format!(
                "'{}' matches no search of this rule",
                excerpt(&label)
            ));
        }
        Ok(match n {
            None => Cond::And(items),
            Some(0) => return Err("'0 of' always holds; remove it".into()),
            Some(1) => Cond::Or(items),
            Some(k) if k > items.len() => {
                return Err(format!(
                    "'{k} of {}' can never hold: it names only {} searches",
                    excerpt(&label),
                    items.len()
                ))
            }
            Some(k) => Cond::AtLeast(k, items),
        })
    }
}

/// Matches a search name against a pattern with `*` (any run) and `?` (one character).
pub fn glob_match(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn precedence_not_and_or() {
        let n = names(&["a", "b", "c"]);
        assert_eq!(
            parse("a or b and not c", &n).unwrap(),
            Cond::Or(vec![
                Cond::Search(0),
                Cond::And(vec![Cond::Search(1), Cond::Not(Box::new(Cond::Search(2)))])
            ])
        );
        assert_eq!(
            parse("(a or b) and c", &n).unwrap(),
            Cond::And(vec![
                Cond::Or(vec![Cond::Search(0), Cond::Search(1)]),
                Cond::Search(2)
            ])
        );
    }

    #[test]
    fn quantifiers() {
        let n = names(&["selection_a", "selection_b", "filter", "_hidden"]);
        assert_eq!(
            parse("1 of selection_*", &n).unwrap(),
            Cond::Or(vec![Cond::Search(0), Cond::Search(1)])
        );
        assert_eq!(
            parse("all of them", &n).unwrap(),
            Cond::And(vec![Cond::Search(0), Cond::Search(1), Cond::Search(2)])
        );
        assert_eq!(
            parse("2 of them", &n).unwrap(),
            Cond::AtLeast(2, vec![Cond::Search(0), Cond::Search(1), Cond::Search(2)])
        );
        assert!(parse("1 of nothing_*", &n)
            .unwrap_err()
            .contains("matches no search"));
    }

    #[test]
    fn errors_are_specific() {
        let n = names(&["a"]);
        assert!(parse("a and", &n).unwrap_err().contains("ends where"));
        assert!(parse("(a", &n).unwrap_err().contains("missing ')'"));
        assert!(parse("b", &n).unwrap_err().contains("'b' is not a search"));
        assert!(parse("a | count() > 5", &n)
            .unwrap_err()
            .contains("correlation"));
        assert!(parse("", &n).unwrap_err().contains("empty"));
    }

    #[test]
    fn globbing() {
        assert!(glob_match("sel*", "selection"));
        assert!(glob_match("*_main_*", "filter_main_x"));
        assert!(glob_match("f?lter", "filter"));
        assert!(!glob_match("sel*", "filter"));
        assert!(glob_match("filter*", "filter"));
    }

    #[test]
    fn deep_parentheses_do_not_overflow() {
        let n = names(&["a"]);
        let text = format!("{}a{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(parse(&text, &n).unwrap(), Cond::Search(0));
        let text = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&text, &n).unwrap_err().contains("nest deeper"));
        let text = "not ".repeat(100_000) + "a";
        assert!(parse(&text, &n).is_err());
    }

    #[test]
    fn parentheses_and_nots_count_together_toward_the_depth_limit() {
        let n = names(&["a"]);
        // Each level alone is within the limit, together they are not: 40 × (1 + 1) = 80.
        let text = format!("{}a{}", "(not ".repeat(40), ")".repeat(40));
        let err = parse(&text, &n).unwrap_err();
        assert!(err.contains("nests deeper than 64"), "{err}");
        let text = format!("{}a{}", "(not ".repeat(30), ")".repeat(30));
        let mut c = parse(&text, &n).unwrap();
        let mut depth = 0;
        while let Cond::Not(inner) = c {
            c = *inner;
            depth += 1;
        }
        assert_eq!((depth, c), (30, Cond::Search(0)));
    }

    #[test]
    fn unknown_names_are_quoted_short() {
        let n = names(&["a"]);
        let long = "x".repeat(1 << 20);
        let err = parse(&long, &n).unwrap_err();
        assert!(err.len() < 300, "{} bytes", err.len());
        assert!(err.contains("'xxxx"), "{err}");
    }
}

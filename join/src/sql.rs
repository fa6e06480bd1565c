//! Statement text → the key that groups repeated statements, and the short
//! label of its flame-graph frame. Pure string work; never fails, whatever
//! the bytes (a cut-off statement, an unterminated quote, non-SQL).

/// Literals and parameter placeholders become `?`, comments go, whitespace
/// collapses to one space, and lists of them (`IN (?, ?, ?)`,
/// `VALUES (?, ?), (?, ?)`) become `(...)`.
///
/// `SELECT * FROM t WHERE id = 42` and `... WHERE id = $1` both give
/// `SELECT * FROM t WHERE id = ?`.
pub fn normalize(sql: &str) -> String {
    collapse_lists(&tokens(sql)).join("")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Space,
    Value,
    Text(&'a str),
}

fn tokens(sql: &str) -> Vec<String> {
    let mut out: Vec<Tok<'_>> = Vec::new();
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &bytes[i..];
        let (tok, len) = if c.is_ascii_whitespace() {
            (Tok::Space, 1)
        } else if rest.starts_with(b"--") {
            (Tok::Space, until(rest, b"\n"))
        } else if rest.starts_with(b"/*") {
            (Tok::Space, until(rest, b"*/"))
        } else if c == b'\'' {
            (Tok::Value, quoted(rest, b'\''))
        } else if c == b'"' || c == b'`' {
            let n = quoted(rest, c);
            (Tok::Text(&sql[i..i + n]), n)
        } else if c.is_ascii_digit() || (c == b'.' && rest.get(1).is_some_and(u8::is_ascii_digit)) {
            (Tok::Value, number(rest))
        } else if let Some(n) = placeholder(rest, out.last()) {
            (Tok::Value, n)
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let n = word(rest);
            (Tok::Text(&sql[i..i + n]), n)
        } else {
            // One punctuation character (ASCII, so always a char boundary).
            (Tok::Text(&sql[i..i + 1]), 1)
        };
        push(&mut out, tok);
        i += len;
    }
    if out.last() == Some(&Tok::Space) {
        out.pop();
    }
    let mut s: Vec<String> = out
        .into_iter()
        .map(|t| match t {
            Tok::Space => " ".to_string(),
            Tok::Value => "?".to_string(),
            Tok::Text(s) => s.to_string(),
        })
        .collect();
    if s.first().is_some_and(|t| t == " ") {
        s.remove(0);
    }
    s
}

fn push<'a>(out: &mut Vec<Tok<'a>>, t: Tok<'a>) {
    if t == Tok::Space && matches!(out.last(), None | Some(Tok::Space)) {
        return;
    }
    out.push(t);
}

/// Bytes up to and including `end`, or to the end of the text.
fn until(rest: &[u8], end: &[u8]) -> usize {
    rest.windows(end.len())
        .skip(1)
        .position(|w| w == end)
        .map_or(rest.len(), |p| p + 1 + end.len())
}

/// A quoted run, doubled quotes included; to the end if unterminated.
fn quoted(rest: &[u8], q: u8) -> usize {
    let mut i = 1;
    while i < rest.len() {
        if rest[i] == q {
            if rest.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    rest.len()
}

fn number(rest: &[u8]) -> usize {
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        let exponent_sign = (c == b'+' || c == b'-') && i > 0 && matches!(rest[i - 1], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn word(rest: &[u8]) -> usize {
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// `?`, `$1`, `%s`, `%(name)s`, `:name` (not a `::` cast), `@name`.
fn placeholder(rest: &[u8], previous: Option<&Tok<'_>>) -> Option<usize> {
    let c = rest[0];
    let next = rest.get(1).copied();
    match c {
        b'?' => Some(1 + rest[1..].iter().take_while(|b| b.is_ascii_digit()).count()),
        b'$' if next.is_some_and(|n| n.is_ascii_digit()) => {
            Some(1 + rest[1..].iter().take_while(|b| b.is_ascii_digit()).count())
        }
        b'%' if next == Some(b's') => Some(2),
        b'%' if next == Some(b'(') => {
            let close = rest.iter().position(|&b| b == b')')?;
            (rest.get(close + 1) == Some(&b's')).then_some(close + 2)
        }
        b':' | b'@' => {
            let after_colon = previous == Some(&Tok::Text(":"));
            let starts_name = next.is_some_and(|n| n.is_ascii_alphabetic() || n == b'_');
            (starts_name && !after_colon && next != Some(b':')).then(|| 1 + word(&rest[1..]))
        }
        _ => None,
    }
}

/// `( ? , ? , ? )` → `(...)`, then `(...), (...)` → `(...)`.
fn collapse_lists(tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "(" {
            if let Some(len) = value_list(&tokens[i..]) {
                let repeated = out.len() >= 2
                    && out[out.len() - 1].trim().is_empty()
                    && out[out.len() - 2] == ","
                    && out.iter().rev().nth(2).is_some_and(|t| t == "(...)");
                let repeated_tight =
                    out.len() >= 2 && out[out.len() - 1] == "," && out[out.len() - 2] == "(...)";
                if repeated {
                    out.truncate(out.len() - 2);
                } else if repeated_tight {
                    out.pop();
                } else {
                    out.push("(...)".into());
                }
                i += len;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Length of `( ? [, ?]* )` at the start of `tokens`, spaces allowed.
fn value_list(tokens: &[String]) -> Option<usize> {
    let mut expect_value = true;
    for (i, t) in tokens.iter().enumerate().skip(1) {
        match t.as_str() {
            " " => {}
            "?" if expect_value => expect_value = false,
            "," if !expect_value => expect_value = true,
            ")" if !expect_value => return Some(i + 1),
            _ => return None,
        }
    }
    None
}

/// The name of a statement's flame-graph frame, without the `[sql] ` prefix:
/// the verb and the table, as in `SELECT ... FROM items ...`.
pub fn label(normalized: &str) -> String {
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let Some(verb) = words.first() else {
        return "(empty statement)".into();
    };
    let verb = verb.to_ascii_uppercase();
    let after = |keyword: &str| {
        let at = words.iter().position(|w| w.eq_ignore_ascii_case(keyword))?;
        let table = words.get(at + 1)?;
        let more = words.len() > at + 2;
        Some((table.trim_end_matches([',', ';']).to_string(), more))
    };
    let shaped = match verb.as_str() {
        "SELECT" => after("FROM").map(|(t, more)| format!("SELECT ... FROM {t}{}", tail(more))),
        "INSERT" | "REPLACE" => {
            after("INTO").map(|(t, more)| format!("{verb} INTO {t}{}", tail(more)))
        }
        "UPDATE" => words
            .get(1)
            .map(|t| format!("UPDATE {t}{}", tail(words.len() > 2))),
        "DELETE" => after("FROM").map(|(t, more)| format!("DELETE FROM {t}{}", tail(more))),
        _ => None,
    };
    shaped.unwrap_or_else(|| shorten(normalized, 60))
}

fn tail(more: bool) -> &'static str {
    if more {
        " ..."
    } else {
        ""
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{} ...", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_placeholders_become_question_marks() {
        for sql in [
            "SELECT * FROM t WHERE id = 42",
            "SELECT * FROM t WHERE id = $1",
            "SELECT * FROM t WHERE id = %s",
            "SELECT * FROM t WHERE id = %(id)s",
            "SELECT * FROM t WHERE id = :id",
            "SELECT * FROM t WHERE id = ?",
            "SELECT *\n  FROM t   WHERE id = 'it''s' -- comment",
            "SELECT * /* why */ FROM t WHERE id = 1.5e-3",
        ] {
            assert_eq!(normalize(sql), "SELECT * FROM t WHERE id = ?", "{sql}");
        }
    }

    #[test]
    fn lists_collapse() {
        assert_eq!(
            normalize("SELECT 1 FROM t WHERE id IN (1, 2, 3, 4)"),
            "SELECT ? FROM t WHERE id IN (...)"
        );
        assert_eq!(
            normalize("INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?,?)"),
            "INSERT INTO t (a, b) VALUES (...)"
        );
    }

    #[test]
    fn casts_identifiers_and_names_survive() {
        assert_eq!(
            normalize(r#"SELECT "x1", t2.col_3 FROM t2 WHERE a::text = 'x'"#),
            r#"SELECT "x1", t2.col_3 FROM t2 WHERE a::text = ?"#
        );
    }

    #[test]
    fn broken_and_odd_text_never_panics() {
        for sql in [
            "'unterminated",
            "/* open",
            "%(x",
            "é'ß",
            "",
            "   ",
            "$",
            ":",
            "--",
        ] {
            let _ = normalize(sql);
            let _ = label(&normalize(sql));
        }
    }

    #[test]
    fn labels_name_the_verb_and_table() {
        let l = |s: &str| label(&normalize(s));
        assert_eq!(
            l("select id, name from items where id = 3"),
            "SELECT ... FROM items ..."
        );
        assert_eq!(l("SELECT count(*) FROM items"), "SELECT ... FROM items");
        assert_eq!(
            l("INSERT INTO items (name) VALUES ('a')"),
            "INSERT INTO items ..."
        );
        assert_eq!(l("UPDATE items SET a = 1"), "UPDATE items ...");
        assert_eq!(l("DELETE FROM items WHERE id = 1"), "DELETE FROM items ...");
        assert_eq!(l("BEGIN"), "BEGIN");
        assert_eq!(l(&"x ".repeat(100)).chars().count(), 64);
    }
}

//! Redaction of secrets before anything leaves the app: header values, query
//! parameters and body fields whose names say they hold credentials.
//!
//! Pure byte functions, so they run the same on a whole body and on the
//! first 16 KiB of one (a cut JSON document is still scanned to its end).

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Headers that carry credentials whatever their value looks like.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
];

/// A field, parameter or header whose name contains one of these holds a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
];

/// Whether a header's value must not be stored (`name` lowercased, as ASGI gives it).
pub fn secret_header(name: &str) -> bool {
    SECRET_HEADERS.contains(&name) || secret_name(name.as_bytes())
}

/// Whether a field or parameter name says it holds a secret (ASCII case-insensitive).
pub fn secret_name(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS
        .iter()
        .any(|w| lower.windows(w.len()).any(|part| part == w.as_bytes()))
}

/// `a=1&password=x` → `a=1&password=[redacted]`. Also form bodies.
pub fn urlencoded(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for (i, pair) in text.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) if secret_name(&pair[..eq]) => {
                out.extend_from_slice(&pair[..=eq]);
                out.extend_from_slice(REDACTED.as_bytes());
            }
            _ => out.extend_from_slice(pair),
        }
    }
    out
}

/// The body with secret fields redacted, judged by its content type: JSON
/// and form bodies are rewritten, anything else is kept as it is.
pub fn body(content_type: &str, body: &[u8]) -> Vec<u8> {
    let content_type = content_type.to_ascii_lowercase();
    if content_type.contains("x-www-form-urlencoded") {
        return urlencoded(body);
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if content_type.contains("json") || matches!(first, Some(b'{' | b'[')) {
        return json(body);
    }
    body.to_vec()
}

/// Replaces the value of every object member whose key names a secret with
/// `"[redacted]"`. Objects and arrays under such a key are scanned instead
/// (their own members are judged by their own keys). Tolerates cut documents.
pub fn json(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'"' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let end = string_end(text, i);
        out.extend_from_slice(&text[i..end]);
        let colon = skip_space(text, end);
        let key = &text[i + 1..end.saturating_sub(1).max(i + 1)];
        i = end;
        if colon >= text.len() || text[colon] != b':' || !secret_name(key) {
            continue;
        }
        let value = skip_space(text, colon + 1);
        out.extend_from_slice(&text[end..value]);
        i = value;
        match text.get(value) {
            None | Some(b'{' | b'[') => {}
            Some(b'"') => {
                out.extend_from_slice(b"\"[redacted]\"");
                i = string_end(text, value);
            }
            Some(_) => {
                out.extend_from_slice(b"\"[redacted]\"");
                i = value
                    + text[value..]
                        .iter()
                        .position(|&b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                        .unwrap_or(text.len() - value);
            }
        }
    }
    out
}

/// Index just past the string starting at `start` (a `"`), or the end of text.
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

fn skip_space(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && text[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_str(s: &str) -> String {
        String::from_utf8(json(s.as_bytes())).unwrap()
    }

    #[test]
    fn json_secrets_are_redacted_at_any_depth() {
        assert_eq!(
            json_str(
                r#"{"user": "ann", "password": "hunter2", "n": {"api_key": 12, "Token":null}}"#
            ),
            r#"{"user": "ann", "password": "[redacted]", "n": {"api_key": "[redacted]", "Token":"[redacted]"}}"#
        );
        assert_eq!(
            json_str(r#"[{"refresh_token" : "a\"b", "x": "password"}]"#),
            r#"[{"refresh_token" : "[redacted]", "x": "password"}]"#
        );
        // Cut in the middle of a secret: what is left of it is still hidden.
        assert_eq!(json_str(r#"{"secret": "abc"#), r#"{"secret": "[redacted]""#);
        assert_eq!(json_str(r#"{"secret""#), r#"{"secret""#);
        assert_eq!(
            json_str(r#"{"secrets": {"a": 1}}"#),
            r#"{"secrets": {"a": 1}}"#
        );
    }

    #[test]
    fn query_and_form_secrets_are_redacted() {
        assert_eq!(
            urlencoded(b"q=1&access_token=abc&PASSWORD=&x"),
            b"q=1&access_token=[redacted]&PASSWORD=[redacted]&x".to_vec()
        );
        assert_eq!(
            body("application/x-www-form-urlencoded", b"user=a&password=b"),
            b"user=a&password=[redacted]".to_vec()
        );
        assert_eq!(body("text/plain", b"password=b"), b"password=b".to_vec());
    }

    #[test]
    fn secret_headers() {
        for name in [
            "authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "x-github-token",
        ] {
            assert!(secret_header(name), "{name}");
        }
        for name in ["content-type", "accept", "user-agent"] {
            assert!(!secret_header(name), "{name}");
        }
    }
}

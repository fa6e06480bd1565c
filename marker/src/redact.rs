//! Redaction of secrets before anything leaves the app: header values, query
//! parameters and body fields whose names say they hold credentials.
//!
//! Pure byte functions, so they run the same on a whole body and on the
//! first 16 KiB of one (a cut JSON document is still scanned to its end).

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";

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
/// `secret_name` scans for these without looping over the list (tests check it does).
#[cfg_attr(not(test), allow(dead_code))]
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

/// The length of the shortest of [`SECRET_WORDS`].
const SHORTEST_WORD: usize = 5;

/// Whether a header's value must not be stored (its name in any case), without allocating.
pub(crate) fn secret_header_bytes(name: &[u8]) -> bool {
    SECRET_HEADERS
        .iter()
        .any(|h| h.len() == name.len() && h.as_bytes().eq_ignore_ascii_case(name))
        || secret_name(name)
}

/// Whether a field or parameter name says it holds a secret (ASCII
/// case-insensitive): whether it contains one of [`SECRET_WORDS`].
///
/// One pass over the name without allocating: the words are compared only
/// where a byte can begin one of them. Runs for every header of every
/// request, so it is written for speed; `secret_words_table_is_complete`
/// checks it against the list.
pub(crate) fn secret_name(name: &[u8]) -> bool {
    let at = |i: usize, word: &[u8]| {
        name.get(i..i + word.len())
            .is_some_and(|part| part.eq_ignore_ascii_case(word))
    };
    // No word is shorter than "token": the last four bytes cannot begin one.
    (0..name.len().saturating_sub(SHORTEST_WORD - 1)).any(|i| match name[i] | 0x20 {
        b'p' => at(i, b"password") || at(i, b"passwd"),
        b's' => at(i, b"secret"),
        b't' => at(i, b"token"),
        b'a' => {
            at(i, b"apikey")
                || (at(i, b"api")
                    && matches!(name.get(i + 3), Some(b'_' | b'-'))
                    && at(i + 4, b"key"))
        }
        b'c' => at(i, b"credential"),
        _ => false,
    })
}

/// `a=1&password=x` → `a=1&password=[redacted]`. Also form bodies.
pub(crate) fn urlencoded(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    urlencoded_into(text, &mut out);
    out
}

/// [`urlencoded`], appended to `out`.
pub(crate) fn urlencoded_into(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len());
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
}

/// The body with secret fields redacted, judged by its content type: JSON,
/// form and multipart form bodies are rewritten, anything else is kept as it
/// is.
pub(crate) fn body(content_type: &str, body: &[u8]) -> Vec<u8> {
    if body.is_empty() {
        return Vec::new();
    }
    let lower = content_type.to_ascii_lowercase();
    if lower.contains("x-www-form-urlencoded") {
        return urlencoded(body);
    }
    if lower.contains("multipart/form-data") {
        if let Some(boundary) = multipart_boundary(content_type) {
            return multipart(body, boundary.as_bytes());
        }
    }
    let content_type = lower;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if content_type.contains("json") || matches!(first, Some(b'{' | b'[')) {
        return json(body);
    }
    body.to_vec()
}

/// The `boundary` parameter of a multipart content type (case kept; it may
/// be quoted).
fn multipart_boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// A `multipart/form-data` body with the content of every part whose field
/// name says it holds a secret replaced by `[redacted]`. A body cut inside
/// such a part has the rest of it hidden.
pub(crate) fn multipart(body: &[u8], boundary: &[u8]) -> Vec<u8> {
    let delimiter = [b"--".as_slice(), boundary].concat();
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while let Some(found) = find(&body[at..], &delimiter) {
        // Up to and including this delimiter and its line.
        let part_start = at + found + delimiter.len();
        let headers_start = match find(&body[part_start..], b"\r\n") {
            Some(eol) => part_start + eol + 2,
            None => body.len(),
        };
        out.extend_from_slice(&body[at..headers_start]);
        at = headers_start;
        let Some(headers_len) = find(&body[at..], b"\r\n\r\n") else {
            break;
        };
        let content_start = at + headers_len + 4;
        let headers = &body[at..content_start];
        out.extend_from_slice(headers);
        at = content_start;
        let content_end = find(&body[at..], &[b"\r\n".as_slice(), &delimiter].concat())
            .map_or(body.len(), |end| at + end);
        if part_name(headers).is_some_and(secret_name) {
            out.extend_from_slice(REDACTED.as_bytes());
        } else {
            out.extend_from_slice(&body[at..content_end]);
        }
        at = content_end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// The `name` parameter of a part's `Content-Disposition: form-data;
/// name="..."` (not `filename`).
fn part_name(headers: &[u8]) -> Option<&[u8]> {
    let line = headers.split(|&b| b == b'\n').find(|line| {
        line.to_ascii_lowercase()
            .starts_with(b"content-disposition:")
    })?;
    line.split(|&b| b == b';').find_map(|param| {
        let param = param.trim_ascii();
        let value = param
            .get(..5)
            .filter(|key| key.eq_ignore_ascii_case(b"name="))
            .map(|_| &param[5..])?;
        Some(
            value
                .strip_prefix(b"\"")
                .map_or(value, |v| v.strip_suffix(b"\"").unwrap_or(v)),
        )
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Replaces the value of every object member whose key names a secret with
/// `"[redacted]"`. Objects and arrays under such a key are scanned instead
/// (their own members are judged by their own keys). Tolerates cut documents.
pub(crate) fn json(text: &[u8]) -> Vec<u8> {
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
    fn multipart_secret_parts_are_redacted() {
        let form = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"username\"\r\n\r\n\
ada\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"password\"\r\n\r\n\
hunter2\r\n\
--XyZ\r\n\
Content-Disposition: form-data; filename=\"token.txt\"; name=\"upload\"\r\n\
Content-Type: text/plain\r\n\r\n\
file text\r\n\
--XyZ--\r\n";
        let redacted = body_text("multipart/form-data; boundary=XyZ", form);
        assert!(redacted.contains("ada\r\n"), "{redacted}");
        assert!(
            redacted.contains("name=\"password\"\r\n\r\n[redacted]\r\n--XyZ"),
            "{redacted}"
        );
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(
            redacted.contains("file text"),
            "a file named token.txt is no secret field"
        );
        assert!(redacted.ends_with("--XyZ--\r\n"), "{redacted}");
        // A quoted boundary, and a body cut inside the secret.
        let cut = b"--b\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\nsk-12";
        let redacted = body_text("multipart/form-data; boundary=\"b\"", cut);
        assert!(redacted.ends_with("\r\n\r\n[redacted]"), "{redacted}");
        // No boundary: kept as it is (nothing to split on).
        assert_eq!(
            body("multipart/form-data", b"password"),
            b"password".to_vec()
        );
    }

    fn body_text(content_type: &str, raw: &[u8]) -> String {
        String::from_utf8(body(content_type, raw)).unwrap()
    }

    #[test]
    fn secret_words_table_is_complete() {
        // The fast scan of `secret_name` finds every word of the list, in any
        // case, anywhere in a name, and nothing else that is close.
        assert_eq!(
            Some(SHORTEST_WORD),
            SECRET_WORDS.iter().map(|w| w.len()).min()
        );
        for word in SECRET_WORDS {
            for name in [
                word.to_string(),
                word.to_uppercase(),
                format!("x-{word}-id"),
                format!("my{word}"),
            ] {
                assert!(secret_name(name.as_bytes()), "{name}");
            }
        }
        for name in [
            "passw",
            "api",
            "api_ke",
            "apix_key",
            "tokn",
            "secre",
            "credentials_",
        ] {
            assert_eq!(
                secret_name(name.as_bytes()),
                SECRET_WORDS.iter().any(|w| name.contains(w)),
                "{name}"
            );
        }
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
            assert!(secret_header_bytes(name.as_bytes()), "{name}");
        }
        for name in ["content-type", "accept", "user-agent"] {
            assert!(!secret_header_bytes(name.as_bytes()), "{name}");
        }
        assert!(secret_header_bytes(b"Authorization"));
        assert!(secret_header_bytes(b"X-Refresh-TOKEN"));
        assert!(!secret_header_bytes(b"Accept"));
    }
}

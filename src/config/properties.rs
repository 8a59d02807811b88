//! Java `.properties` text as `(key, value)` pairs.

/// Splits Java properties text into trimmed `(key, value)` pairs, in order (the parser behind
/// [`ProducerConfig::from_properties_str`](super::ProducerConfig::from_properties_str); for
/// tools that merge a file with overrides before
/// [`ProducerConfig::from_map`](super::ProducerConfig::from_map)).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut line = first.trim_start().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        // Java line continuation: an odd number of trailing backslashes.
        while ends_with_odd_backslashes(&line) {
            line.pop();
            match lines.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        let line = line.trim_end();
        let sep = line
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(line.len());
        let key = &line[..sep];
        let mut rest = line[sep..].trim_start();
        if let Some(stripped) = rest.strip_prefix(['=', ':']) {
            rest = stripped.trim_start();
        }
        out.push((key.to_string(), rest.to_string()));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

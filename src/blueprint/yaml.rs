//! A fast parser for the YAML that templates produce: block mappings and sequences,
//! plain and quoted scalars, literal block scalars (`|`), and single-line flow
//! collections — which covers the JSON literals every `{{ value }}` emits. Anything else
//! (anchors, tags, folded scalars, multi-line flow or plain scalars, directives, …) makes
//! it answer `None`, and the caller falls back to `serde_yaml`.
//!
//! It exists for speed (libyaml took three quarters of a render) and must give exactly
//! what `serde_yaml::from_str::<serde_json::Value>` gives whenever it answers: scalars are
//! resolved by the same rules as serde_yaml 0.9 (YAML 1.2 core schema). Debug builds
//! check every answer against serde_yaml. Pure; no IO.

use serde_json::{Map, Number, Value};

/// Parses one YAML document, or `None` when it uses anything outside the supported
/// subset (or is not valid YAML).
pub fn parse(doc: &str) -> Option<Value> {
    if !clean(doc) {
        return None;
    }
    let mut lines = Vec::with_capacity(doc.len() / 24);
    for raw in split_lines(doc) {
        let content = raw.trim_start_matches(' ');
        let indent = raw.len() - content.len();
        if content.starts_with('\t') {
            return None;
        }
        lines.push(Line {
            raw,
            indent,
            content,
            blank: content.trim().is_empty() || content.starts_with('#'),
        });
    }
    let mut p = Parser { lines, pos: 0 };
    p.skip_blank();
    if p.eof() {
        return None;
    }
    let first = p.lines[p.pos].indent;
    let value = p.block(first)?;
    p.skip_blank();
    p.eof().then_some(value)
}

/// `text.split('\n')`, with a vectorized search for the breaks (a render spent more time
/// finding line breaks through `str::split` than parsing some of the lines).
pub(crate) fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut breaks = memchr::memchr_iter(b'\n', text.as_bytes());
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match breaks.next() {
            Some(end) => {
                let line = &text[start..end];
                start = end + 1;
                Some(line)
            }
            None => {
                done = true;
                Some(&text[start..])
            }
        }
    })
}

/// No characters libyaml refuses or treats as line breaks, no CR, no BOM.
fn clean(doc: &str) -> bool {
    let ascii_ok = |b: u8| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b);
    if doc.bytes().all(ascii_ok) {
        return true;
    }
    doc.chars().all(|c| {
        if c.is_ascii() {
            ascii_ok(c as u8)
        } else {
            !matches!(
                c,
                '\u{80}'
                    ..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )
        }
    })
}

struct Line<'a> {
    raw: &'a str,
    indent: usize,
    content: &'a str,
    blank: bool,
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn eof(&self) -> bool {
        self.pos >= self.lines.len()
    }

    fn skip_blank(&mut self) {
        while self.pos < self.lines.len() && self.lines[self.pos].blank {
            self.pos += 1;
        }
    }

    /// The next non-blank line's index, without moving.
    fn peek(&self) -> Option<usize> {
        (self.pos..self.lines.len()).find(|&i| !self.lines[i].blank)
    }

    /// A block node starting at the current (non-blank) line, indented at least `min`.
    fn block(&mut self, min: usize) -> Option<Value> {
        self.skip_blank();
        let line = self.lines.get(self.pos)?;
        if line.indent < min {
            return None;
        }
        let indent = line.indent;
        if is_seq_item(line.content) {
            self.sequence(indent)
        } else if looks_like_entry(line.content) {
            self.mapping(indent)
        } else {
            None
        }
    }

    fn mapping(&mut self, indent: usize) -> Option<Value> {
        let mut map = Map::new();
        loop {
            self.skip_blank();
            let Some(line) = self.lines.get(self.pos) else {
                break;
            };
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_seq_item(line.content) {
                return None;
            }
            let (key, rest) = split_key(line.content)?;
            self.pos += 1;
            let value = self.value_after_key(rest, indent)?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(_) => return None,
            }
        }
        Some(Value::Object(map))
    }

    fn sequence(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            let Some(line) = self.lines.get(self.pos) else {
                break;
            };
            if line.indent < indent || (line.indent == indent && !is_seq_item(line.content)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let after_dash = &line.content[1..];
            let item = after_dash.trim_start_matches(' ');
            let item_col = indent + 1 + (after_dash.len() - item.len());
            if item.is_empty() || item.starts_with('#') {
                self.pos += 1;
                items.push(self.nested_or_null(indent, false)?);
            } else if is_seq_item(item) {
                return None;
            } else if looks_like_entry(item) {
                // `- key: value`: a mapping whose first entry shares the dash's line.
                let l = &mut self.lines[self.pos];
                l.indent = item_col;
                l.content = item;
                items.push(self.mapping(item_col)?);
            } else {
                self.pos += 1;
                items.push(self.inline(item, indent)?);
            }
        }
        Some(Value::Array(items))
    }

    /// After `key:` with nothing on the line: a nested block, a sequence at the key's
    /// own indentation (`allow_compact`), or null.
    fn nested_or_null(&mut self, indent: usize, allow_compact: bool) -> Option<Value> {
        match self.peek() {
            Some(i) if self.lines[i].indent > indent => self.block(indent + 1),
            Some(i)
                if allow_compact
                    && self.lines[i].indent == indent
                    && is_seq_item(self.lines[i].content) =>
            {
                self.pos = i;
                self.sequence(indent)
            }
            _ => Some(Value::Null),
        }
    }

    fn value_after_key(&mut self, rest: &'a str, indent: usize) -> Option<Value> {
        let rest = rest.trim_start_matches(' ');
        if rest.is_empty() || rest.starts_with('#') {
            return self.nested_or_null(indent, true);
        }
        self.inline(rest, indent)
    }

    /// A value written on the line of its key or dash; `parent` is that line's indent.
    fn inline(&mut self, text: &'a str, parent: usize) -> Option<Value> {
        let value = match text.as_bytes()[0] {
            b'|' => return self.literal(text, parent),
            b'"' | b'\'' | b'[' | b'{' => {
                let mut i = 0;
                let v = flow_value(text, &mut i)?;
                let tail = &text[i..];
                let trimmed = tail.trim_start_matches(' ');
                let comment = trimmed.starts_with('#') && trimmed.len() < tail.len();
                if !(trimmed.is_empty() || comment) {
                    return None;
                }
                v
            }
            b'>' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`' | b'?' | b',' | b']' | b'}' => {
                return None;
            }
            b'-' | b':' if text.len() == 1 || text.as_bytes()[1] == b' ' => return None,
            _ => {
                let scalar = strip_comment(text);
                if colon_at(scalar).is_some() || scalar.contains('\t') {
                    return None;
                }
                resolve(scalar)?
            }
        };
        // A more indented line after an inline value would continue it (multi-line
        // scalar) or be an error: leave both to serde_yaml.
        match self.peek() {
            Some(i) if self.lines[i].indent > parent => None,
            _ => Some(value),
        }
    }

    /// A literal block scalar (`|`, `|-`, `|+`) whose header is `header`.
    fn literal(&mut self, header: &str, parent: usize) -> Option<Value> {
        let chomp = match strip_comment(header) {
            "|" => Chomp::Clip,
            "|-" => Chomp::Strip,
            "|+" => Chomp::Keep,
            _ => return None,
        };
        let start = self.pos;
        // The first line with more than spaces sets the content's indentation (a `#`
        // there is content, not a comment).
        let first =
            (start..self.lines.len()).find(|&i| !self.lines[i].raw.trim_matches(' ').is_empty())?;
        let content_indent = self.lines[first].indent;
        if content_indent <= parent {
            return None;
        }
        let mut end = start;
        for (i, line) in self.lines.iter().enumerate().skip(start) {
            if line.raw.trim_matches(' ').is_empty() {
                // Blank lines inside the scalar; longer ones would carry spaces into it.
                if line.raw.len() > content_indent {
                    return None;
                }
                continue;
            }
            if line.indent < content_indent {
                break;
            }
            end = i + 1;
        }
        let mut text = String::new();
        for (n, line) in self.lines[start..end].iter().enumerate() {
            if n > 0 {
                text.push('\n');
            }
            if line.raw.len() >= content_indent {
                text.push_str(&line.raw[content_indent..]);
            }
        }
        // The last content line's break, unless the document ends on that line.
        let final_break = end < self.lines.len();
        // Blank lines after the last content line: kept only by `|+`.
        let mut next = end;
        while next < self.lines.len() && self.lines[next].raw.trim_matches(' ').is_empty() {
            next += 1;
        }
        // The document's last element (after its final '\n') is not a line.
        let trailing_breaks = (next - end).saturating_sub(usize::from(next == self.lines.len()));
        self.pos = end;
        match chomp {
            Chomp::Clip => {
                if final_break {
                    text.push('\n');
                }
            }
            Chomp::Strip => {}
            Chomp::Keep => {
                if final_break {
                    text.push('\n');
                }
                for _ in 0..trailing_breaks {
                    text.push('\n');
                }
            }
        }
        Some(Value::String(text))
    }
}

enum Chomp {
    Clip,
    Strip,
    Keep,
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Whether a line looks like `key: …` (the full check is `split_key`).
fn looks_like_entry(content: &str) -> bool {
    match content.as_bytes().first() {
        Some(b'"') => {
            // A quoted key is followed by `:`; a quoted scalar is not.
            let b = content.as_bytes();
            let mut i = 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            b.get(i + 1) == Some(&b':')
        }
        Some(c) if b"-?:,[]{}#&*!|>'%@`".contains(c) => false,
        Some(_) => colon_at(content).is_some(),
        None => false,
    }
}

/// The first `:` followed by a space or the end of the line.
fn colon_at(content: &str) -> Option<usize> {
    let b = content.as_bytes();
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b':') {
        let i = from + off;
        if i + 1 == b.len() || b[i + 1] == b' ' {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Whether `text` holds ` #` (the start of a comment after a value).
fn has_space_hash(text: &str) -> bool {
    text.as_bytes().windows(2).any(|w| w == b" #")
}

/// Splits `key: rest` (or `key:` at the end of the line). The key is a plain scalar
/// resolving to a string, or a double-quoted string.
fn split_key(content: &str) -> Option<(String, &str)> {
    if content.starts_with('"') {
        let mut i = 0;
        let Value::String(key) = flow_value(content, &mut i)? else {
            return None;
        };
        let rest = &content[i..];
        let rest = rest.strip_prefix(':')?;
        return (rest.is_empty() || rest.starts_with(' ')).then_some((key, rest));
    }
    let first = content.as_bytes().first()?;
    if b"-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return None;
    }
    let colon = colon_at(content)?;
    let key = &content[..colon];
    if key.ends_with(' ') || has_space_hash(key) || key.contains('\t') {
        return None;
    }
    match resolve(key)? {
        Value::String(s) => Some((s, &content[colon + 1..])),
        _ => None,
    }
}

/// Cuts a trailing ` # comment` and trailing spaces off a plain scalar.
fn strip_comment(text: &str) -> &str {
    let b = text.as_bytes();
    let cut = (1..b.len())
        .find(|&i| b[i] == b'#' && b[i - 1] == b' ')
        .map_or(b.len(), |i| i - 1);
    text[..cut].trim_end_matches(' ')
}

/// A flow value starting at `*i` on one line: JSON, or YAML flow with plain scalars.
fn flow_value(s: &str, i: &mut usize) -> Option<Value> {
    skip_spaces(s, i);
    let b = s.as_bytes();
    match *b.get(*i)? {
        b'[' => {
            *i += 1;
            let mut items = Vec::new();
            loop {
                skip_spaces(s, i);
                if *b.get(*i)? == b']' {
                    *i += 1;
                    return Some(Value::Array(items));
                }
                items.push(flow_value(s, i)?);
                skip_spaces(s, i);
                match *b.get(*i)? {
                    b',' => *i += 1,
                    b']' => {
                        *i += 1;
                        return Some(Value::Array(items));
                    }
                    _ => return None,
                }
            }
        }
        b'{' => {
            *i += 1;
            let mut map = Map::new();
            loop {
                skip_spaces(s, i);
                if *b.get(*i)? == b'}' {
                    *i += 1;
                    return Some(Value::Object(map));
                }
                let key = match *b.get(*i)? {
                    b'"' => match flow_value(s, i)? {
                        Value::String(k) => k,
                        _ => return None,
                    },
                    _ => {
                        let start = *i;
                        while let Some(&c) = b.get(*i) {
                            if c == b':' && matches!(b.get(*i + 1), Some(b' ') | None) {
                                break;
                            }
                            if b",[]{}#\"'".contains(&c) {
                                return None;
                            }
                            *i += 1;
                        }
                        match resolve(s[start..*i].trim_end_matches(' '))? {
                            Value::String(k) if !k.is_empty() => k,
                            _ => return None,
                        }
                    }
                };
                skip_spaces(s, i);
                if *b.get(*i)? != b':' {
                    return None;
                }
                *i += 1;
                skip_spaces(s, i);
                let value = match *b.get(*i)? {
                    b',' | b'}' => Value::Null,
                    _ => flow_value(s, i)?,
                };
                if map.insert(key, value).is_some() {
                    return None;
                }
                skip_spaces(s, i);
                match *b.get(*i)? {
                    b',' => *i += 1,
                    b'}' => {
                        *i += 1;
                        return Some(Value::Object(map));
                    }
                    _ => return None,
                }
            }
        }
        b'"' => double_quoted(s, i).map(Value::String),
        b'\'' => {
            *i += 1;
            let mut out = String::new();
            loop {
                let rest = &s[*i..];
                let q = rest.find('\'')?;
                out.push_str(&rest[..q]);
                *i += q + 1;
                if s.as_bytes().get(*i) == Some(&b'\'') {
                    out.push('\'');
                    *i += 1;
                } else {
                    return Some(Value::String(out));
                }
            }
        }
        b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'#' | b'?' | b':' => None,
        // `-` may start a plain scalar when a safe character follows (`-h`).
        b'-' if !b
            .get(*i + 1)
            .is_some_and(|n| !matches!(n, b' ' | b',' | b'[' | b']' | b'{' | b'}')) =>
        {
            None
        }
        _ => {
            let start = *i;
            while let Some(&c) = b.get(*i) {
                if b",[]{}".contains(&c)
                    || (c == b':'
                        && matches!(b.get(*i + 1), Some(b' ' | b',' | b']' | b'}') | None))
                    || (c == b'#' && *i > start && b[*i - 1] == b' ')
                {
                    break;
                }
                *i += 1;
            }
            let scalar = s[start..*i].trim_end_matches(' ');
            if scalar.is_empty() || b.get(*i) == Some(&b':') || b.get(*i) == Some(&b'#') {
                return None;
            }
            resolve(scalar)
        }
    }
}

fn skip_spaces(s: &str, i: &mut usize) {
    while s.as_bytes().get(*i) == Some(&b' ') {
        *i += 1;
    }
}

/// A double-quoted string with JSON escapes (the ones YAML shares with JSON). Any other
/// escape, or a raw control character, answers `None`.
fn double_quoted(s: &str, i: &mut usize) -> Option<String> {
    let b = s.as_bytes();
    *i += 1;
    let mut out = String::new();
    loop {
        let start = *i;
        while let Some(&c) = b.get(*i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            *i += 1;
        }
        out.push_str(&s[start..*i]);
        match *b.get(*i)? {
            b'"' => {
                *i += 1;
                return Some(out);
            }
            b'\\' => {
                *i += 1;
                let c = *b.get(*i)?;
                *i += 1;
                match c {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        // YAML has no surrogate pairs: `\ud83d` is an error there.
                        let code = hex4(s, i)?;
                        if (0xd800..0xe000).contains(&code) {
                            return None;
                        }
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            b'\t' => {
                out.push('\t');
                *i += 1;
            }
            _ => return None,
        }
    }
}

fn hex4(s: &str, i: &mut usize) -> Option<u32> {
    let h = s.get(*i..*i + 4)?;
    *i += 4;
    if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// Resolves a plain scalar the way serde_yaml 0.9 does into `serde_json::Value`; `None`
/// for values serde_json cannot hold the same way (non-finite floats, 128-bit ints).
fn resolve(v: &str) -> Option<Value> {
    if v.is_empty() || matches!(v, "null" | "Null" | "NULL" | "~") {
        return Some(Value::Null);
    }
    match v {
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let first = v.as_bytes()[0];
    // Only scalars that start like a number can be one; the rest are strings.
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Some(Value::String(v.to_owned()));
    }
    if let Some(n) = parse_unsigned(v) {
        return Some(Value::Number(n.into()));
    }
    if let Some(n) = parse_negative(v) {
        return Some(Value::Number(n.into()));
    }
    if looks_like_wide_int(v) && !digits_but_not_number(v) {
        return None;
    }
    if !digits_but_not_number(v) {
        let unpositive = match v.strip_prefix('+') {
            Some(u) if u.starts_with(['+', '-']) => return Some(Value::String(v.to_owned())),
            Some(u) => u,
            None => v,
        };
        if matches!(unpositive, ".inf" | ".Inf" | ".INF")
            || matches!(v, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        {
            return None;
        }
        if let Ok(f) = unpositive.parse::<f64>()
            && f.is_finite()
        {
            return Some(Value::Number(Number::from_f64(f)?));
        }
    }
    Some(Value::String(v.to_owned()))
}

fn radix_body(v: &str) -> (u32, &str) {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = v.strip_prefix(prefix) {
            return (radix, rest);
        }
    }
    (10, v)
}

fn parse_unsigned(v: &str) -> Option<u64> {
    let unpositive = v.strip_prefix('+').unwrap_or(v);
    let (radix, body) = radix_body(unpositive);
    if radix != 10 {
        if body.starts_with(['+', '-']) {
            return None;
        }
        if let Ok(n) = u64::from_str_radix(body, radix) {
            return Some(n);
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(v) {
        return None;
    }
    unpositive.parse::<u64>().ok()
}

fn parse_negative(v: &str) -> Option<i64> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = v.strip_prefix(prefix)
            && let Ok(n) = i64::from_str_radix(&format!("-{rest}"), radix)
        {
            return Some(n);
        }
    }
    if digits_but_not_number(v) {
        return None;
    }
    v.parse::<i64>().ok()
}

/// An integer too wide for 64 bits, which serde_yaml reads as 128-bit and serde_json
/// holds differently: leave it to serde_yaml.
fn looks_like_wide_int(v: &str) -> bool {
    let body = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (radix, digits) = radix_body(body);
    !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
}

fn digits_but_not_number(v: &str) -> bool {
    let v = v.strip_prefix(['-', '+']).unwrap_or(v);
    v.len() > 1 && v.starts_with('0') && v[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with both parsers; when the fast one answers, they must agree.
    #[track_caller]
    fn agree(doc: &str) -> bool {
        let slow: Result<Value, _> = serde_yaml::from_str(doc);
        match parse(doc) {
            Some(fast) => {
                assert_eq!(Some(&fast), slow.as_ref().ok(), "doc:\n{doc}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_supported_subset_matches_serde_yaml() {
        let docs = [
            "a: 1\nb: x\nc:\n  d: [1, 2, three]\n  e: {f: g, \"h\":\"i\"}\n",
            "list:\n- a\n- b: c\n  d: e\n-\n  - nested\nnext: 1\n",
            "k:\n  - name: a\n    args:\n      - |\n        line one\n          indented\n\n        after blank\n    v: '' \n",
            "s: |-\n  strip\n\nt: |+\n  keep\n\n\nu: end\n",
            "n: null\nt: true\nf: False\ni: -12\nh: 0x1F\no: 0o17\nz: 007\nfl: 1.5e3\npct: 25%\nq: 500m\nv: 1.0\nneg: -0.5\nplus: +3\n",
            "j: {\"a\":[1,2.5,\"x\\n\\u00e9\\u2028🚀\"],\"b\":null,\"c\":true}\n",
            "quoted: \"a: b # not a comment\"  # but this is\nplain: a#b\nurl: http://x:80/y\n",
            "e:\nf: ''\ng: 'it''s'\n",
            "\"quoted key\": 1\n\"k.x/y\": {}\n",
            "ports:\n  - {protocol: UDP, port: 53}\n  - {protocol: TCP, port: 53}\n",
            "items:\n  - \"quoted \\\" item\"\n  - \"k\": v\n",
            "a: b\n# comment\n\n  # indented comment\nc: d\n",
            "x: [a, [b, c], {d: e}]\n",
            "cmd: [pg_isready, -h, 127.0.0.1, -U, x, a-b, -1, -.5]\n",
            "x: |\n  text\n",
            "x: |\n  text\n\n\n",
            "x: |+\n  text\n\n",
            "nums: [0, -0, 1_000, 1e400, .5, -.5, 12e3, 0x, 0b101, -0x10, 1.]\n",
            "emoji: \"🚀 ünï\"\nraw: ünï 🚀\n",
        ];
        for d in docs {
            assert!(agree(d), "fast parser declined:\n{d}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_yaml() {
        for d in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: >\n  folded\n",
            "a: multi\n  line plain\n",
            "a: [1,\n  2]\n",
            "? complex\n: key\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\na: 2\n",
            "a: .inf\n",
            "a: 99999999999999999999999\n",
            "a: \"\\x41\"\n",
            "a: \"\\ud83d\\ude80\"\n",
            "a:\tb\n",
            "a: b: c\n",
            "a: \u{2028}\n",
            "just a scalar\n",
            "a: 1\n b: 2\n",
        ] {
            assert!(!agree(d), "fast parser should decline:\n{d}");
        }
    }
}

//! The line grammar of a configuration file, and the rules that hold across its lines.
//!
//! ```text
//! file    = *( line ( LF / CRLF ) ) [ line ]
//! line    = *WSP [ key *WSP "=" *WSP value ] *WSP [ "#" comment ]
//! key     = one of the names in the module docs (lower case; case-sensitive)
//! value   = the rest of the line up to the first "#", trimmed
//! ```
//!
//! A `#` starts a comment anywhere on a line, so no value can contain one. Blank lines are
//! ignored (a UTF-8 byte order mark at the start of the file is skipped by `parse`), and
//! every key except `backend` may be given at most once; the same backend may not be listed
//! twice.
//!
//! Values are taken as written, spaces included, so quotes would become part of them
//! (`cache_dir = "cache"` would name a directory `"cache"`): a value that starts or ends with
//! `"` or `'` is refused, with the unquoted line as a hint.
//!
//! What a value means is not decided here: `apply` in `mod.rs` hands it to the parser of its
//! key (`values.rs`, `addresses.rs`).

use super::{apply, quote, routing, Config, Pool, Source, KEYS};

/// Reads line number `line` (1-based), `raw`, into `config`, and records that the line set
/// its key.
///
/// # Errors
/// A message without the line number: a line that is not `key = value`, an unknown or
/// repeated key, a missing, quoted or bad value (prefixed with its key), a repeated backend.
pub(super) fn read_line(config: &mut Config, raw: &str, line: usize) -> Result<(), String> {
    let Some((key, value)) = split_line(raw)? else {
        return Ok(());
    };
    if let Some(name) = key
        .strip_prefix("pool")
        .filter(|n| n.starts_with([' ', '\t']))
    {
        return read_pool(config, name.trim(), value, line);
    }
    let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
        return Err(format!("unknown key {}", quote(key)));
    };
    let repeatable = matches!(key, "backend" | "route");
    if let (false, Source::Line(first)) = (repeatable, config.sources.of(key)) {
        return Err(format!("`{key}` given twice (first on line {first})"));
    }
    if value.is_empty() {
        return Err(format!("missing value after `{key} =`"));
    }
    check_unquoted(key, value)
        .and_then(|()| apply(config, key, value))
        .map_err(|m| format!("{key}: {m}"))?;
    if key == "backend" {
        check_new_backend(config)?;
        config.sources.backends.push(line);
    } else if key == "route" {
        config.sources.routes.push(line);
    } else {
        config.sources.set(key, Source::Line(line));
    }
    Ok(())
}

/// A `pool NAME = ...` line: a pool of its own backends (see `routing`), each NAME once.
fn read_pool(config: &mut Config, name: &str, value: &str, line: usize) -> Result<(), String> {
    let name = routing::parse_pool_name(name)?;
    if let Some(i) = config.pools.iter().position(|p| p.name == name) {
        let first = config.sources.pools[i];
        return Err(format!(
            "pool `{name}` declared twice (first on line {first})"
        ));
    }
    if value.is_empty() {
        return Err(format!("missing backends after `pool {name} =`"));
    }
    check_unquoted("pool", value)?;
    let backends = routing::parse_pool_backends(value).map_err(|m| format!("pool {name}: {m}"))?;
    config.pools.push(Pool { name, backends });
    config.sources.pools.push(line);
    Ok(())
}

/// Refuses a value wrapped in quotes (or starting or ending with one): values are taken as
/// written, so the quotes would become part of a path or a name.
fn check_unquoted(key: &str, value: &str) -> Result<(), String> {
    let is_quote = |c: char| c == '"' || c == '\'';
    if !value.starts_with(is_quote) && !value.ends_with(is_quote) {
        return Ok(());
    }
    let bare = value.trim_matches(is_quote).trim();
    Err(format!(
        "values are written without quotes, or the quotes become part of the value: \
         write {}",
        quote(&format!("{key} = {bare}"))
    ))
}

/// Refuses the backend just added when an earlier line lists the same server: every line is
/// one backend, so a repeated line would silently give one server a double share (and two
/// health records); `weight=N` is the way to give it more.
fn check_new_backend(config: &Config) -> Result<(), String> {
    let Some((new, earlier)) = config.backends.split_last() else {
        return Ok(());
    };
    match earlier.iter().position(|b| b.same_as(new)) {
        Some(first) => Err(format!(
            "backend {} is listed twice (first on line {}): remove one; each line is one \
             backend, and `weight=N` gives it a larger share",
            quote(&new.authority()),
            config.sources.backends[first]
        )),
        None => Ok(()),
    }
}

/// Splits one line into its trimmed key and value, or `None` for a blank or comment line.
fn split_line(raw: &str) -> Result<Option<(&str, &str)>, String> {
    let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
    if content.is_empty() {
        return Ok(None);
    }
    let (key, value) = content
        .split_once('=')
        .ok_or_else(|| "expected `key = value`".to_string())?;
    let key = key.trim();
    if key.is_empty() {
        return Err("missing key before `=` (expected `key = value`)".to_string());
    }
    Ok(Some((key, value.trim())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::proxy::config::parse;
    use crate::proxy::config::tests::{bad_line, error, MINIMAL};

    #[test]
    fn comments_blank_lines_whitespace_and_crlf() {
        let text = "\u{feff}# header\r\n\r\n   \t \r\n  listen\t=\t127.0.0.1:9000   # trailing\r\n\
                    backend=localhost:81#no space\r\n# the end";
        let c = parse(text, "test.conf").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.backends[0].authority(), "localhost:81");
    }

    #[test]
    fn backends_keep_their_order() {
        let text = "backend = c:3\nbackend = a:1\nbackend = b:2\n";
        let c = parse(text, "test.conf").unwrap();
        let names: Vec<&str> = c.backends.iter().map(|b| b.host.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn line_without_equals_sign() {
        assert_eq!(
            error("backend = a:1\n\nlisten 8080\n"),
            (3, "expected `key = value`".to_string())
        );
    }

    #[test]
    fn empty_key_and_empty_value() {
        assert_eq!(
            bad_line("  = 5"),
            "missing key before `=` (expected `key = value`)"
        );
        assert_eq!(
            bad_line("cache_dir =   # none"),
            "missing value after `cache_dir =`"
        );
        assert_eq!(bad_line("methods ="), "missing value after `methods =`");
    }

    #[test]
    fn unknown_key_with_display() {
        let text = "# proxy\nlisten = 0.0.0.0:8080\n\nbackend = a:1\n\n\nbakend = b:2\n";
        let e = parse(text, "proxy.conf").unwrap_err();
        assert_eq!(e.to_string(), "proxy.conf:7: unknown key `bakend`");
        assert_eq!(bad_line("Listen = 1.2.3.4:5"), "unknown key `Listen`");
    }

    #[test]
    fn duplicate_key() {
        let text = "backend = a:1\nlisten = 1.2.3.4:80\ncache = on\nlisten = 1.2.3.4:81\n";
        assert_eq!(
            error(text),
            (4, "`listen` given twice (first on line 2)".to_string())
        );
    }

    #[test]
    fn a_quoted_value_is_refused_with_a_hint() {
        assert_eq!(
            bad_line("cache_dir = \"cache\""),
            "cache_dir: values are written without quotes, or the quotes become part of the \
             value: write `cache_dir = cache`"
        );
        assert_eq!(
            bad_line("log_file = 'logs/my proxy.log'   # spaces need no quotes"),
            "log_file: values are written without quotes, or the quotes become part of the \
             value: write `log_file = logs/my proxy.log`"
        );
        // Half-quoted too (`"a#b"` loses its end to the comment), and on every key.
        assert!(bad_line("access_log = \"a#b\"").ends_with("write `access_log = a`"));
        assert!(bad_line("listen = \"0.0.0.0:80\"").starts_with("listen: values are"));
        assert!(bad_line("status_path = /x'").starts_with("status_path: values are"));
        // Quotes inside a value are kept.
        let c = parse(&format!("{MINIMAL}cache_dir = it's here\n"), "t").unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("it's here"));
    }

    #[test]
    fn a_duplicate_backend_is_refused_with_its_first_line() {
        let text = "backend = 127.0.0.1:8081\nbackend = 127.0.0.1:8082\nbackend = 127.0.0.1:8081\n";
        assert_eq!(
            error(text),
            (
                3,
                "backend `127.0.0.1:8081` is listed twice (first on line 1): remove one; each \
                 line is one backend, and `weight=N` gives it a larger share"
                    .to_string()
            )
        );
        for (first, second) in [
            ("App.Example:80", "app.example:80"),
            ("[::1]:80", "[0::1]:80"),
        ] {
            let (line, message) = error(&format!("backend = {first}\nbackend = {second}\n"));
            assert_eq!(line, 2);
            assert!(
                message.contains("listed twice (first on line 1)"),
                "{message}"
            );
        }
        // Same host, other port; or a name and an address: two backends.
        let c = parse(
            "backend = a:1\nbackend = a:2\nbackend = localhost:1\nbackend = 127.0.0.1:1\n",
            "t",
        );
        assert_eq!(c.unwrap().backends.len(), 4);
    }

    #[test]
    fn hostile_long_lines_are_quoted_short() {
        let key = "k".repeat(100_000);
        let message = bad_line(&format!("{key} = 1"));
        assert!(message.starts_with("unknown key `kkk"));
        assert!(message.len() < 200, "{}", message.len());
        let message = bad_line(&format!("backend = {}:80", "a".repeat(100_000)));
        assert!(message.ends_with("…`"), "{message}");
        assert!(message.len() < 200, "{}", message.len());
        assert_eq!(
            error(&"x".repeat(1_000_000)),
            (1, "expected `key = value`".to_string())
        );
    }

    #[test]
    fn hostile_nul_and_control_bytes() {
        assert_eq!(bad_line("\0"), "expected `key = value`");
        assert_eq!(bad_line("cache\0 = on"), "unknown key `cache\\u{0}`");
        assert_eq!(
            bad_line("backend = a:8\u{0}0"),
            "backend: expected a port number 1..=65535, got `8\\u{0}0`"
        );
        assert_eq!(
            bad_line("log_file = logs/\0x"),
            "log_file: a path cannot contain a NUL byte, got `logs/\\u{0}x`"
        );
        assert_eq!(
            bad_line("cache = \u{1b}[31mon"),
            "cache: expected on or off, got `\\u{1b}[31mon`"
        );
    }
}

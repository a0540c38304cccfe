//! Pools and routes: more than one group of backends, and which requests go to which.
//!
//! ```text
//! pool NAME = HOST:PORT [weight=N] [backup] HOST:PORT [weight=N] [backup] ...
//! route     = [HOST]/PREFIX POOL
//! ```
//!
//! The `backend` lines form the pool named `default`. A `pool` line declares another, with
//! the same per-backend options as `backend` (a word with a `:` starts the next backend;
//! options never have one). A `route` sends the requests whose path starts with PREFIX
//! (and, when HOST is given, whose Host is HOST, compared without its port and
//! case-insensitively) to POOL; which route wins is `proxy::routing`'s business. Mistakes
//! are refused with their line: a pool named twice, a pool with no backend or only backups,
//! a route to a pool that does not exist.

use super::addresses::parse_backend;
use super::{quote, Backend};
use crate::http::authority::is_valid_host;

/// The name of the pool the `backend` lines form.
pub const DEFAULT_POOL: &str = "default";
/// Longest pool name, in characters.
const MAX_POOL_NAME: usize = 64;

/// A pool declared by a `pool NAME = ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its name: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Its backends, in the order given.
    pub backends: Vec<Backend>,
}

/// A `route = [HOST]/PREFIX POOL` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The host it applies to, lower-case and without a port; `None` for every host.
    pub host: Option<String>,
    /// The start of the paths it applies to, from its `/`.
    pub prefix: String,
    /// The pool it sends them to (`default` for the `backend` lines).
    pub pool: String,
}

/// The NAME of a `pool NAME` key.
///
/// # Errors
/// A message when it is not a usable name.
pub(super) fn parse_pool_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_POOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(format!(
            "pool: {} is not a pool name (letters, digits, `-`, `_` and `.`, at most \
             {MAX_POOL_NAME})",
            quote(name)
        ));
    }
    if name == DEFAULT_POOL {
        return Err(format!(
            "pool: `{DEFAULT_POOL}` is the pool of the `backend` lines: choose another name"
        ));
    }
    Ok(name.to_string())
}

/// The backends of a `pool NAME = ...` value: each starts at a word with a `:` (its
/// address), and the words after it up to the next address are its options.
///
/// # Errors
/// What `backend` would say about one of them, or options before any address.
pub(super) fn parse_pool_backends(value: &str) -> Result<Vec<Backend>, String> {
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for word in value.split_ascii_whitespace() {
        match groups.last_mut() {
            Some(group) if !word.contains(':') => group.push(word),
            None if !word.contains(':') => {
                return Err(format!(
                    "expected HOST:PORT before {} (a pool lists its backends, each with its \
                     options after it)",
                    quote(word)
                ));
            }
            _ => groups.push(vec![word]),
        }
    }
    let backends: Vec<Backend> = groups
        .iter()
        .map(|group| parse_backend(&group.join(" ")))
        .collect::<Result<_, _>>()?;
    for (i, backend) in backends.iter().enumerate() {
        if backends[..i].iter().any(|b| b.same_as(backend)) {
            return Err(format!(
                "backend {} is listed twice in this pool",
                quote(&backend.authority())
            ));
        }
    }
    if backends.iter().all(|b| b.backup) {
        return Err("every backend of this pool is marked `backup`".to_string());
    }
    Ok(backends)
}

/// A `route = [HOST]/PREFIX POOL` value. Whether POOL exists is checked once the whole file
/// is read (a pool may be declared after its routes).
///
/// # Errors
/// A message when it is not two words, or the first is not `[HOST]/PREFIX`.
pub(crate) fn parse_route(value: &str) -> Result<Route, String> {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    let [target, pool] = words[..] else {
        return Err(format!(
            "expected `[HOST]/PREFIX POOL` (such as `/api/ api` or `shop.example/ shop`), got {}",
            quote(value)
        ));
    };
    let slash = target.find('/').ok_or_else(|| {
        format!(
            "{} has no path: a route starts at `/`, after its host if any",
            quote(target)
        )
    })?;
    let (host, prefix) = target.split_at(slash);
    let host = if host.is_empty() {
        None
    } else {
        if !is_valid_host(host) || host.starts_with(':') {
            return Err(format!("{} is not a host name", quote(host)));
        }
        Some(host_without_port(host).to_ascii_lowercase())
    };
    Ok(Route {
        host,
        prefix: prefix.to_string(),
        pool: pool.to_string(),
    })
}

/// A host (`name`, `name:port`, `[v6]:port`) without its port.
pub fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_lists_backends_each_with_its_options() {
        let backends = parse_pool_backends("a:1 weight=3 [::1]:2 b:3 backup weight=2").unwrap();
        let shown: Vec<(String, u32, bool)> = backends
            .iter()
            .map(|b| (b.authority(), b.weight, b.backup))
            .collect();
        assert_eq!(
            shown,
            [
                ("a:1".to_string(), 3, false),
                ("[::1]:2".to_string(), 1, false),
                ("b:3".to_string(), 2, true),
            ]
        );
        assert!(parse_pool_backends("weight=2 a:1")
            .unwrap_err()
            .contains("before `weight=2`"));
        assert!(parse_pool_backends("a:1 b:2 backup").is_ok());
        assert!(parse_pool_backends("a:1 backup")
            .unwrap_err()
            .contains("backup"));
        assert!(parse_pool_backends("a:1 A:1")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_pool_backends("a:1 fast")
            .unwrap_err()
            .contains("unknown option"));
    }

    #[test]
    fn pool_names_are_plain_words_and_not_default() {
        assert_eq!(parse_pool_name("api-v2.blue").unwrap(), "api-v2.blue");
        for bad in ["", "a b", "api/", "default", &"x".repeat(65)] {
            assert!(parse_pool_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn routes_have_an_optional_host_a_path_and_a_pool() {
        assert_eq!(
            parse_route("/api/ api").unwrap(),
            Route {
                host: None,
                prefix: "/api/".into(),
                pool: "api".into()
            }
        );
        let with_host = parse_route("Shop.Example:8080/ shop").unwrap();
        assert_eq!(with_host.host.as_deref(), Some("shop.example"));
        assert_eq!(with_host.prefix, "/");
        assert_eq!(
            parse_route("[::1]:80/x p").unwrap().host.as_deref(),
            Some("[::1]")
        );
        for bad in ["/api/", "/api/ a b", "api a", "bad host/ p", ":80/ p"] {
            assert!(parse_route(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_port_is_left_out_of_a_host() {
        assert_eq!(host_without_port("shop.example:8080"), "shop.example");
        assert_eq!(host_without_port("shop.example"), "shop.example");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }
}

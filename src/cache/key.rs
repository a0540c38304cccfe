//! Cache keys (RFC 9111 §2, §4.1): the effective request URI that names what is stored,
//! the entry file named by its SHA-1, the variants a response's Vary selects among, and the
//! keys an unsafe request invalidates (§4.4).

use crate::http::authority::{absolute_form_parts, normalize_authority};
use crate::http::{is_token, Request, Response};

/// The file name of an entry: lowercase SHA-1 hex (sha1_smol) of the key. 40 chars.
pub fn entry_name(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha1_smol::Sha1::from(key.as_bytes()).digest().bytes();
    // By hand rather than through `Display`, which formats byte by byte: this runs on every
    // cache lookup.
    let mut name = String::with_capacity(2 * digest.len());
    for byte in digest {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    name
}

/// The primary cache key of a request: its effective request URI (RFC 9110 §7.1), as
/// `http://host/path?query`. The authority comes from an absolute-form target, else from
/// Host; it is lower-cased and a default `:80` dropped (RFC 9110 §4.2.3), the path and query
/// are kept byte for byte. `None` for `*` and authority-form targets.
pub fn cache_key(request: &Request) -> Option<String> {
    let absolute = absolute_form_parts(&request.target);
    let (authority, target) = match &absolute {
        Some((authority, origin_form)) => (*authority, origin_form.as_str()),
        None if request.target.starts_with('/') => (
            request.headers.get("host").unwrap_or_default(),
            request.target.as_str(),
        ),
        None => return None,
    };
    let authority = normalize_authority(authority);
    let mut key = String::with_capacity("http://".len() + authority.len() + target.len());
    key.push_str("http://");
    key.push_str(&authority);
    key.push_str(target);
    Some(key)
}

/// The field names a response varies on (RFC 9111 §4.1), lower-cased, sorted and without
/// duplicates, so `Vary: B, a` and `Vary: A, b` give the same variants. `None` for `Vary: *`
/// (never reused), and, being careful, for a name that is not a token.
pub fn vary_names(response: &Response) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for name in response.headers.list("vary") {
        if name == "*" || !is_token(name.as_bytes()) {
            return None;
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// The secondary key of a variant (RFC 9111 §4.1): the primary key, the nonce of the
/// variant index (see `Store::lookup`), and for each name in `names` the request's values,
/// normalised ([`selecting_value`]), or `!` when the request has no such field (an absent
/// field only matches an absent field).
pub fn variant_key(base: &str, nonce: &str, names: &[String], request: &Request) -> String {
    let mut key = format!("{base}\nvary {nonce}");
    for name in names {
        let values: Vec<&str> = request.headers.get_all(name).collect();
        key.push('\n');
        key.push_str(name);
        if values.is_empty() {
            key.push('!');
        } else {
            key.push(':');
            key.push_str(&selecting_value(name, &values.join(",")));
        }
    }
    key
}

/// A selecting field's value as variants are compared (RFC 9111 §4.1 allows normalising
/// "by adding or removing whitespace where allowed in the field's syntax, or by combining
/// multiple field lines"): the lines joined as one list, and the whitespace around its
/// commas and at its ends removed (outside quoted strings, where it counts), so ` 1, 2 ` and
/// `1,2` select the same variant. `Accept-Language` is further compared as its set of
/// language ranges (RFC 9110 §12.5.4: a range's place in the list carries no preference, its
/// weight does): lower-cased, without whitespace, sorted, duplicates dropped.
pub fn selecting_value(name: &str, value: &str) -> String {
    let elements = list_elements(value);
    if name.eq_ignore_ascii_case("accept-language") {
        let mut ranges: Vec<String> = elements
            .iter()
            .map(|e| {
                e.split_whitespace()
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .collect();
        ranges.sort();
        ranges.dedup();
        return ranges.join(",");
    }
    elements.join(",")
}

/// The elements of a comma-separated list, trimmed, empty ones dropped; a comma inside a
/// quoted string does not split.
fn list_elements(value: &str) -> Vec<&str> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                elements.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push(&value[start..]);
    elements
        .into_iter()
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
        .collect()
}

/// The primary keys a response to an unsafe request invalidates (RFC 9111 §4.4): for a
/// non-error status (2xx, 3xx) to any method other than GET, HEAD, OPTIONS and TRACE
/// (unknown methods count as unsafe), the target URI, and the Location and Content-Location
/// URIs when they are on the same host. Relative references are resolved against the target
/// (RFC 3986 §5.2), except ones with dot segments, which are skipped.
pub fn invalidated_keys(request: &Request, response: &Response) -> Vec<String> {
    let safe = matches!(
        request.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE"
    );
    if safe || !(200..400).contains(&response.status) {
        return Vec::new();
    }
    let Some(base) = cache_key(request) else {
        return Vec::new();
    };
    let mut keys = vec![base];
    for name in ["location", "content-location"] {
        let resolved = response
            .headers
            .get(name)
            .and_then(|reference| same_host_key(&keys[0], reference.trim()));
        if let Some(key) = resolved {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// The key of `reference` resolved against the key `base`, if it is on the same host.
fn same_host_key(base: &str, reference: &str) -> Option<String> {
    let rest = base.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    if let Some((other, target)) = absolute_form_parts(reference) {
        let other_authority = normalize_authority(other);
        return (other_authority == authority).then(|| format!("http://{other_authority}{target}"));
    }
    let scheme = reference
        .find(':')
        .is_some_and(|colon| !reference[..colon].contains(['/', '?']));
    let dots = reference
        .split(['/', '?'])
        .any(|segment| segment == "." || segment == "..");
    if reference.is_empty() || reference.starts_with("//") || scheme || dots {
        return None;
    }
    if reference.starts_with('/') {
        return Some(format!("http://{authority}{reference}"));
    }
    let path = path.split('?').next().unwrap_or_default();
    let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("http://{authority}{directory}{reference}"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{get, req, resp};
    use super::*;

    #[test]
    fn entry_names_are_sha1_hex() {
        assert_eq!(
            entry_name("abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(super::super::store::is_entry_name(&entry_name("http://x/")));
    }

    #[test]
    fn cache_key_is_the_effective_request_uri() {
        assert_eq!(cache_key(&get("")).unwrap(), "http://shop.example/a?b=1");
        let r = req("GET /a HTTP/1.1\r\nHost: Shop.Example:80\r\n\r\n");
        assert_eq!(cache_key(&r).unwrap(), "http://shop.example/a");
        let r = req("GET http://Other:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n");
        assert_eq!(cache_key(&r).unwrap(), "http://other:8080/x?y");
        let r = req("GET /A%2f HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(cache_key(&r).unwrap(), "http://h/A%2f");
        let r = req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(cache_key(&r), None);
    }

    #[test]
    fn vary_names_and_variant_keys() {
        let r = resp(200, "Vary: b, A\r\nVary: a\r\n");
        assert_eq!(vary_names(&r).unwrap(), ["a", "b"]);
        assert_eq!(vary_names(&resp(200, "")).unwrap(), Vec::<String>::new());
        assert_eq!(vary_names(&resp(200, "Vary: *\r\n")), None);
        assert_eq!(vary_names(&resp(200, "Vary: a b\r\n")), None);
        let names = vec!["accept-encoding".to_string()];
        let gzip = get("Accept-Encoding: gzip\r\n");
        let none = get("");
        let empty = get("Accept-Encoding:\r\n");
        let k = |r: &Request| variant_key("http://h/", "n1", &names, r);
        assert_ne!(k(&gzip), k(&none));
        assert_ne!(k(&none), k(&empty));
        assert_eq!(k(&gzip), k(&get("Accept-Encoding:  gzip \r\n")));
        assert_ne!(k(&gzip), variant_key("http://h/", "n2", &names, &gzip));
    }

    #[test]
    fn selecting_values_are_normalised() {
        assert_eq!(
            selecting_value("foo", " 1, 2 "),
            selecting_value("foo", "1,2")
        );
        assert_ne!(selecting_value("foo", "1,2"), selecting_value("foo", "2,1"));
        assert_eq!(selecting_value("foo", "\"a , b\", c"), "\"a , b\",c");
        assert_ne!(
            selecting_value("foo", "\"a , b\""),
            selecting_value("foo", "\"a,b\"")
        );
        let lang = |v| selecting_value("Accept-Language", v);
        assert_eq!(lang("en, de"), lang("de, en"));
        assert_eq!(lang("en, de"), lang("EN, DE"));
        assert_eq!(lang("en, de"), lang(" en ,   de"));
        assert_eq!(lang("fr;q=0.5, de"), lang("de,fr; q=0.5"));
        assert_ne!(lang("fr;q=0.5, de"), lang("fr, de"));
        // Several lines are one list.
        let names = vec!["foo".to_string()];
        let two = get("Foo: 1\r\nFoo: 2\r\n");
        let one = get("Foo: 1, 2\r\n");
        let k = |r: &Request| variant_key("http://h/", "n1", &names, r);
        assert_eq!(k(&two), k(&one));
    }

    #[test]
    fn unsafe_methods_invalidate_target_and_same_host_locations() {
        let post = req("POST /shop/cart?x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        let r = resp(
            201,
            "Location: /shop/items/7\r\nContent-Location: http://H:80/shop/cart?x\r\n",
        );
        assert_eq!(
            invalidated_keys(&post, &r),
            ["http://h/shop/cart?x", "http://h/shop/items/7"]
        );
        let relative = resp(303, "Location: done\r\n");
        assert_eq!(
            invalidated_keys(&post, &relative),
            ["http://h/shop/cart?x", "http://h/shop/done"]
        );
        for other in [
            "http://elsewhere/x",
            "//elsewhere/x",
            "../x",
            "mailto:a@b",
            "",
        ] {
            let r = resp(200, &format!("Location: {other}\r\n"));
            assert_eq!(
                invalidated_keys(&post, &r),
                ["http://h/shop/cart?x"],
                "{other}"
            );
        }
        assert!(invalidated_keys(&post, &resp(404, "")).is_empty());
        assert!(invalidated_keys(&post, &resp(500, "")).is_empty());
        for method in ["PUT", "DELETE", "PATCH", "BREW"] {
            let r = req(&format!("{method} /a HTTP/1.1\r\nHost: h\r\n\r\n"));
            assert_eq!(invalidated_keys(&r, &resp(204, "")), ["http://h/a"]);
        }
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            let r = req(&format!("{method} /a HTTP/1.1\r\nHost: h\r\n\r\n"));
            assert!(invalidated_keys(&r, &resp(200, "")).is_empty());
        }
    }
}

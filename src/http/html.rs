//! HTML escaping for the pages the servers write themselves: the proxy's status page and the
//! web server's templated pages. Both put text that came from elsewhere (request lines,
//! backend errors, a server name given on the command line) into HTML, and both escape it
//! here, so a page cannot be made to carry someone else's markup.
//!
//! This is the only HTML the library knows: it does not parse or sanitise markup.

/// `text` with the five characters that matter in HTML text and in quoted attribute values
/// replaced by character references: `&` `<` `>` `"` `'`.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_become_references_and_the_rest_stays() {
        assert_eq!(
            escape_html("<a href=\"x\" title='y'>&amp;</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape_html("server-1 é ✓"), "server-1 é ✓");
        assert_eq!(escape_html(""), "");
    }
}

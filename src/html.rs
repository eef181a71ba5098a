//! Text in HTML: the one escaping function of every page and message the product
//! renders (alert e-mails, the report, JUnit files), so text from the traffic (client
//! ids, labels, feature and model names) is always shown as text.

/// Escapes text for HTML (and XML) element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

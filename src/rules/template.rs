//! Annotation templates of a rule: `{{ column }}` filled with a result row's values.
//! The engine checks at load time that every name is a column of the rule's result;
//! alerts, e-mails and OTLP records render them.

use serde_json::Value;

/// A value as people read it: strings as they are, whole numbers without decimals,
/// others with at most four decimals.
pub fn display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            (_, _, Some(f)) => {
                let s = format!("{f:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The column names a template refers to (`{{ name }}`).
pub fn template_names(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {template:?}"))?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(format!("empty {{{{ }}}} in {template:?}"));
        }
        names.push(name.to_owned());
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// Fills `{{ column }}` with the row's values in one pass: a value that itself contains
/// `{{ ... }}` is inserted as text, never expanded.
pub fn render(template: &str, values: &serde_json::Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = after[..end].trim();
        out.push_str(&values.get(name).map(display).unwrap_or_default());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

//! A setting that must never be printed: passwords, salts. `Debug` (and so every error
//! or log line that formats a config) shows whether it is set, never its value; the
//! value is read only where it is used, through [`Secret::expose`].

use serde::Deserialize;

#[derive(Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it (a client's settings, a hash).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(unset)"
        } else {
            "(secret)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "(secret) Some((secret))");
        assert_eq!(format!("{:?}", Secret::default()), "(unset)");
        assert_eq!(s.expose(), "hunter2");
    }
}

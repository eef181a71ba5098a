//! Receiver that prints one human-readable line per state change on standard output.
//! Values from the traffic are printed with control characters escaped.

use std::io::Write;

use super::{Notification, Receiver, escape_control};

pub struct StdoutReceiver {
    out: std::io::Stdout,
}

impl StdoutReceiver {
    pub fn new() -> Self {
        Self {
            out: std::io::stdout(),
        }
    }
}

impl Default for StdoutReceiver {
    fn default() -> Self {
        Self::new()
    }
}

/// `2026-11-21T10:05:00.000Z FIRING   high     flood.client_rate {client_id="k"} id=… — summary`
pub fn format_line(n: &Notification) -> String {
    let labels = n
        .labels
        .iter()
        .map(|(k, v)| format!("{}={:?}", escape_control(k), escape_control(v)))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = n
        .annotations
        .get("summary")
        .map(|s| format!(" — {}", escape_control(s)))
        .unwrap_or_default();
    format!(
        "{} {:<8} {:<8} {} {{{}}} id={}{}",
        n.window_end,
        n.state.as_str().to_uppercase(),
        n.severity.as_str(),
        n.rule_id,
        labels,
        n.id,
        summary
    )
}

impl Receiver for StdoutReceiver {
    fn name(&self) -> &str {
        "stdout"
    }
    fn send(&mut self, n: &Notification) -> std::io::Result<()> {
        writeln!(self.out.lock(), "{}", format_line(n))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

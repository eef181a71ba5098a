//! inferwatch: watches machine-learning inference traffic for attacks and decay.
//!
//! Records flow `source` → `decode` → `window` → `tables` → `rules` → `alert` →
//! `notify`; `pipeline` wires the stages together and `cli` is the command line. A
//! module uses only the modules of lower layers (docs/layout.md;
//! `tests/it/layering.rs` checks it).

pub mod alert;
pub mod baseline;
pub mod cli;
pub mod config;
pub mod deadletter;
pub mod decode;
pub mod html;
pub mod http;
pub mod kafka;
pub mod labels;
pub mod notify;
pub mod otlp;
pub mod pipeline;
pub mod report;
pub mod rescore;
pub mod rules;
pub mod scenario;
pub mod secret;
pub mod source;
pub mod stable_hash;
pub mod state;
pub mod stats;
pub mod tables;
pub mod telemetry;
pub mod time;
pub mod window;

//! One integration-test binary (each test binary links the whole tree).

mod api;
mod baseline;
mod checkpoint;
mod cli;
mod compose;
mod email;
mod hostile;
mod kafka;
mod kafka_ops;
mod labels;
mod layering;
mod otlp;
mod prometheus;
mod receivers;
mod report;
mod rescore;
mod rule_files;

//! One integration-test binary (each test binary links the whole tree).

mod baseline;
mod checkpoint;
mod cli;
mod kafka;
mod kafka_ops;
mod rule_files;

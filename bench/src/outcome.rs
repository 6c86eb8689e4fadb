//! What a scenario reports: below the scenarios (`scenario.rs`, `strangers.rs`) and the
//! printing of tables (`main.rs`).

use serde_json::Value;

/// One scenario's result on one target.
pub struct Outcome {
    /// The whole result, for the JSON file.
    pub json: Value,
    /// Everything was delivered, in order, with no unannounced gap (the smoke test's check;
    /// no timing is judged).
    pub complete: bool,
    /// The markdown row: scenario, target, shape, result, p50, p99, p99.9, notes.
    pub row: [String; 8],
}

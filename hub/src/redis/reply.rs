//! Reading Redis's replies: text, numbers, arrays, and stream entries as messages.

use std::sync::Arc;

use redis::Value;
use roomcast_core::log::Draft;
use roomcast_core::{Message, Seq};

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "a foreign, non-exhaustive enum"
)]
pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "a foreign, non-exhaustive enum"
        )]
        _ => None,
    }
}

pub(super) fn int(v: &Value) -> Option<u64> {
    if let Value::Int(i) = v {
        return u64::try_from(*i).ok();
    }
    text(v)?.parse().ok()
}

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "a foreign, non-exhaustive enum"
)]
pub(super) fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "a foreign, non-exhaustive enum"
        )]
        _ => &[],
    }
}

/// Stream entries (`[[id, [field, value]], ...]`) as messages.
pub(super) fn entries(v: &Value) -> Vec<Arc<Message>> {
    array(v)
        .iter()
        .filter_map(|entry| {
            let [id, fields] = array(entry) else {
                return None;
            };
            let seq: u64 = text(id)?.split('-').next()?.parse().ok()?;
            let body = text(array(fields).get(1)?)?;
            let draft: Draft = serde_json::from_str(&body).ok()?;
            Some(Arc::new(draft.at(Seq(seq))))
        })
        .collect()
}

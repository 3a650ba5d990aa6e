//! Parsing a model turn. Guided decoding should make every turn well-formed; this parser still
//! accepts only what the protocol allows and reports anything else as a problem, never panics.

use serde_json::Value;

use super::protocol::{ANSWER_CLOSE, ANSWER_OPEN, CALL_CLOSE, CALL_OPEN, MEMORY_TOOL, THINK_CLOSE};
use super::OrchestratorConfig;
use crate::model::Tier;

/// A well-formed model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    Call { aspects: Vec<String>, tier: Option<Tier>, category: Option<String> },
    Answer { profile: String, memory_ids: Vec<i64> },
}

/// The text between the first `open` and the following `close`.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

fn clean(s: &str, max_chars: usize) -> String {
    let cut: String = s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(max_chars).collect();
    // A cut that lands just after a space would leave it trailing, and the text would then read
    // back differently once rendered into a turn again (found by the turn_parser fuzz target).
    match cut.strip_suffix(' ') {
        Some(trimmed) => trimmed.to_string(),
        None => cut,
    }
}

pub fn parse_turn(output: &str, config: &OrchestratorConfig) -> Result<Turn, String> {
    // The reasoning comes first; the action is what follows it.
    let action = match output.find(THINK_CLOSE) {
        Some(i) => &output[i + THINK_CLOSE.len()..],
        None => output,
    };
    let call = between(action, CALL_OPEN, CALL_CLOSE);
    let answer = between(action, ANSWER_OPEN, ANSWER_CLOSE);
    match (call, answer) {
        (Some(c), None) => parse_call(c, config),
        (None, Some(a)) => parse_answer(a, config),
        (Some(_), Some(_)) => Err("both a memory call and an answer in one turn".into()),
        (None, None) => Err(format!("neither {CALL_OPEN} nor {ANSWER_OPEN}")),
    }
}

fn parse_call(body: &str, config: &OrchestratorConfig) -> Result<Turn, String> {
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("tool call is not JSON: {e}"))?;
    if v.get("name").and_then(Value::as_str) != Some(MEMORY_TOOL) {
        return Err(format!("unknown tool (only {MEMORY_TOOL} exists)"));
    }
    let args = v.get("arguments").ok_or("tool call has no arguments")?;
    let aspects: Vec<String> = args
        .get("aspects")
        .and_then(Value::as_array)
        .ok_or("memory_retrieval needs a list of aspects")?
        .iter()
        .filter_map(Value::as_str)
        .map(|a| clean(a, 80))
        .filter(|a| !a.is_empty())
        .take(config.max_aspects)
        .collect();
    if aspects.is_empty() {
        return Err("memory_retrieval got no aspects".into());
    }
    let tier = match args.get("tier").and_then(Value::as_str) {
        None => None,
        Some(t) => match Tier::parse(t) {
            Ok(Tier::Global) | Err(_) => return Err(format!("memory_retrieval got tier {t:?}")),
            Ok(tier) => Some(tier),
        },
    };
    let category = args.get("category").and_then(Value::as_str).map(|c| clean(c, 40)).filter(|c| !c.is_empty());
    Ok(Turn::Call { aspects, tier, category })
}

fn parse_answer(body: &str, config: &OrchestratorConfig) -> Result<Turn, String> {
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("answer is not JSON: {e}"))?;
    let profile = clean(
        v.get("ideal_item_profile").and_then(Value::as_str).ok_or("answer has no ideal_item_profile")?,
        config.max_profile_chars,
    );
    // A profile must describe something: a placeholder ("...") or a single word grounds to
    // noise, so it counts as no answer.
    if profile.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).count() < 2 {
        return Err(format!("the ideal item profile {profile:?} describes nothing"));
    }
    let memory_ids = v
        .get("useful_memory_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| match id {
                    Value::String(s) => s.trim().trim_start_matches('m').parse().ok(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Turn::Answer { profile, memory_ids })
}

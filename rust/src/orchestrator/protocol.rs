//! The turn protocol's text, owned here and nowhere else: its tags, how a turn is written (the SFT
//! teacher renders its traces with [`render_call`] and [`render_answer`]), where decoding stops,
//! and how a turn still streaming is read ([`split_turn`], [`partial_profile`]).

use serde::Serialize;

use super::prompt::{escape, memory_ref};

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";
pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";
pub const ANSWER_OPEN: &str = "<answer>";
pub const ANSWER_CLOSE: &str = "</answer>";
pub const RESPONSE_OPEN: &str = "<tool_response>";
pub const RESPONSE_CLOSE: &str = "</tool_response>";
/// The one tool the model may call.
pub const MEMORY_TOOL: &str = "memory_retrieval";

/// Where a sampler without the grammar stops a turn: the end of either action.
pub const STOP_STRINGS: [&str; 2] = [CALL_CLOSE, ANSWER_CLOSE];

/// JSON the way the grammar's `%json` parts read it: fixed `", "` and `": "` separators (those of
/// Python's `json.dumps`), fields in declaration order, non-ASCII kept as is.
struct SpacedJson;

impl serde_json::ser::Formatter for SpacedJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

fn spaced_json(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SpacedJson);
    value.serialize(&mut ser).expect("plain structs always serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[derive(Serialize)]
struct CallBody<'a> {
    name: &'a str,
    arguments: CallArguments,
}

#[derive(Serialize)]
struct CallArguments {
    aspects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
}

#[derive(Serialize)]
struct AnswerBody {
    ideal_item_profile: String,
    useful_memory_ids: Vec<String>,
}

fn think(text: &str) -> String {
    format!("{THINK_OPEN}{}{THINK_CLOSE}\n", escape(text))
}

/// A memory-call turn as the model writes it. Every text is escaped, so no value can end the
/// turn early.
pub fn render_call(reasoning: &str, aspects: &[String], tier: Option<&str>, category: Option<&str>) -> String {
    let body = CallBody {
        name: MEMORY_TOOL,
        arguments: CallArguments {
            aspects: aspects.iter().map(|a| escape(a)).collect(),
            tier: tier.map(escape),
            category: category.map(escape),
        },
    };
    format!("{}{CALL_OPEN}{}{CALL_CLOSE}", think(reasoning), spaced_json(&body))
}

/// An answer turn as the model writes it, citing memories by id.
pub fn render_answer(reasoning: &str, profile: &str, memory_ids: &[i64]) -> String {
    let body = AnswerBody {
        ideal_item_profile: escape(profile),
        useful_memory_ids: memory_ids.iter().map(|&id| memory_ref(id)).collect(),
    };
    format!("{}{ANSWER_OPEN}{}{ANSWER_CLOSE}", think(reasoning), spaced_json(&body))
}

/// What kind of action a (possibly partial) turn has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// The reasoning is still streaming, or what follows it is not an action yet.
    Pending,
    Call,
    Answer,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Pending => "",
            ActionKind::Call => "call",
            ActionKind::Answer => "answer",
        }
    }
}

/// A (possibly partial) turn as (reasoning, action kind, action body so far): what a chat shows
/// while the turn streams.
pub fn split_turn(text: &str) -> (String, ActionKind, String) {
    let Some(end) = text.find(THINK_CLOSE) else {
        // A tag that is still streaming is not text yet.
        let open = if THINK_OPEN.starts_with(text) { text } else { THINK_OPEN };
        let reasoning = text.strip_prefix(open).unwrap_or(text);
        let cut = (1..THINK_CLOSE.len()).rev().find(|&n| reasoning.ends_with(&THINK_CLOSE[..n])).unwrap_or(0);
        return (reasoning[..reasoning.len() - cut].to_string(), ActionKind::Pending, String::new());
    };
    let reasoning = text[..end].strip_prefix(THINK_OPEN).unwrap_or(&text[..end]).to_string();
    let rest = text[end + THINK_CLOSE.len()..].trim_start();
    for (open, kind) in [(CALL_OPEN, ActionKind::Call), (ANSWER_OPEN, ActionKind::Answer)] {
        if let Some(body) = rest.strip_prefix(open) {
            let body = body.split("</").next().unwrap_or("");
            return (reasoning, kind, body.to_string());
        }
    }
    (reasoning, ActionKind::Pending, rest.to_string())
}

/// The ideal item profile from a possibly unfinished answer body: the JSON string's text up to
/// where it has streamed, with an escape or a surrogate pair that is cut short left for later.
pub fn partial_profile(body: &str) -> String {
    let key = "\"ideal_item_profile\"";
    let Some(at) = body.find(key) else { return String::new() };
    let rest = body[at + key.len()..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else { return String::new() };
    let Some(rest) = rest.trim_start().strip_prefix('"') else { return String::new() };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => {
                let Some(e) = chars.next() else { break };
                let decoded = match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        // A \u escape cut short waits for its next token.
                        if hex.len() < 4 {
                            break;
                        }
                        let Ok(code) = u32::from_str_radix(&hex, 16) else { break };
                        if (0xD800..0xDC00).contains(&code) {
                            high = Some(code);
                            continue;
                        }
                        let code = match high.take() {
                            Some(h) if (0xDC00..0xE000).contains(&code) => {
                                0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00)
                            }
                            _ => code,
                        };
                        char::from_u32(code).unwrap_or('\u{FFFD}')
                    }
                    other => other,
                };
                out.push(decoded);
            }
            c => out.push(c),
        }
        high = None;
    }
    out
}

/// The memory ids each `<tool_response>` block of a prompt shows, block by block.
pub fn tool_responses(prompt: &str) -> Vec<Vec<i64>> {
    // A block opens a line and its body starts on the next one (the system prompt only names the
    // tag mid-sentence).
    let open = format!("{RESPONSE_OPEN}\n");
    let mut blocks = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find(&open) {
        let body = &rest[at + open.len()..];
        let end = body.find(RESPONSE_CLOSE).unwrap_or(body.len());
        let ids =
            body[..end].lines().filter_map(|line| line.strip_prefix("[m")?.split_once("] ")?.0.parse().ok()).collect();
        blocks.push(ids);
        rest = &body[end..];
    }
    blocks
}

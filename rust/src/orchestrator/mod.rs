//! The reasoning-retrieval orchestrator (METHOD.md §2): a pure state machine that the Python
//! loop (and training rollouts) drive. It builds the chat, tells the host what grammar the next
//! model turn must follow, parses each turn into an [`Action`], keeps memory within its token
//! budget, and always ends with an answer.
//!
//! One model turn is either a memory call or the final answer, each after a short reasoning:
//!
//! ```text
//! <think>what matters for this query</think>
//! <tool_call>{"name": "memory_retrieval", "arguments": {"aspects": ["..."], "tier": "pattern"}}</tool_call>
//! ```
//! ```text
//! <think>...</think>
//! <answer>{"ideal_item_profile": "...", "useful_memory_ids": ["m12", "m40"]}</answer>
//! ```
//! Memory comes back in a `<tool_response>` block whose text is escaped (see [`escape`]), so no
//! title, review or instruction inside the data can open or close a protocol tag.

mod parse;
mod prompt;
pub mod protocol;
pub mod request;

use serde::Serialize;

pub use parse::{parse_turn, Turn};
pub use prompt::escape;

use crate::model::Tier;

/// Limits of one conversation turn loop: the assistant's one set of defaults. The device, the
/// evaluation, the SFT teacher and the training rollouts all start from [`Default`], so the model
/// is trained on the prompts it will see.
#[derive(Debug, Clone, Serialize)]
pub struct OrchestratorConfig {
    /// Memory calls allowed before the model must answer.
    pub max_memory_calls: usize,
    /// Tokens of memory text the model may see in total (estimated, see [`estimate_tokens`]).
    pub memory_token_budget: usize,
    /// Entries returned per memory call (the paper's k = 3).
    pub memory_k: usize,
    /// Most aspects one call may ask for.
    pub max_aspects: usize,
    /// Longest reasoning, in characters, the grammar allows per turn.
    pub max_think_chars: usize,
    /// Longest ideal item profile, in characters.
    pub max_profile_chars: usize,
    /// Global memory entries the host puts in the system prompt.
    pub global_k: usize,
    /// Tokens one model turn may take (the host cuts decoding there): above what the grammar
    /// allows (reasoning + answer characters, and a digit or symbol can be a token each), so a
    /// turn is cut off only by a runaway model.
    pub max_turn_tokens: usize,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        // Two calls and short turns: what the tuned model was trained with, and what answers in
        // under a second on a laptop CPU (docs/RESULTS.md).
        OrchestratorConfig {
            max_memory_calls: 2,
            memory_token_budget: 384,
            memory_k: 3,
            max_aspects: 4,
            max_think_chars: 200,
            max_profile_chars: 300,
            global_k: 3,
            max_turn_tokens: 640,
        }
    }
}

/// A memory entry as the orchestrator shows it to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownMemory {
    pub id: i64,
    pub tier: Tier,
    pub categories: Vec<String>,
    pub text: String,
}

/// What the host must do next.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Search local memory for these aspects and pass the hits to [`Orchestrator::add_memories`].
    Retrieve { aspects: Vec<String>, tier: Option<Tier>, category: Option<String>, k: usize },
    /// Ground this profile to the catalog. `fallback` says the model did not answer properly and
    /// the orchestrator wrote the profile itself (see [`Orchestrator::fallback_answer`]).
    Answer { profile: String, memory_ids: Vec<i64>, fallback: bool, reason: Option<String> },
}

/// A chat message for the model's chat template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

/// Counters the evaluation reports (memory-call rate, turns, memory tokens per query).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TurnStats {
    pub turns: usize,
    pub memory_calls: usize,
    pub memory_tokens: usize,
    pub malformed_turns: usize,
}

/// Tokens of a text as the budget counts them: about four characters per token for English
/// with a BPE vocabulary; the host may pass exact counts instead.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

pub struct Orchestrator {
    config: OrchestratorConfig,
    query: String,
    messages: Vec<Message>,
    /// Memories shown so far, in order (the only ids an answer may cite).
    shown: Vec<ShownMemory>,
    stats: TurnStats,
    done: Option<Action>,
    /// The last retrieval the model asked for, awaiting its results.
    pending: bool,
}

impl Orchestrator {
    /// Starts a conversation for `query`, with global memory (cross-user aspects) for the
    /// system prompt, already retrieved for the query by the host.
    pub fn new(config: OrchestratorConfig, query: &str, global: &[ShownMemory]) -> Self {
        let system = prompt::system_prompt(&config, global);
        let user = prompt::user_prompt(query);
        Orchestrator {
            config,
            query: query.to_string(),
            messages: vec![Message { role: "system", content: system }, Message { role: "user", content: user }],
            shown: Vec::new(),
            stats: TurnStats::default(),
            done: None,
            pending: false,
        }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    pub fn shown(&self) -> &[ShownMemory] {
        &self.shown
    }

    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    fn calls_left(&self) -> bool {
        self.stats.memory_calls < self.config.max_memory_calls
    }

    /// The Lark grammar the next model turn must follow (for guided decoding): a memory call is
    /// allowed only while calls are left.
    pub fn grammar(&self) -> String {
        prompt::turn_grammar(&self.config, self.calls_left())
    }

    /// Reads one model turn and says what to do next. Never fails: malformed text, a memory
    /// call with no calls left, or a second call while one is pending end in a fallback answer.
    pub fn feed(&mut self, output: &str) -> Action {
        if let Some(done) = &self.done {
            return done.clone();
        }
        self.stats.turns += 1;
        self.messages.push(Message { role: "assistant", content: output.trim().to_string() });
        let action = match parse_turn(output, &self.config) {
            Ok(Turn::Call { aspects, tier, category }) if self.calls_left() && !self.pending => {
                self.stats.memory_calls += 1;
                self.pending = true;
                return Action::Retrieve { aspects, tier, category, k: self.config.memory_k };
            }
            Ok(Turn::Call { .. }) => self.fallback_answer("the model asked for memory with no calls left"),
            Ok(Turn::Answer { profile, memory_ids }) => {
                // Only ids the model was shown count; anything else is invented.
                let cited: Vec<i64> =
                    memory_ids.into_iter().filter(|id| self.shown.iter().any(|m| m.id == *id)).collect();
                Action::Answer { profile, memory_ids: cited, fallback: false, reason: None }
            }
            Err(problem) => {
                self.stats.malformed_turns += 1;
                self.fallback_answer(&format!("unreadable model turn: {problem}"))
            }
        };
        self.done = Some(action.clone());
        action
    }

    /// Shows the results of the pending memory call to the model, within the token budget:
    /// entries already shown are skipped, the rest are added in order until the budget is
    /// spent (a long entry is cut to fit). `token_count` measures text (use
    /// [`estimate_tokens`] when the host has no tokenizer).
    pub fn add_memories(&mut self, hits: &[ShownMemory], token_count: &dyn Fn(&str) -> usize) {
        self.pending = false;
        let mut lines = Vec::new();
        for hit in hits {
            if self.shown.iter().any(|m| m.id == hit.id) {
                continue;
            }
            let left = self.config.memory_token_budget.saturating_sub(self.stats.memory_tokens);
            if left == 0 {
                break;
            }
            let line = prompt::memory_line(hit);
            let mut cost = token_count(&line);
            let line = if cost > left {
                // Cut by characters in proportion, then re-measure. In 128 bits: a budget and a
                // host's token count can each be near usize::MAX (found by the prompt_builder
                // fuzz target); the quotient is below the line's length, since cost > left.
                let keep = (line.chars().count() as u128 * left as u128 / cost as u128) as usize;
                let cut: String = line.chars().take(keep.saturating_sub(1)).collect();
                // A cut that loses the entry's `[mID] ` would show nothing the model could cite,
                // yet count as shown (and citable): the budget is spent, so stop (found by the
                // prompt_builder fuzz target).
                if !cut.starts_with(&format!("[{}] ", prompt::memory_ref(hit.id))) {
                    break;
                }
                let cut = format!("{cut}…");
                cost = token_count(&cut).min(left);
                cut
            } else {
                line
            };
            self.stats.memory_tokens += cost;
            self.shown.push(hit.clone());
            lines.push(line);
        }
        self.messages.push(Message { role: "user", content: prompt::tool_response(&lines) });
    }

    /// The answer written when the model does not give one: the query itself, enriched with the
    /// memories retrieved so far (their text describes what the user liked), citing them. The
    /// grounding then works as dense retrieval of the query plus memory.
    pub fn fallback_answer(&self, reason: &str) -> Action {
        let mut profile = self.query.trim().to_string();
        for m in self.shown.iter().take(3) {
            profile.push_str(". ");
            profile.push_str(&m.text);
        }
        let profile: String = profile.chars().take(self.config.max_profile_chars).collect();
        Action::Answer {
            profile,
            memory_ids: self.shown.iter().take(3).map(|m| m.id).collect(),
            fallback: true,
            reason: Some(reason.to_string()),
        }
    }

    /// Ends the loop now (the host hit its own limit, e.g. a token budget or a cancel).
    pub fn finish(&mut self, reason: &str) -> Action {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let action = self.fallback_answer(reason);
        self.done = Some(action.clone());
        action
    }
}

#[cfg(test)]
mod tests;

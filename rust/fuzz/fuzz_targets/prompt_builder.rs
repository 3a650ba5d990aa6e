//! The prompt builder and the grammar, fed hostile text: a query, global memory, memory hits and
//! the item text behind behavior memory (titles, genres, reviews, as the importers' writer turns
//! them into memory), under arbitrary limits and token counters. Checks that no data adds a
//! protocol tag or a control character to what the model reads, that a tool response lists
//! exactly the memories it shows, that memory stays within its token budget, that the grammar
//! is built whatever the limits, and that an answer cites only memories the model was shown.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mrrec_core::orchestrator::protocol::{render_answer, render_call, tool_responses, RESPONSE_CLOSE, RESPONSE_OPEN};
use mrrec_core::orchestrator::{estimate_tokens, Action, Orchestrator, OrchestratorConfig, ShownMemory};
use mrrec_core::store::{behavior_text, item_text};
use mrrec_core::Tier;

#[derive(Debug, Arbitrary)]
struct Limits {
    max_memory_calls: u8,
    memory_token_budget: u32,
    memory_k: u8,
    max_aspects: u8,
    max_think_chars: u16,
    max_profile_chars: u16,
    /// Take the budget as a full-width number (the Python binding accepts any).
    wide_budget: bool,
}

#[derive(Debug, Arbitrary)]
struct Memory {
    id: i64,
    tier: u8,
    categories: Vec<String>,
    text: String,
    /// Its text is a behavior memory built from this item instead.
    item: Option<ItemText>,
}

#[derive(Debug, Arbitrary)]
struct ItemText {
    title: String,
    year: Option<i32>,
    categories: Vec<String>,
    keywords: Vec<String>,
    description: Option<String>,
    rating: Option<f64>,
    timestamp: Option<i64>,
    review: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum Counter {
    /// `estimate_tokens`, the device's default.
    Estimate,
    /// A host tokenizer, modelled as tokens per byte scaled (an arbitrary, even absurd, count).
    PerByte(u16),
    Constant(u64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    limits: Limits,
    query: String,
    global: Vec<Memory>,
    reasoning: String,
    aspects: Vec<String>,
    tier: Option<String>,
    category: Option<String>,
    /// One list of hits per memory call.
    hits: Vec<Vec<Memory>>,
    counter: Counter,
    profile: String,
    cite: Vec<i64>,
}

fn shown(m: &Memory) -> ShownMemory {
    let text = match &m.item {
        None => m.text.clone(),
        Some(i) => {
            // The memory text the writer stores, and the item text beside it in the catalog.
            let _ = item_text(&i.title, i.year, &i.categories, &i.keywords, i.description.as_deref());
            behavior_text(&i.title, i.year, &i.categories, i.rating, i.timestamp, i.review.as_deref())
        }
    };
    ShownMemory { id: m.id, tier: Tier::ALL[m.tier as usize % 4], categories: m.categories.clone(), text }
}

/// Nothing but the protocol's own text may hold a tag or a control character.
fn inert(text: &str) -> bool {
    !text.contains(['<', '>']) && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

fuzz_target!(|input: Input| {
    let l = &input.limits;
    let config = OrchestratorConfig {
        max_memory_calls: l.max_memory_calls as usize % 5,
        memory_token_budget: if l.wide_budget {
            (l.memory_token_budget as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        } else {
            l.memory_token_budget as usize % 4096
        },
        memory_k: l.memory_k as usize,
        max_aspects: l.max_aspects as usize % 8,
        max_think_chars: l.max_think_chars as usize,
        max_profile_chars: l.max_profile_chars as usize,
        ..OrchestratorConfig::default()
    };
    let global: Vec<ShownMemory> = input.global.iter().map(shown).collect();
    let template = Orchestrator::new(config.clone(), "", &[]).messages()[0].content.clone();
    let mut o = Orchestrator::new(config.clone(), &input.query, &global);

    let messages = o.messages();
    // The system prompt is the template plus data: the data adds no tag and no control character.
    let system = &messages[0].content;
    assert!(system.starts_with(&template));
    assert!(inert(&system[template.len()..]), "global memory leaked a tag or control: {system:?}");
    assert!(inert(&messages[1].content), "the query leaked a tag or control: {:?}", messages[1].content);

    let grammar = o.grammar();
    assert!(grammar.starts_with("start: think "), "{grammar}");

    let count = |text: &str| -> usize {
        match input.counter {
            Counter::Estimate => estimate_tokens(text),
            Counter::PerByte(k) => text.len().saturating_mul(k as usize) / 16,
            Counter::Constant(n) => n as usize,
        }
    };
    let mut shown_ids: Vec<i64> = Vec::new();
    let mut calls = input.hits.iter();
    for _ in 0..=config.max_memory_calls {
        let call = render_call(&input.reasoning, &input.aspects, input.tier.as_deref(), input.category.as_deref());
        match o.feed(&call) {
            Action::Retrieve { aspects, .. } => {
                assert!(!aspects.is_empty() && aspects.len() <= config.max_aspects);
            }
            Action::Answer { memory_ids, .. } => {
                assert!(memory_ids.iter().all(|id| shown_ids.contains(id)));
                break;
            }
        }
        let hits: Vec<ShownMemory> = calls.next().map(|h| h.iter().map(shown).collect()).unwrap_or_default();
        let before = o.shown().len();
        o.add_memories(&hits, &count);
        let new: Vec<i64> = o.shown()[before..].iter().map(|m| m.id).collect();
        shown_ids.extend(&new);
        let response = &o.messages().last().expect("a tool response").content;
        let body = response
            .strip_prefix(&format!("{RESPONSE_OPEN}\n"))
            .and_then(|r| r.strip_suffix(&format!("\n{RESPONSE_CLOSE}")))
            .unwrap_or_else(|| panic!("not one tool response block: {response:?}"));
        assert!(inert(body), "memory leaked a tag or control: {response:?}");
        assert_eq!(tool_responses(response), vec![new.clone()], "the block lists other ids: {response:?}");
        assert!(o.stats().memory_tokens <= config.memory_token_budget, "{:?}", o.stats());
    }
    if !o.is_done() {
        let answer = render_answer(&input.reasoning, &input.profile, &input.cite);
        match o.feed(&answer) {
            Action::Answer { profile, memory_ids, .. } => {
                assert!(profile.chars().count() <= config.max_profile_chars);
                assert!(memory_ids.iter().all(|id| shown_ids.contains(id)), "cites {memory_ids:?}");
            }
            Action::Retrieve { .. } => panic!("an answer turn read as a call"),
        }
    }
    // The whole prompt: exactly one tool response block per memory call.
    let prompt: String = o.messages().iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    assert_eq!(tool_responses(&prompt).len(), o.stats().memory_calls);
});

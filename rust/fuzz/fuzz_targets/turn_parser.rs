//! The turn parser: one model turn as arbitrary text, read by `parse_turn`, by the orchestrator
//! (`Orchestrator::feed`, up to three turns deep), and by the streaming readers the chat uses
//! while a turn arrives (`split_turn`, `partial_profile`) on prefixes of it. Checks what the
//! protocol promises: a call has 1..=max_aspects clean aspects of at most 80 characters and
//! never the global tier; an answer's profile fits its limit, describes something and cites only
//! memories it was shown; a parsed turn renders back to the same turn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mrrec_core::orchestrator::protocol::{
    partial_profile, render_answer, render_call, split_turn, tool_responses, ActionKind, THINK_CLOSE,
};
use mrrec_core::orchestrator::{
    escape, estimate_tokens, parse_turn, Action, Orchestrator, OrchestratorConfig, ShownMemory, Turn,
};
use mrrec_core::Tier;

fn clean(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.contains("  ") && !s.chars().any(|c| c.is_whitespace() && c != ' ')
}

fn check_turn(text: &str, config: &OrchestratorConfig) {
    match parse_turn(text, config) {
        Ok(Turn::Call { aspects, tier, category }) => {
            assert!((1..=config.max_aspects).contains(&aspects.len()), "{} aspects", aspects.len());
            for a in &aspects {
                assert!(clean(a) && a.chars().count() <= 80, "aspect {a:?}");
            }
            assert_ne!(tier, Some(Tier::Global), "a call for the global tier");
            if let Some(c) = &category {
                assert!(clean(c) && c.chars().count() <= 40, "category {c:?}");
            }
            // Rendered again (as the SFT teacher writes turns), the call reads back the same.
            let inert = aspects.iter().chain(&category).all(|s| escape(s) == *s);
            if inert {
                let again = render_call("again", &aspects, tier.map(Tier::name), category.as_deref());
                assert_eq!(parse_turn(&again, config), Ok(Turn::Call { aspects, tier, category }), "{again}");
            }
        }
        Ok(Turn::Answer { profile, memory_ids }) => {
            assert!(profile.chars().count() <= config.max_profile_chars, "profile of {} chars", profile.len());
            assert!(clean(&profile), "profile {profile:?}");
            let words = profile.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).count();
            assert!(words >= 2, "profile {profile:?} describes nothing");
            if escape(&profile) == profile {
                let again = render_answer("again", &profile, &memory_ids);
                assert_eq!(parse_turn(&again, config), Ok(Turn::Answer { profile, memory_ids }), "{again}");
            }
        }
        Err(problem) => assert!(!problem.is_empty()),
    }
}

fn check_action(action: &Action, config: &OrchestratorConfig, shown: &[i64]) {
    match action {
        Action::Retrieve { aspects, tier, k, .. } => {
            assert!(!aspects.is_empty() && aspects.len() <= config.max_aspects);
            assert_ne!(*tier, Some(Tier::Global));
            assert_eq!(*k, config.memory_k);
        }
        Action::Answer { profile, memory_ids, fallback, reason } => {
            assert!(profile.chars().count() <= config.max_profile_chars);
            assert!(memory_ids.iter().all(|id| shown.contains(id)), "cites {memory_ids:?}, shown {shown:?}");
            assert_eq!(*fallback, reason.is_some());
        }
    }
}

fn check_streaming(text: &str) {
    let (reasoning, kind, body) = split_turn(text);
    assert!(!reasoning.contains(THINK_CLOSE), "reasoning {reasoning:?} holds the closing tag");
    if kind != ActionKind::Pending {
        assert!(!body.contains("</"), "body {body:?} holds a closing tag");
    }
    let profile = partial_profile(&body);
    assert!(profile.chars().count() <= body.chars().count(), "profile {profile:?} longer than {body:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config = OrchestratorConfig::default();
    check_turn(&text, &config);
    // A small config, so the limits are reached too.
    let small = OrchestratorConfig { max_aspects: 1, max_profile_chars: 12, max_memory_calls: 1, ..config.clone() };
    check_turn(&text, &small);

    // The orchestrator, fed the same turn until it answers: each call is answered with memories.
    for config in [&config, &small] {
        let mut o = Orchestrator::new(config.clone(), "a film for tonight", &[]);
        let mut shown = Vec::new();
        for turn in 0..3 {
            let action = o.feed(&text);
            check_action(&action, config, &shown);
            if !matches!(action, Action::Retrieve { .. }) {
                break;
            }
            let hits: Vec<ShownMemory> = (0..3)
                .map(|i| ShownMemory {
                    id: turn * 10 + i,
                    tier: Tier::Pattern,
                    categories: vec!["Drama".into()],
                    text: format!("Likes slow dramas, number {i}"),
                })
                .collect();
            o.add_memories(&hits, &estimate_tokens);
            shown.extend(o.shown().iter().map(|m| m.id));
        }
        assert!(o.is_done() || o.stats().memory_calls <= config.max_memory_calls);
        assert!(o.stats().memory_tokens <= config.memory_token_budget);
    }

    // The text as it streams in: a handful of prefixes, cut at character boundaries.
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let step = (bounds.len() / 16).max(1);
    for &end in bounds.iter().step_by(step).chain(bounds.last()) {
        check_streaming(&text[..end]);
    }
    let _ = tool_responses(&text);
});

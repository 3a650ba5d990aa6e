"""The card keys, the mouse and the way back to the prompt, on a saved conversation (no model:
the live answer's focus is checked in test_chat.py). Feedback goes through the real workspace
into the real store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual import events
from textual.keys import _character_to_key
from textual.widgets import Input, Static

from mrrec_edge.tui.screens.chat import CARD_HINT, PROMPT_HINT, ChatScreen
from mrrec_edge.tui.widgets.cards import ACTIONS_LINE, CardActions, RecommendationCard
from tests.tui.conftest import SIZE, make_app, saved_conversation, wait_for


def _hint(chat: ChatScreen) -> str:
    hint = chat.query_one("#chat-hint", Static)
    return str(hint.render()) if hint.display else ""


def test_card_keys_mouse_and_the_way_back_to_the_prompt(home: Path) -> None:
    conversation = saved_conversation(home)

    async def run() -> None:
        app = make_app(home)
        async with app.run_test(size=SIZE) as pilot:
            chat = app.screen
            assert isinstance(chat, ChatScreen)
            chat.load_conversation(conversation)
            await wait_for(pilot, lambda: len(chat.query(RecommendationCard)) == 4)
            await pilot.pause()
            cards = list(chat.query(RecommendationCard))
            prompt = chat.query_one("#prompt", Input)
            # A resumed conversation waits for a follow-up; ↑ goes to its cards.
            assert app.focused is prompt and _hint(chat) == PROMPT_HINT
            await pilot.press("up")
            assert app.focused is cards[0] and _hint(chat) == CARD_HINT

            # Keys act on the focused card, and nothing reaches the prompt.
            await pilot.press("down", "d")
            assert app.focused is cards[1]
            await wait_for(pilot, lambda: cards[1].feedback == "dislike", what="the dislike")
            await pilot.press("down", "3")
            await wait_for(pilot, lambda: cards[2].feedback == "rate=3", what="the rating")
            assert "rated 3/5: saved to your memory" in str(
                cards[2].query_one(".card-ack").render()
            )
            assert prompt.value == ""

            # A click on a card's action does what its key does, and focuses the card.
            actions = cards[3].query_one(CardActions)
            cards[3].scroll_visible(animate=False)
            await pilot.pause()
            assert await pilot.click(actions, offset=(ACTIONS_LINE.plain.index("s seen"), 0))
            await wait_for(pilot, lambda: cards[3].feedback == "seen", what="the click")
            assert app.focused is cards[3]

            # Back to the prompt: Esc, "/", ↓ past the last card; ↑ returns to the last card.
            await pilot.press("escape")
            assert app.focused is prompt and _hint(chat) == PROMPT_HINT
            await pilot.press("up")
            assert app.focused is cards[3]
            await pilot.press("slash")
            assert app.focused is prompt and prompt.value == ""
            await pilot.press("up", "down")
            assert app.focused is prompt
            # Any other printable key starts the follow-up with that key.
            await pilot.press("up", *"Warm")
            assert app.focused is prompt and prompt.value == "Warm"
            # Keys faster than focus moves (a burst, as tmux send-keys delivers them) stay whole,
            # the card keys among them (l, s) included.
            prompt.value = ""
            await pilot.press("up")
            assert app.focused is cards[3]
            burst = "Warm films, less slapstick"
            for ch in burst:
                app.post_message(events.Key(_character_to_key(ch), ch))
            await wait_for(pilot, lambda: prompt.value == burst, timeout=10, what="the burst")

            # Every reaction was saved into the answer (the card shows it when resumed).
            with_feedback = app.workspace.conversations.messages(conversation)[-1].answer
            assert with_feedback is not None
            recs = [c.item for c in cards]
            assert with_feedback.feedback == {
                recs[0]: "like",  # saved with the conversation
                recs[1]: "dislike",
                recs[2]: "rate=3",
                recs[3]: "seen",
            }
            assert app.errors == []

    asyncio.run(run())

"""The token-tree sampler gives each row the logits of its own sequence, shares what rows have
in common, and stops a row where generate() would."""

from __future__ import annotations

from tests.conftest import require_module

torch = require_module("torch")

from mrrec_train.sampler import TokenTree  # noqa: E402
from tests.training.tiny import tiny_llama  # noqa: E402

CPU = torch.device("cpu")


def _alone(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


def test_every_row_gets_the_logits_of_its_own_sequence() -> None:
    """Against the same weights with Transformers' own attention (the tree switches its model
    to grouped key/value heads under a mask)."""
    model = tiny_llama()
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    tree = TokenTree(tiny_llama(), CPU)
    assert tree.model.config._attn_implementation != model.config._attn_implementation
    prompt = [5, 6, 7, 8, 9]
    first = [tree.append(-1, prompt)]
    for _ in range(2):  # a second row with the same prompt shares its nodes
        node, matched = tree.locate(prompt)
        assert matched == len(prompt)
    got = tree.forward(first)
    assert torch.allclose(got[0], _alone(model, prompt), atol=1e-5)
    # Two branches after the prompt in one pass, then a longer turn below one of them.
    leaf = first[0].last
    a, b = tree.append(leaf, [10, 11]), tree.append(leaf, [12])
    got = tree.forward([a, b])
    assert torch.allclose(got[0], _alone(model, [*prompt, 10, 11]), atol=1e-5)
    assert torch.allclose(got[1], _alone(model, [*prompt, 12]), atol=1e-5)
    node, matched = tree.locate([*prompt, 10, 11, 40, 41])
    assert (node, matched) == (a.last, 7)
    c = tree.append(node, [40, 41])
    got = tree.forward([c])
    assert torch.allclose(got[0], _alone(model, [*prompt, 10, 11, 40, 41]), atol=1e-5)
    assert len(tree) == 10  # every token of the three sequences once


def test_rows_below_different_prompts_attend_over_their_own_branch() -> None:
    """Two prompts after a shared system prompt, rows below each: one attention group per
    prompt, each over the nodes its rows see, and every row still gets its own logits."""
    model = tiny_llama()
    tree = TokenTree(tiny_llama(), CPU)
    system = tree.append(-1, [3, 4, 5])
    tree.forward([system])
    first, second = tree.append(system.last, [10, 11]), tree.append(system.last, [20, 21, 22])
    tree.forward([first, second])
    rows = [
        tree.append(first.last, [30]),
        tree.append(first.last, [31, 32]),
        tree.append(second.last, [33]),
    ]
    groups = []
    grouping = tree._groups
    tree._groups = lambda chains, visible: groups.append(grouping(chains, visible)) or groups[-1]
    got = tree.forward(rows)
    ((by_first, by_second),) = groups
    assert by_first[0].tolist() == [0, 1, 2] and by_second[0].tolist() == [3]
    assert set(by_first[1].tolist()).isdisjoint(range(second.first, second.last + 1))
    sequences = [[3, 4, 5, 10, 11, 30], [3, 4, 5, 10, 11, 31, 32], [3, 4, 5, 20, 21, 22, 33]]
    for logits, ids in zip(got, sequences, strict=True):
        assert torch.allclose(logits, _alone(model, ids), atol=1e-5)


def test_prompts_that_start_alike_are_split_into_groups_of_their_own() -> None:
    """Two long prompts that share their first token after the system prompt, and a third:
    the first split puts the two together, and splitting them again cuts the work, so each
    prompt's rows attend over its own nodes."""
    model = tiny_llama()
    tree = TokenTree(tiny_llama(), CPU)
    system = tree.append(-1, [3, 4, 5])
    tree.forward([system])
    prompts = [[10, *range(20, 40)], [10, *range(40, 60)], [11, *range(60, 80)]]
    chains = [tree.append(system.last, p) for p in prompts]
    tree.forward(chains)
    rows = [tree.append(c.last, [90 + i]) for i, c in enumerate(chains) for _ in range(2)]
    groups = []
    grouping = tree._groups
    tree._groups = lambda chains, visible: groups.append(grouping(chains, visible)) or groups[-1]
    got = tree.forward(rows)
    (found,) = groups
    assert sorted(r.tolist() for r, _, _ in found) == [[0, 1], [2, 3], [4, 5]]
    for _, columns, _ in found:  # the system prompt, its prompt, its rows
        assert len(columns) == 3 + len(prompts[0]) + 2
    for i, logits in enumerate(got):
        ids = [3, 4, 5, *prompts[i // 2], 90 + i // 2]
        assert torch.allclose(logits, _alone(model, ids), atol=1e-5)


class _Tokens:
    """Decodes ids as letters (id 1 is the end token, 2 stands for '>')."""

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(">" if i == 2 else "" if i == 1 else chr(ord("a") + i % 26) for i in ids)


def test_greedy_generation_equals_step_by_step_argmax_and_shares_prompts() -> None:
    model = tiny_llama()
    tree = TokenTree(model, CPU)
    prompts = [[5, 6, 7, 8], [5, 6, 7, 8], [5, 6, 9]]
    out = tree.generate(
        prompts,
        max_new_tokens=6,
        temperature=0.0,
        generator=torch.Generator().manual_seed(0),
        eos={1},
        stop=["never"],
        tokenizer=_Tokens(),
    )
    for ids, completion in zip(prompts, out, strict=True):
        seq = list(ids)
        for token in completion:
            assert token == int(_alone(model, seq).argmax())
            seq.append(token)
        assert len(completion) == 6 or completion[-1] == 1
    assert out[0] == out[1]
    # The repeated prompt ran once (its last token twice, for its logits); decoding shares nothing.
    decoded = sum(len(c) - 1 for c in out)
    assert len(tree) == 4 + 1 + 1 + decoded


def test_a_row_stops_at_a_stop_string_or_the_end_token() -> None:
    model = tiny_llama()
    tree = TokenTree(model, CPU)
    first = tree.generate(
        [[5, 6, 7]],
        max_new_tokens=8,
        temperature=1.0,
        generator=torch.Generator().manual_seed(3),
        eos={1},
        stop=[],
        tokenizer=_Tokens(),
    )[0]
    assert len(first) == 8 or first[-1] == 1
    # Stop at the first token: every letter stops.
    text = _Tokens().decode(first[:1])
    stopped = TokenTree(model, CPU).generate(
        [[5, 6, 7]],
        max_new_tokens=8,
        temperature=1.0,
        generator=torch.Generator().manual_seed(3),
        eos={1},
        stop=[text] if text else ["\0"],
        tokenizer=_Tokens(),
    )[0]
    assert stopped == first[:1]


def test_rollouts_decode_a_merged_copy_with_the_adapters_logits() -> None:
    """The tree decodes with the LoRA adapter folded into a copy of the weights: the policy's
    own logits, and the trained model keeps its adapter."""
    from peft import LoraConfig, get_peft_model

    from mrrec_train.policy import _merged

    torch.manual_seed(0)
    policy = get_peft_model(
        tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    ids = [5, 6, 7, 8, 9]
    merged = _merged(policy)
    assert not hasattr(merged, "peft_config") and hasattr(policy, "peft_config")
    expected = _alone(policy, ids)
    assert torch.allclose(_alone(merged, ids), expected, atol=1e-5)
    with policy.disable_adapter():  # the adapter changes the logits: the test can fail
        assert not torch.allclose(_alone(policy, ids), expected, atol=1e-3)


def test_sampling_draws_the_softmax_distribution() -> None:
    """20,000 rows of one distribution (with a token of probability 0): each token's share
    within 0.015 of its probability, and the impossible one never drawn."""
    from mrrec_train.sampler import _sample

    logits = torch.tensor([2.0, 0.5, float("-inf"), 1.0, -1.0])
    temperature = 0.7
    expected = torch.softmax(logits / temperature, dim=-1)
    drawn = _sample(logits.repeat(20_000, 1), temperature, torch.Generator().manual_seed(0))
    shares = torch.bincount(torch.tensor(drawn), minlength=5).float() / len(drawn)
    assert shares[2] == 0
    assert torch.allclose(shares, expected, atol=0.015)
    assert _sample(logits[None], 0.0, torch.Generator()) == [0]


def test_the_cache_keeps_every_node_as_it_grows() -> None:
    """Passes past the cache's first room (256 nodes): every row still gets its own logits."""
    model = tiny_llama()
    tree = TokenTree(tiny_llama(), CPU)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 97, (100,), generator=generator).tolist() for _ in range(3)]
    for ids in prompts:
        got = tree.forward([tree.append(-1, ids)])
        assert torch.allclose(got[0], _alone(model, ids), atol=1e-5)
    assert len(tree) == 300 and tree.cache.filled[0] == 300


def test_many_rows_below_many_prompts_each_get_their_own_logits() -> None:
    """Prompts in families that start alike, rows below each that sample the same token or
    not, several decode passes (so many a split is tried and dropped): every row's logits at
    every pass are those of its own sequence alone."""
    model = tiny_llama()
    tree = TokenTree(tiny_llama(), CPU)
    generator = torch.Generator().manual_seed(1)

    def draw(n: int, low: int = 20) -> list[int]:
        return [int(t) for t in torch.randint(low, 97, (n,), generator=generator)]

    system = tree.append(-1, [3, 4, 5])
    tree.forward([system])
    sequences, chains = [], []
    for family in range(4):
        for member in range(3):
            ids = [10 + family, *draw(4 + 5 * member)]
            chains.append(tree.append(system.last, ids))
            sequences.append([3, 4, 5, *ids])
    tree.forward(chains)
    rows = [(seq, c.last) for seq, c in zip(sequences, chains, strict=True) for _ in range(4)]
    for _ in range(4):
        new = []
        for i, (seq, leaf) in enumerate(rows):
            (token,) = draw(1, low=90)  # few choices: rows below one prompt often agree
            new.append(tree.append(leaf, [token]))
            rows[i] = ([*seq, token], new[-1].last)
        got = tree.forward(new)
        for logits, (seq, _) in zip(got, rows, strict=True):
            assert torch.allclose(logits, _alone(model, seq), atol=1e-5)


def test_a_closed_tree_stops_keeping_layer_inputs() -> None:
    """A model with no adapter is decoded as is, so it outlives the step's tree: closing the
    tree removes its hook from the model."""
    model = tiny_llama()
    tree = TokenTree(model, CPU, keep_inputs_of=1)
    tree.forward([tree.append(-1, [5, 6, 7])])
    assert tree.layer_inputs([5, 6, 7]).shape == (3, 32)
    tree.close()
    kept = len(tree._inputs)
    model(torch.tensor([[5, 6]]))
    assert len(tree._inputs) == kept

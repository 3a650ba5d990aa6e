"""A tiny real model for the training loop's unit tests."""

from __future__ import annotations

import torch


def tiny_llama(seed: int = 0):
    """A 2-layer Llama with random weights: real transformer passes in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()

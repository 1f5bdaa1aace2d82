"""Attention for padding-free rows without flash-attention: causal SDPA over each packed sequence on its own.

A padding-free batch is one row holding several sequences. Stock ``sdpa`` keeps them apart with a dense
block-diagonal mask over the whole row: on a CPU that is the slow masked kernel, over (sum of lengths)^2 scores.
For SmolLM2-135M with 8 examples of ~110 tokens it took 40% of a training step. Running the causal kernel (no mask)
once per sequence computes the same result with ~8x fewer scores. Everything else -- generation, padded batches,
a row without sequence boundaries -- goes to stock ``sdpa`` unchanged.

The boundaries come from ``cu_seq_lens_q``, which trl's padding-free collator adds to every batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "packed_sdpa"


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """(batch, heads, seq, dim) in, (batch, seq, heads, dim) out, like every transformers attention function."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    edges = bounds.tolist()
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
            dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=grouped,
        )
        for start, end in zip(edges[:-1], edges[1:])
        if end > start
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``attn_implementation="packed_sdpa"`` available (idempotent); returns the name."""
    AttentionInterface.register(NAME, packed_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # masks for the cases handed to stock sdpa
    return NAME

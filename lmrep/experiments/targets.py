"""Small nets over token embeddings (lmrep.toy) as inversion targets, next to the layers of a language model."""
from __future__ import annotations

import torch
from torch import nn

from ..models import LoadedModel


class EmbeddingTarget(nn.Module):
    """Wraps a net over token embeddings into an inversion target: (B, T, d) -> (B, T, D).

    ``lm`` supplies the embedding matrix, the tokenizer and the decoders, as for a layer of the model itself.
    A flattened output (B, N) is viewed per position as (B, T, N / T); the mask is not used, so a net that mixes
    positions (FCNet) must be given batches of one length, which is how the experiments call it.
    """

    def __init__(self, net: nn.Module, lm: LoadedModel, name: str):
        super().__init__()
        self.net, self.lm, self.name = net, lm, name

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = embeds.shape
        return self.net(embeds).reshape(B, T, -1)  # (B, T, D)

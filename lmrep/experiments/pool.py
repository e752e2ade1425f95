"""Models and toy nets an experiment needs, loaded on first use and kept for the next condition.

A pool is passed in (never global), so one test session or one ``lmrep reproduce`` call loads each model once.
The few most recent entries are kept; older ones are dropped to bound memory (an FCNet over 6 tokens of
SmolLM2 embeddings alone is 0.8 GB).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from ..models.load import LoadedModel, load_model, model_status
from ..objective.targets import EmbeddingTarget, toy_target
from ..vision.vit import LoadedViT, load_vit


class ModelPool:
    """Language models and toy nets by what they are, the ``keep`` most recently used ones kept loaded."""

    def __init__(self, device: str = "cpu", keep: int = 8):
        self.device, self.keep = device, keep
        self._items: OrderedDict = OrderedDict()

    def _get(self, key: tuple, make: Callable):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.keep:
            self._items.popitem(last=False)
        return value

    def model(self, name: str, untrained: bool = False, seed: int = 0, dtype: str = "float32") -> LoadedModel:
        """A language model; the untrained GPT-2 draws its weights under ``seed``."""
        return self._get(("model", name, untrained, seed if untrained else 0, dtype),
                         lambda: load_model(name, untrained=untrained, seed=seed, device=self.device, dtype=dtype))

    def vit(self, name: str, seed: int = 0) -> LoadedViT:
        """A vision model (``vision.vit.load_vit``: a known name, hub name or folder), its weights drawn under
        ``seed`` where it is untrained."""
        return self._get(("vit", name, seed), lambda: load_vit(name, seed=seed, device=self.device))

    def n_layers(self, name: str, untrained: bool = False) -> int:
        """How many blocks a model has; the untrained GPT-2 is not built for it (its config says: 12)."""
        if untrained and name == "gpt2":
            from transformers import GPT2Config
            return GPT2Config().n_layer
        return self.model(name, untrained=untrained).n_layers

    def toy(self, toy: str, lm: LoadedModel, tokens: int, seed: int) -> EmbeddingTarget:
        """A page net over ``lm``'s token embeddings (lmrep.objective.targets.toy_target)."""
        # the MLP works on any length; FCNet is built for one
        return self._get(("toy", toy, lm.name, lm.trained, str(lm.dtype), tokens if toy != "mlp" else 0, seed),
                         lambda: toy_target(toy, lm, tokens, seed))


def trained_gpt2_available() -> bool:
    """Whether trained GPT-2's weights are here (the experiments then run it next to the default model)."""
    return any(r["name"] == "gpt2" and r["offline"] for r in model_status())

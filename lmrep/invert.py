"""Inversion: given a layer's output for a prompt, get the prompt back. Methods register in METHODS.

Every method yields one JSON-ready record per prompt with the same core fields (see ``record``), so runs of
different methods, layers and models can be compared line by line.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch

from .decode import check_decoder
from .errors import LmrepError
from .layers import LayerModel
from .losses import check_loss

INITS = ("text", "original", "mix")
OPTIMIZERS = ("adam", "sgd")
FIRST_TOKEN = ("search", "table")
RANKINGS = ("guided", "table", "secant", "vocab")


@dataclass
class InvertConfig:
    method: str = "gd"  # gd (the seed's method); more methods register in METHODS
    steps: int = 500  # optimisation steps N
    lr: float = 0.01  # eta; the schedule falls linearly to eta/10 over the steps (the seed's schedule)
    optimizer: str = "adam"  # adam, or sgd: the seed's plain gradient steps
    init: str = "text"  # text: N(0.5, 1/20); original: N(0, 1) (the author's scripts); mix: s*N(0.5, 1/20) + t*e
    mix: tuple[float, float] = (0.001, 0.999)  # (s, t) for init=mix
    loss: str = "l1"  # l1 (the seed's), l2, cosine
    decoder: str = "pinv"  # pinv (eq. 3), l2, cosine
    topk: int = 1  # also report the top-k tokens per position
    sigma: float = 0.05  # eq. 4: the threshold m uses e' = e + N(0, sigma)
    batch_size: int = 8  # prompts optimised together (padded; each prompt's loss is its own)
    snapshots: tuple[int, ...] = ()  # steps at which to decode; empty: a default spread
    seed: int = 0  # noise for inits and the threshold
    tolerance: float | None = None  # exact: largest relative residual counted as a match; None: from dtype, depth
    candidate_batch: int = 64  # exact: most candidates verified in one forward pass
    max_candidates: int = 4096  # exact: candidates tried at one position before it is reported unverified
    first_token: str = "search"  # exact: search, or table (every token's output at position 0, once per layer)
    ranking: str = "guided"  # exact: guided (model's expectation + refined guess), secant, vocab (brute force)

    def check(self, vocab_size: int | None = None) -> "InvertConfig":
        if self.method not in METHODS:
            raise LmrepError(f"unknown method '{self.method}': choose one of {', '.join(METHODS)}")
        if self.steps < 1:
            raise LmrepError(f"steps must be 1 or more, got {self.steps}")
        if not (self.lr > 0 and self.lr != float("inf")):
            raise LmrepError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise LmrepError(f"unknown optimizer '{self.optimizer}': choose one of {', '.join(OPTIMIZERS)}")
        if self.init not in INITS:
            raise LmrepError(f"unknown init '{self.init}': choose one of {', '.join(INITS)}")
        if not self.sigma > 0:
            raise LmrepError(f"sigma must be positive, got {self.sigma}")
        if self.batch_size < 1:
            raise LmrepError(f"batch size must be 1 or more, got {self.batch_size}")
        if self.tolerance is not None and not self.tolerance > 0:
            raise LmrepError(f"tolerance must be positive, got {self.tolerance}")
        if self.candidate_batch < 1 or self.max_candidates < 1:
            raise LmrepError("candidate batch and max candidates must be 1 or more")
        if self.first_token not in FIRST_TOKEN:
            raise LmrepError(f"unknown first-token mode '{self.first_token}': choose one of {', '.join(FIRST_TOKEN)}")
        if self.ranking not in RANKINGS:
            raise LmrepError(f"unknown ranking '{self.ranking}': choose one of {', '.join(RANKINGS)}")
        check_loss(self.loss)
        check_decoder(self.decoder)
        if self.topk < 1 or (vocab_size is not None and self.topk > vocab_size):
            raise LmrepError(f"topk must be between 1 and the vocabulary size {vocab_size}, got {self.topk}")
        return self

    def snapshot_steps(self) -> list[int]:
        if self.snapshots:
            return sorted({s for s in self.snapshots if 0 <= s <= self.steps} | {self.steps})
        spread = [0, 10, 20, 40, 50, 60, 100, 200, 500, 1000, 2000, 5000, 10000]
        return sorted({s for s in spread if s < self.steps} | {self.steps})

    def to_dict(self) -> dict:
        return asdict(self)


# What a method inverts: any callable O(embeds (B, T, d), attention_mask (B, T)) -> (B, T, D) with attributes
# ``lm`` (the LoadedModel whose embeddings, tokenizer and full model are used) and ``name``. A LayerModel is one;
# its ``spec`` (depth, head) is reported when present. Small nets over embeddings (lmrep.toy) are others.
Target = Callable[..., torch.Tensor]
Method = Callable[[Target, list[list[int]], InvertConfig, bool], Iterator[dict]]
METHODS: dict[str, Method] = {}


def register_method(name: str):
    def wrap(fn: Method) -> Method:
        METHODS[name] = fn
        return fn
    return wrap


def load_methods() -> dict[str, Method]:
    """Import the modules that register methods (they import this one, so this cannot happen at the top)."""
    from . import exact, gd, nearest  # noqa: F401
    return METHODS


def invert(target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True) -> Iterator[dict]:
    """Invert each prompt from ``target``'s output; yields a record per prompt as soon as it is done."""
    load_methods()
    cfg.check(target.lm.vocab_size)
    ids = [target.lm.encode(p) for p in prompts]
    yield from METHODS[cfg.method](target, ids, cfg, progress)


def pad(batch: list[list[int]], pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists -> ids (B, T) and mask (B, T) with 1 on real tokens."""
    T = max(len(x) for x in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(batch), T), dtype=torch.long, device=device)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return ids, mask


def prompt_generator(seed: int, ids: list[int], device) -> torch.Generator:
    """Noise that depends on (seed, prompt) only, so a prompt gets the same start alone or in any batch."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + zlib.crc32(str(ids).encode()))
    return g


@torch.no_grad()
def next_tokens(target: Target, batch: list[list[int]]) -> list[int]:
    """The full model's predicted next token after each sequence."""
    lm = target.lm
    ids, mask = pad(batch, device=lm.device)
    logits = lm.model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
    last = mask.sum(1) - 1
    return logits[torch.arange(len(batch)), last].argmax(-1).tolist()


def record(target: Target, cfg: InvertConfig, ids: list[int], recovered: list[int], **extra) -> dict:
    """The fields every method reports; ``extra`` adds the method's own."""
    lm = target.lm
    correct = sum(int(a == b) for a, b in zip(ids, recovered))
    return dict(
        model=lm.name, trained=lm.trained, layer=_depth(target), layer_name=target.name, method=cfg.method,
        prompt=lm.decode(ids), target_ids=ids, recovered_ids=recovered, recovered_text=lm.decode(recovered),
        n_tokens=len(ids), token_accuracy=correct / len(ids), exact_match=recovered == ids, **extra)


def _depth(target: Target) -> int | None:
    """Blocks run by a LayerModel target; None for targets that are not layers of the model."""
    spec = getattr(target, "spec", None)
    return spec.depth if spec is not None else None


def summarize(records: list[dict]) -> dict:
    """Mean and standard error of the headline rates over prompts."""
    out = {"prompts": len(records)}
    for key in ("token_accuracy", "exact_match", "within_threshold", "next_token_match", "seconds"):
        vals = [float(r[key]) for r in records if r.get(key) is not None]
        if vals:
            mean = sum(vals) / len(vals)
            var = sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1)
            out[key] = dict(mean=mean, sem=(var / len(vals)) ** 0.5 if len(vals) > 1 else 0.0)
    return out


def config_dict(cfg: InvertConfig, target: LayerModel) -> dict:
    lm = target.lm
    return dict(model=lm.name, trained=lm.trained, layer=target.spec.depth, head=target.spec.head,
                layer_name=target.name, dtype=str(lm.dtype).replace("torch.", ""), device=str(lm.device),
                **cfg.to_dict())

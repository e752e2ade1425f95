"""Which layer produced observed states (``--layer auto``): position 0 depends on its own token only.

So one position separates the layers cheaply, with no prefix to recover first. For every layer whose output has the
states' width (each depth, raw and after the final norm; for logits-wide states, the LM-head variants), a linear
map from that layer's position-0 output back to the token embedding is fitted on random tokens, all layers from one
forward pass; it guesses the token of the observed position 0 at each layer, and one more forward pass verifies the
guesses (their union, every layer at once). The layer whose best candidate reproduces position 0 within its
tolerance is the answer; the residual of every candidate layer is the evidence. Where none does (noise, another
model, a guess that missed), that is said, never a closest guess passed off as a match.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.architectures import every_block
from ..errors import LmrepError
from ..models.layers import LayerModel, LayerSpec
from ..models.load import LoadedModel
from .config import InvertConfig
from .exact import residuals
from .exact.guess import output_features, ridge
from .exact.certificate import tolerances

SAMPLES_PER_DIM = 2  # random tokens per embedding dimension that the maps are fitted on
GUESSES = 16  # tokens nearest each layer's guess that are verified
PRIOR = 64  # and the tokens the model expects most at the start of a text
SHOWN = 4  # layers named in the one-line summary (the run folder's layer_search.json has them all)
ROUNDS = 3  # verification passes: each moves every layer's guess by a secant step from its best candidate


@dataclass
class Located:
    target: LayerModel  # the layer found
    evidence: list[dict]  # per candidate layer: its name, depth, head, best residual, tolerance, token

    @property
    def matching(self) -> list[str]:
        """Every layer whose position 0 matched within its tolerance (more than one: the states cannot tell)."""
        return [e["layer_name"] for e in self.evidence if e["matches"]]

    def text(self) -> str:
        nearest = sorted(self.evidence, key=lambda e: e["residual"] / e["tolerance"])[:SHOWN]
        rows = ", ".join(f"{e['layer_name']} {e['residual']:.1e} (tolerance {e['tolerance']:.1e})" for e in nearest)
        also = [m for m in self.matching if m != self.target.name]
        tie = (f"; {len(also)} other layer(s) match within tolerance too ({', '.join(also[:5])}"
               f"{', ...' if len(also) > 5 else ''}): took the smallest residual relative to tolerance" if also else "")
        return (f"--layer auto: {self.target.name}{tie} (residual at position 0, the {len(nearest)} nearest of "
                f"{len(self.evidence)} layers: {rows})")


def candidates(lm: LoadedModel, width: int) -> list[LayerSpec]:
    """Every (depth, head) whose output has ``width`` per position."""
    n, d = lm.n_layers, _width(lm)
    specs = []
    if width == d:
        specs += [LayerSpec(k) for k in range(n + 1)] + [LayerSpec(k, "norm") for k in range(1, n + 1)]
    if width == lm.lm_head.weight.shape[0]:
        specs += [LayerSpec(k, h) for k in range(1, n + 1) for h in ("logits", "logits_nonorm")]
    return specs


def _outputs(target: LayerModel, blocks: list[torch.Tensor]) -> torch.Tensor:
    """A layer's position-0 outputs (B, D) from the residual streams of every block (n + 1 of (B, 1, d))."""
    return target.head(blocks[target.spec.depth][:, 0])


def _maps(lm: LoadedModel, seed: int) -> dict:
    """Per candidate layer, the fitted map from its position-0 output features back to the token embedding; every
    layer's training outputs come from one forward pass of random tokens (fitted once per model)."""
    W = lm.embedding_matrix.detach()
    n = min(lm.vocab_size, max(SAMPLES_PER_DIM * lm.d_model, 256))
    toks = torch.randperm(lm.vocab_size, generator=torch.Generator().manual_seed(seed))[:n].to(lm.device)
    seen = every_block(lm.base, lm.blocks, W[toks][:, None])  # n + 1 of (n, 1, d): every layer in one pass
    maps = {}
    for spec in candidates(lm, _width(lm)):
        maps[spec] = ridge(_outputs(LayerModel(lm, spec), seen), W[toks])
    return maps


def _prior(lm: LoadedModel) -> torch.Tensor:
    """The ``PRIOR`` tokens the full model expects most after its start-of-text token (none if it has none): the
    frequent first words ("The", "A") whose position-0 outputs sit in a massive-activation regime that the linear
    maps miss."""
    start = next((t for t in (getattr(lm.tokenizer, "bos_token_id", None), getattr(lm.tokenizer, "eos_token_id", None))
                  if isinstance(t, int)), None)
    if start is None:
        return torch.zeros(0, dtype=torch.long, device=lm.device)
    logits = lm.model(input_ids=torch.tensor([[start]], device=lm.device)).logits[0, -1]  # (V,)
    return logits.topk(min(PRIOR, lm.vocab_size)).indices


def _width(lm: LoadedModel) -> int:
    return getattr(lm.config, "hidden_size", None) or lm.d_model


def _residual_spec(spec: LayerSpec) -> LayerSpec:
    """The residual-width layer whose map serves ``spec``: a logits head's features are its preimage through the
    LM head, the normed (logits) or raw (logits_nonorm) stream."""
    return LayerSpec(spec.depth, {"logits": "norm", "logits_nonorm": "none"}.get(spec.head, spec.head))


@torch.no_grad()
def locate(lm: LoadedModel, first: torch.Tensor, cfg: InvertConfig | None = None, seed: int = 0) -> Located:
    """The layer whose output at position 0 is ``first`` (D,), with the residual of each candidate layer."""
    cfg = cfg or InvertConfig(method="exact")
    specs = candidates(lm, first.shape[-1])
    if not specs:
        raise LmrepError(f"states of width {first.shape[-1]} fit no layer of {lm.name} (width {_width(lm)}, "
                         f"vocabulary {lm.vocab_size})")
    W = lm.embedding_matrix.detach()
    h = first.detach().to(device=lm.device, dtype=lm.dtype)
    targets = [LayerModel(lm, s) for s in specs]
    maps = lm.memo(("locate-maps", seed), lambda: _maps(lm, seed))
    sqnorm = lm.memo("sqnorm", lambda: (W * W).sum(-1))  # (V,)
    feats = {O.name: output_features(O) for O in targets}
    tried = torch.zeros(len(targets), lm.vocab_size, dtype=torch.bool, device=lm.device)  # (L, V)
    guess = [maps[_residual_spec(O.spec)](feats[O.name](h)) for O in targets]  # (d,) each: the layer's guess
    best = [(float("inf"), -1)] * len(targets)  # (residual, token) per layer
    prior = lm.memo(("locate-prior", PRIOR), lambda: _prior(lm))
    for r in range(ROUNDS):
        pools = [(sqnorm - 2 * (W @ x)).masked_fill(tried[i], float("inf")).topk(GUESSES, largest=False).indices
                 for i, x in enumerate(guess)]
        ids = torch.unique(torch.cat(pools + ([prior] if r == 0 else [])))  # (U,)
        seen = every_block(lm.base, lm.blocks, W[ids][:, None])  # every layer, every candidate: one pass
        for i, O in enumerate(targets):
            rows = torch.searchsorted(ids, pools[i]) if O.spec.has_lm_head else torch.arange(len(ids))
            out = O.head(seen[O.spec.depth][rows, 0])  # (n, D); logits are wide: the layer's own pool only
            res = residuals(out, h)  # (n,)
            j = int(res.argmin())
            tried[i, ids[rows]] = True
            if float(res[j]) < best[i][0]:
                best[i] = (float(res[j]), int(ids[rows][j]))
            # a secant step: the best candidate's embedding, moved by the map's reading of what its output misses
            m = maps[_residual_spec(O.spec)]
            token = best[i][1]
            k = int((ids[rows] == token).nonzero()[0]) if bool((ids[rows] == token).any()) else j
            guess[i] = W[int(ids[rows][k])] + m(feats[O.name](h)) - m(feats[O.name](out[k]))
    evidence = []
    for O, (res, token) in zip(targets, best):
        tol = float(tolerances(O, first[None], cfg)[0][0])
        evidence.append(dict(layer=O.spec.depth, head=O.spec.head, layer_name=O.name, residual=res, tolerance=tol,
                             token=token, matches=res <= tol))
    pick = min(range(len(evidence)), key=lambda i: evidence[i]["residual"] / evidence[i]["tolerance"])
    if not evidence[pick]["matches"]:
        e = evidence[pick]
        raise LmrepError(f"no layer of {lm.name} matches these states: the closest is {e['layer_name']} (residual "
                         f"{e['residual']:.2e} at position 0, tolerance {e['tolerance']:.2e}); pass --layer if the "
                         "states are noisy")
    return Located(targets[pick], evidence)

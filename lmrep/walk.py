"""Manifold walks: move a prompt's embedding e while a layer's output O(e) stays (nearly) where it was.

Three methods, one record format (moves live in walk_methods.py and walk_jacobian.py):

    tangent    the page's walk: SVD of the input gradient of sum(O) (tokens x d), a step along a right-singular
               vector beyond the number of tokens, broadcast over the tokens
    jacobian   a step along the smallest singular directions of the Jacobian dO/de itself (block Krylov on J^T J),
               then ``inner_steps`` re-projection steps that pull the output back to O(e)
    clamped    each round a random split index on the embedding dimension: noise on one side, ``inner_steps``
               gradient steps toward O(e) on the other; the noised (clamped) side never moves by gradient

The one definition of the ratio, used everywhere (``ratio``): r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1, sums over
every entry of the real (unpadded) positions. A target is any callable ``O(embeds (B, T, d), attention_mask (B, T))``
with attributes ``lm`` (whose tokenizer, embeddings and decoders are used) and ``name``; a LayerModel is one.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from .decode import Decoder, check_decoder
from .errors import LmrepError
from .invert import pad, prompt_generator

METHODS = ("tangent", "jacobian", "clamped")
CONVENTIONS = ("text", "scripts")


@dataclass
class WalkConfig:
    method: str = "clamped"  # tangent (the page's), jacobian (the correct one), clamped (the page's second)
    steps: int = 10  # moves (tangent, jacobian) or rounds (clamped) N
    inner_steps: int | None = None  # clamped: descent steps per round; jacobian/tangent: re-projection steps per
    #                                 move. None: 1 for clamped and jacobian, 0 for tangent (the page has none)
    step_size: float = 0.01  # tangent/jacobian: each move is step_size * sqrt(T) long in L2 (the page's 0.01 * perp)
    convention: str = "scripts"  # clamped: scripts (U(0, noise) on dims >= i, descent on dims < i) or text
    #                              (N(0, noise) on dims < i, descent on dims >= i, as the page's equation)
    noise: float = 2e-4  # clamped: noise scale per round (the scripts' 2e-4)
    lr: float = 2e-5  # clamped: plain gradient step on ||O(e_n) - O(e)||_1 (the scripts' 2e-5)
    directions: int = 8  # jacobian: directions per Krylov block (the walk moves in their span)
    krylov: int = 3  # jacobian: Krylov blocks, i.e. J^T J products per move
    decoder: str = "pinv"  # pinv (eq. 3), l2, cosine
    topk: int = 5  # decoded alternatives per snapshot (the page prints top-5)
    snapshots: tuple[int, ...] = ()  # steps at which to decode; empty: 0, N/4, N/2, 3N/4, N
    batch_size: int = 16  # walks run together (each is its own computation; a batch is just fewer Python steps)
    seed: int = 0  # noise, split indices and starting directions

    def check(self, vocab_size: int | None = None) -> "WalkConfig":
        """Raise LmrepError on a value that cannot work; returns self."""
        if self.method not in METHODS:
            raise LmrepError(f"unknown walk method '{self.method}': choose one of {', '.join(METHODS)}")
        if self.convention not in CONVENTIONS:
            raise LmrepError(f"unknown convention '{self.convention}': choose one of {', '.join(CONVENTIONS)}")
        for name in ("steps", "inner_steps", "seed"):
            v = getattr(self, name)
            if v is not None and (int(v) != v or v < 0):
                raise LmrepError(f"{name.replace('_', '-')} must be a whole number 0 or more, got {v}")
        for name in ("step_size", "lr"):
            v = getattr(self, name)
            if not (v > 0 and v != float("inf")):
                raise LmrepError(f"{name.replace('_', '-')} must be a positive finite number, got {v}")
        if not (self.noise >= 0 and self.noise != float("inf")):
            raise LmrepError(f"noise must be 0 or a positive finite number, got {self.noise}")
        for name in ("directions", "krylov", "batch_size", "topk"):
            if int(getattr(self, name)) < 1:
                raise LmrepError(f"{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        if vocab_size is not None and self.topk > vocab_size:
            raise LmrepError(f"topk must be at most the vocabulary size {vocab_size}, got {self.topk}")
        check_decoder(self.decoder)
        return self

    @property
    def inner(self) -> int:
        """inner_steps with the method's default filled in."""
        if self.inner_steps is not None:
            return int(self.inner_steps)
        return 0 if self.method == "tangent" else 1

    def snapshot_steps(self) -> list[int]:
        if self.snapshots:
            return sorted({s for s in self.snapshots if 0 <= s <= self.steps} | {0, self.steps})
        return sorted({0, self.steps // 4, self.steps // 2, 3 * self.steps // 4, self.steps})

    def to_dict(self) -> dict:
        return dict(asdict(self), inner_steps=self.inner)


def l1(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: (B, T, ...), mask: (B, T) -> sum of |x| over the real positions, (B,), in float64."""
    m = mask.to(torch.float64).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x.detach().double().abs() * m).flatten(1).sum(1)


def l2(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: (B, T, ...), mask: (B, T) -> Euclidean norm over the real positions, (B,), in float64."""
    m = mask.to(torch.float64).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x.detach().double() ** 2 * m).flatten(1).sum(1).sqrt()


def ratio(e0: torch.Tensor, e: torch.Tensor, out0: torch.Tensor, out: torch.Tensor,
          mask: torch.Tensor) -> torch.Tensor:
    """r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1 per walk, (B,); NaN where the output did not change at all."""
    d_in, d_out = l1(e - e0, mask), l1(out - out0, mask)
    return torch.where(d_out > 0, d_in / d_out.clamp_min(1e-300), torch.full_like(d_in, float("nan")))


def input_at_output(trajectory: list[dict], delta: float, norm: str = "l1") -> float | None:
    """How far the input had moved when the output change first reached ``delta`` (both in ``norm``, l1 or l2),
    interpolating linearly between recorded steps; the final input distance if the output never changed that
    much. This compares walks at equal output change."""
    i, o = f"input_{norm}", f"output_{norm}"
    for a, b in zip(trajectory, trajectory[1:]):
        if b[o] >= delta:
            span = b[o] - a[o]
            w = (delta - a[o]) / span if span > 0 else 1.0
            return a[i] + min(max(w, 0.0), 1.0) * (b[i] - a[i])
    return trajectory[-1][i] if trajectory else None


def make_target(lm, layer: int | str = 1, head: str = "none", toy: str | None = None, seed: int = 0):
    """What to walk on: layer ``layer`` (+ ``head``) of ``lm``, or with ``toy="mlp"`` the page's MLP mimic
    (per token d -> 4d -> d, GELU, weights drawn under ``seed``) over lm's token embeddings."""
    if toy is None:
        from .layers import layer_model
        return layer_model(lm, layer, head)
    if toy != "mlp":
        raise LmrepError(f"unknown toy model '{toy}': the walk supports mlp (the page's MLP mimic)")
    from .experiments.targets import EmbeddingTarget
    from .toy import MLPMimic
    return EmbeddingTarget(MLPMimic(lm.d_model, seed=seed).to(lm.device, lm.dtype), lm, f"mlp-mimic(d={lm.d_model})")


@dataclass
class WalkState:
    """What a move reads and updates. ``e`` is replaced by each move; the rest is fixed for the walk."""
    target: Callable
    cfg: WalkConfig
    e: torch.Tensor  # (B, T, d) current embeddings
    e0: torch.Tensor  # (B, T, d) starting embeddings (the prompt's tokens)
    out0: torch.Tensor  # (B, T, D) O(e0)
    mask: torch.Tensor  # (B, T) 1 on real tokens
    gens: list  # one torch.Generator per walk
    prev: torch.Tensor | None = None  # (B, T, d) the last move's unit direction (jacobian continuation)
    ritz: torch.Tensor | None = None  # (B, T*d, k) the last least-gain directions (jacobian warm start)

    def draw(self, fn=torch.randn, *trailing: int) -> torch.Tensor:
        """Per walk, ``fn((L, d, *trailing))`` from its own generator for its L real tokens, zero-padded to
        (B, T, d, *trailing): a walk draws the same numbers alone or in any batch."""
        B, T, d = self.e.shape
        out = torch.zeros(B, T, d, *trailing, dtype=self.e.dtype, device=self.e.device)
        for b, (g, L) in enumerate(zip(self.gens, self.mask.sum(1).tolist())):
            out[b, :L] = fn((L, d, *trailing), generator=g, device=g.device, dtype=self.e.dtype)
        return out

    @property
    def tokmask(self) -> torch.Tensor:
        return self.mask[..., None].to(self.e.dtype)  # (B, T, 1)

    def output(self, e: torch.Tensor) -> torch.Tensor:
        return self.target(e, self.mask)


Move = Callable[[WalkState, int], list[dict]]  # one step or round; returns per-walk diagnostics


def moves() -> dict[str, Move]:
    """Method name -> move function (imported here: those modules import this one)."""
    from .walk_jacobian import jacobian_move
    from .walk_methods import clamped_round, tangent_move
    return {"tangent": tangent_move, "jacobian": jacobian_move, "clamped": clamped_round}


@dataclass
class WalkResult:
    """One walk: a JSON-ready record and its start and end embeddings (T, d), real positions only."""
    record: dict
    start: torch.Tensor
    end: torch.Tensor


def walk(target, prompts: list[str], cfg: WalkConfig, seeds: tuple[int, ...] | None = None,
         progress: bool = False) -> Iterator[WalkResult]:
    """Walk from each prompt under each seed (default: cfg.seed); yields one WalkResult per (prompt, seed)."""
    items = [(target.lm.encode(p), s) for s in (seeds if seeds is not None else (cfg.seed,)) for p in prompts]
    yield from walk_items(target, items, cfg, progress)


def walk_items(target, items: list[tuple[list[int], int]], cfg: WalkConfig,
               progress: bool = False) -> Iterator[WalkResult]:
    """Walk from each (token ids, seed) item, cfg.batch_size at a time; yields one WalkResult per item, in order."""
    cfg.check(target.lm.vocab_size)
    decoder = Decoder(target.lm, cfg.decoder)
    for i in range(0, len(items), cfg.batch_size):
        yield from _walk_batch(target, items[i:i + cfg.batch_size], cfg, decoder, progress)


def _walk_batch(target, items: list[tuple[list[int], int]], cfg: WalkConfig, decoder: Decoder,
                progress: bool) -> Iterator[WalkResult]:
    lm, t0 = target.lm, time.perf_counter()
    ids, mask = pad([x for x, _ in items], device=lm.device)  # (B, T)
    lengths = mask.sum(1).tolist()
    e0 = lm.embed(ids).detach().clone()  # (B, T, d)
    with torch.no_grad():
        out0 = target(e0, mask)  # (B, T, D)
    state = WalkState(target, cfg, e0.clone(), e0, out0, mask,
                      [prompt_generator(s, x, lm.device) for x, s in items])
    move = moves()[cfg.method]
    B, snaps = len(items), set(cfg.snapshot_steps())
    traj = [[dict(step=0, input_l1=0.0, output_l1=0.0, r=None, input_l2=0.0, output_l2=0.0)] for _ in range(B)]
    diags = [[] for _ in range(B)]
    shots = [[] for _ in range(B)]
    out_norm = l1(out0, mask)

    def snapshot(n: int) -> None:
        # changed: positions that decode differently from the start's decode (the decoder may miss a token
        # even at its exact embedding, e.g. pinv; start_misses counts those, against the true ids)
        top = decoder.topk(state.e, cfg.topk)  # (B, T, k)
        for b in range(B):
            rows = top[b, : lengths[b]].tolist()
            first = [row[0] for row in rows]
            ref = shots[b][0]["ids"] if shots[b] else first
            shots[b].append(dict(step=n, text=lm.decode(first), ids=first,
                                 changed=sum(int(a != c) for a, c in zip(first, ref)),
                                 start_misses=sum(int(a != c) for a, c in zip(ref, items[b][0])),
                                 topk_texts=[lm.decode([row[j] for row in rows]) for j in range(cfg.topk)]))

    bar = tqdm(total=cfg.steps, disable=not progress, desc=f"{cfg.method} walk {target.name}", unit="step",
               file=sys.stderr, leave=False)
    try:
        snapshot(0)  # always: the reference for 'changed'
        for n in range(1, cfg.steps + 1):
            for b, d in enumerate(move(state, n)):
                diags[b].append(dict(step=n, **d))
            with torch.no_grad():
                out = state.output(state.e)
            d_in, d_out = l1(state.e - e0, mask), l1(out - out0, mask)
            e_in, e_out = l2(state.e - e0, mask), l2(out - out0, mask)  # the same in L2, for cross-checks
            r = ratio(e0, state.e, out0, out, mask)
            for b in range(B):
                traj[b].append(dict(step=n, input_l1=d_in[b].item(), output_l1=d_out[b].item(), r=r[b].item(),
                                    input_l2=e_in[b].item(), output_l2=e_out[b].item()))
            if n in snaps:
                snapshot(n)
            bar.update(1)
            bar.set_postfix(r=f"{r.nanmean().item():.3g}")
    finally:
        bar.close()
    r_random = _random_ratio(state, l1(state.e - e0, mask))
    seconds = (time.perf_counter() - t0) / B
    for b, (x, seed) in enumerate(items):
        L, last = lengths[b], traj[b][-1]
        rec = dict(model=lm.name, trained=lm.trained, target=target.name, layer=_depth(target), **cfg.to_dict())
        rec.update(seed=seed, prompt=lm.decode(x), ids=x, n_tokens=L, input_distance=last["input_l1"],
                   output_distance=last["output_l1"], r=last["r"],
                   output_relative=last["output_l1"] / out_norm[b].item() if out_norm[b] > 0 else None,
                   r_random=r_random[b].item(),
                   r_over_random=last["r"] / r_random[b].item() if last["r"] and r_random[b] > 0 else None,
                   final_text=shots[b][-1]["text"] if shots[b] else None, trajectory=traj[b],
                   diagnostics=diags[b], snapshots=shots[b], seconds=seconds)
        yield WalkResult(rec, e0[b, :L].detach().clone(), state.e[b, :L].detach().clone())


@torch.no_grad()
def _random_ratio(state: WalkState, size: torch.Tensor) -> torch.Tensor:
    """r of a random Gaussian displacement with the walk's own L1 size, (B,): the baseline a walk must beat
    (r alone depends on the model's scale: a net that shrinks everything gives r > 1 in every direction)."""
    noise = state.draw()  # (B, T, d)
    scale = (size / l1(noise, state.mask).clamp_min(1e-300)).to(state.e.dtype)
    e = state.e0 + noise * scale[:, None, None]
    return ratio(state.e0, e, state.out0, state.output(e), state.mask)


@torch.no_grad()
def ratio_between(target, start: torch.Tensor, end: torch.Tensor) -> float:
    """r recomputed from saved embeddings: start, end (T, d) -> ||start - end||_1 / ||O(start) - O(end)||_1."""
    mask = torch.ones(1, start.shape[0], dtype=torch.long, device=start.device)
    e0, e = start[None], end[None]
    return ratio(e0, e, target(e0, mask), target(e, mask), mask).item()


def _depth(target) -> int | None:
    spec = getattr(target, "spec", None)
    return spec.depth if spec is not None else None

"""A probe of one layer: its state at a position -> the embedding of the token there, fitted in seconds.

The layer runs once over a small sample of the model's own inputs — random token sequences, every position of
them at once (as many as a budget of tokens x parameters run allows), random tokens alone, and the natural
sentences of the tuning prompts — and a ridge regression from the layer's output features (standardised) to the
input embedding is fitted per position kind (position 0, which sees nothing but its own token; every later
position). A position's candidates are the rows nearest the probe's prediction (rank.py moves it by secant steps
that start from the probe's own map). One pass over a few thousand positions replaces the per-prefix
calibration of calibration.py, so a model and layer start searching within seconds.

The fit is kept as the ridge's sufficient statistics, so it is refined as the search goes: every candidate the
search verifies is one more (output, embedding) pair from this very model and layer, and ``Teach`` adds each
batch's pairs to the probe it came from. The fit from the sample is kept in memory and on disk (``cache_dir()/
exact``, keyed by a fingerprint of the weights and the layer); what the searches add stays in this process.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ...models.layers import LayerModel
from ...models.load import cache_dir, weights_hash
from ...records.files import cached_tensors
from .guess import RIDGE, LinearMap, output_features
from .proposal import Proposal

LENGTH = 32  # tokens per random sequence of the sample, each read at every position
SINGLES = 1024  # random tokens alone at position 0, beside the sequences' first tokens
BUDGET = 1.6e11  # tokens x parameters of the blocks run (about 5 s of one CPU core: 1,536 tokens at 30 of SmolLM2's)
MOST = 96  # random sequences at most (a shallow layer's budget would allow many more)
NATURAL = Path(__file__).resolve().parents[2] / "data" / "tuning.txt"  # sentences never evaluated
STATS = ("mu", "sd", "n", "z", "zz", "x", "zx")


class RidgeStats:
    """A ridge regression from features (F,) to embeddings (d,) kept as sums, so pairs can be added at any time.

    Features are standardised by the mean and spread of the first sample (kept fixed after it), and the map is
    solved in float64 from the sums on first use after a change."""

    def __init__(self, stats: dict[str, torch.Tensor]):
        self.s = stats  # mu, sd: (F,); n: (); z: (F,); zz: (F, F); x: (d,); zx: (F, d)
        self._map: LinearMap | None = None

    @classmethod
    def fit(cls, F: torch.Tensor, X: torch.Tensor) -> "RidgeStats":
        """From pairs of features (n, F) and embeddings (n, d)."""
        Fd = F.double()
        mu, sd = Fd.mean(0), Fd.std(0)
        sd = sd.clamp_min(1e-6 * float(sd.max()) + 1e-12)  # a constant feature: no division by zero
        d, k = X.shape[1], F.shape[1]
        zero = dict(n=Fd.new_zeros(()), z=Fd.new_zeros(k), zz=Fd.new_zeros(k, k), x=Fd.new_zeros(d),
                    zx=Fd.new_zeros(k, d))
        stats = cls(dict(mu=mu, sd=sd, **zero))
        stats.add(F, X)
        return stats

    def add(self, F: torch.Tensor, X: torch.Tensor) -> None:
        """More pairs (n, F) and (n, d)."""
        s = self.s
        Z, Xd = (F.double() - s["mu"]) / s["sd"], X.double()
        s["n"] = s["n"] + len(Z)
        s["z"], s["x"] = s["z"] + Z.sum(0), s["x"] + Xd.sum(0)
        s["zz"], s["zx"] = s["zz"] + Z.T @ Z, s["zx"] + Z.T @ Xd
        self._map = None

    @property
    def n(self) -> int:
        return int(self.s["n"])

    def map(self, dtype: torch.dtype) -> LinearMap:
        """The ridge solution as features -> embedding, x = (f - mu) @ A + x_mu."""
        if self._map is None or self._map.A.dtype != dtype:
            s, n = self.s, self.s["n"]
            z_mu, x_mu = s["z"] / n, s["x"] / n
            gram = s["zz"] - n * torch.outer(z_mu, z_mu)  # centred
            gram = gram + RIDGE * n * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            A = torch.linalg.solve(gram, s["zx"] - n * torch.outer(z_mu, x_mu))  # (F, d), standardised units
            sd = s["sd"]
            self._map = LinearMap((A / sd[:, None]).to(dtype), (s["mu"] + sd * z_mu).to(dtype), x_mu.to(dtype))
        return self._map


class Probe:
    """The two fits of one model and layer: ``first`` (position 0) and ``later`` (every other position)."""

    def __init__(self, first: RidgeStats, later: RidgeStats, seconds: float, cached: bool):
        self.first, self.later, self.seconds, self.cached = first, later, seconds, cached

    def at(self, t: int) -> RidgeStats:
        return self.first if t == 0 else self.later


class Teach:
    """A proposal passed through unchanged, whose verified candidates are added to the probe's fit: the pairs
    (output features, embedding) of every candidate of every batch, the one that held the answer included."""

    def __init__(self, inner: Proposal, stats: RidgeStats):
        self.inner, self.stats = inner, stats

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        return self.inner.next(n, tried)

    def probes(self) -> torch.Tensor | None:
        return self.inner.probes()

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        self.settle(ids, x, f)
        self.inner.observe(ids, x, f)

    def settle(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        self.stats.add(f[: len(ids)], x[: len(ids)])  # the candidates; the probes are not tokens

    @property
    def gradient_steps(self) -> int:
        return getattr(self.inner, "gradient_steps", 0)


def sequences_for(target: LayerModel, length: int = LENGTH, singles: int = SINGLES) -> int:
    """Random sequences of the sample: what ``BUDGET`` leaves after the singles at this depth (a deeper layer
    costs more per token, so it gets fewer, and learns the rest as it searches), but at least enough for twice
    as many pairs as the model has dimensions (fewer leave the regression underdetermined) and at most ``MOST``."""
    params = sum(p.numel() for block in target.lm.blocks[: target.spec.depth] for p in block.parameters())
    tokens = int(BUDGET // max(1, params)) - singles
    least = -(-2 * target.lm.d_model // (length - 1))
    return max(least, min(MOST, tokens // length))


def probe(target: LayerModel, seed: int = 0, sequences: int | None = None, length: int = LENGTH,
          singles: int = SINGLES) -> Probe:
    """The probe of ``target``; memoised per model, layer, sample and seed, in memory and on disk."""
    lm = target.lm
    sequences = sequences or sequences_for(target, length, singles)
    name = f"probe-{weights_hash(lm)}-{target.name}-s{sequences}x{length}+{singles}-seed{seed}.safetensors"
    path = cache_dir() / "exact" / name

    def make() -> Probe:
        def build() -> dict:
            made = _fit(target, seed, sequences, length, singles)
            tensors = {f"{part}.{k}": v for part in ("first", "later") for k, v in getattr(made, part).s.items()}
            return dict(tensors, seconds=torch.tensor(made.seconds, dtype=torch.float64))
        saved, cached = cached_tensors(path, build)
        stats = [RidgeStats({k: saved[f"{part}.{k}"].to(lm.device) for k in STATS}) for part in ("first", "later")]
        return Probe(*stats, seconds=float(saved["seconds"]), cached=cached)
    return lm.memo(("exact-probe", target.name, sequences, length, singles, seed), make)


def natural_sequences(lm, length: int) -> list[list[int]]:
    """The tuning prompts as token ids, each cut to ``length`` (none when the file is missing)."""
    if not NATURAL.is_file():
        return []
    lines = [s.strip() for s in NATURAL.read_text(encoding="utf-8").splitlines()]
    return [ids[:length] for ids in (lm.encode(s) for s in lines if s and not s.startswith("#")) if len(ids) > 1]


@torch.no_grad()
def _fit(target: LayerModel, seed: int, sequences: int, length: int, singles: int) -> Probe:
    t0 = time.perf_counter()
    lm, feat = target.lm, output_features(target)
    W, V, dev = lm.embedding_matrix.detach(), lm.vocab_size, lm.device
    gen = torch.Generator().manual_seed(seed)
    T = max(2, min(length, lm.max_positions))
    ids = [torch.randint(0, V, (sequences, T), generator=gen)]  # (S, T)
    ids += [torch.tensor([s]) for s in natural_sequences(lm, T)]  # (1, T_i) each
    ids = [i.to(dev) for i in ids]
    outs = [feat(target(lm.embed(i))) for i in ids]  # (S, T_i, F) each
    alone = torch.randint(0, V, (singles, 1), generator=gen).to(dev)  # (n0, 1)
    F0 = torch.cat([feat(target(lm.embed(alone)))[:, 0]] + [o[:, 0] for o in outs])  # (n0 + S + ..., F)
    X0 = torch.cat([W[alone[:, 0]]] + [W[i[:, 0]] for i in ids])
    F1 = torch.cat([o[:, 1:].flatten(0, 1) for o in outs])  # (n1, F)
    X1 = torch.cat([W[i[:, 1:].flatten()] for i in ids])
    return Probe(RidgeStats.fit(F0, X0), RidgeStats.fit(F1, X1), time.perf_counter() - t0, cached=False)

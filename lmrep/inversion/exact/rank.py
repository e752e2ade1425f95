"""The rankings: which candidates to verify first at one position. ``FACTORIES`` builds each ranking that
``config.RANKINGS`` names (and says what it does), one factory a row.

A ranking is a factory ``Position -> Proposal`` (proposal.py): it sees what is known at the position (the target
row, the verified prefix and its cache, the layer's once-per-layer setup, the model's expectation) and returns the
order in which to try tokens. Adding one is one factory and its row below, and a row in ``config.RANKINGS``; the
CLI's choices, the config's check and the docs' list read that table.

What the rankings are made of, and where each is good (measured in docs/exact.md): the model's own next-token
expectation after the recovered prefix (frequent words, which a layer's geometry hides best at depth); a
continuous guess of the embedding from the layer's linear inverse, moved by secant steps (content words and
random ids at the first layers) and then by gradient steps (deep layers); every token's output predicted by the
layer's calibrated slope from the evaluated point nearest the target (random ids at depth), fused with that guess
by how each ranked the earlier positions (untrained layers lean on the guess); a probe of the layer (its state ->
the token there) fitted in seconds on the model's own states, which starts that guess without the calibration's
wait and learns from every candidate verified; tables of every token's output at the layer (random ids at any
depth, after minutes of setup per layer).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...models.architectures import cache_keyword
from ...models.layers import LayerModel
from .calibration import FIRST_GROUPS, GROUPS_PER_POSITION, Calibration, Fitter, calibrate, ready
from .guess import Descent, Guess, Predicted
from .kvcache import Prefix
from .probe import Probe, RidgeStats, Teach, probe
from .proposal import Fused, Proposal, Scores, Then
from .vocab_tables import TABLE_CONTEXTS, ContextTable, VocabTable, vocab_table

SECANT_BATCHES = 3  # batches whose misses move the guess by secant steps before gradient steps join in


class Setup:
    """What rankings build once per model and layer (calibration, probe, tables): built on first use, memoised on
    the model and on disk; ``seconds`` says what each took to build, ``paid`` how long this process waited for them."""

    def __init__(self, target: LayerModel, seed: int):
        self.target, self.seed, self.paid = target, seed, 0.0
        self.calibration_seconds: float | None = None
        self.fitter: Fitter | None = None  # a first run's calibration, while it is fitted as the search goes
        self.probe_seconds: float | None = None
        self.table_seconds: dict[int, float] = {}  # per number of contexts

    def _timed(self, make):
        t0 = time.perf_counter()
        built = make()
        self.paid += time.perf_counter() - t0
        return built

    def calibration(self) -> Calibration:
        """From memory or disk at once; on a first run, fitted as the search goes: a quarter of its pairs before the
        first position, more at each later one, the rest when the search ends (``finish``)."""
        def make() -> Calibration:
            if self.fitter is None and ready(self.target, seed=self.seed):
                return calibrate(self.target, seed=self.seed)
            if self.fitter is None:
                self.fitter = Fitter(self.target, seed=self.seed).grow(FIRST_GROUPS)
            else:
                self.fitter.grow(GROUPS_PER_POSITION)
            if self.fitter.done < self.fitter.groups:
                return self.fitter.calibration()
            fitter, self.fitter = self.fitter, None
            return calibrate(self.target, seed=self.seed, fitter=fitter)  # whole: kept in memory and on disk
        cal = self._timed(make)
        self.calibration_seconds = cal.seconds
        return cal

    def finish(self) -> None:
        """The rest of a calibration fitted as the search went, fitted and kept (when the search ends)."""
        if self.fitter is not None:
            fitter, self.fitter = self.fitter, None
            self.calibration_seconds = self._timed(lambda: calibrate(self.target, seed=self.seed,
                                                                     fitter=fitter)).seconds

    def probe(self) -> Probe:
        made = self._timed(lambda: probe(self.target, seed=self.seed))
        self.probe_seconds = made.seconds
        return made

    def vocab_table(self, contexts: int = 0) -> VocabTable:
        tab = self._timed(lambda: vocab_table(self.target, contexts, self.seed))
        self.table_seconds[contexts] = tab.seconds
        return tab


class Expectation:
    """The model's next-token logits after the tokens recovered so far. At the last layer they are free: the
    target's previous row through the final norm and the LM head is what the model itself computes there. Elsewhere
    one full-depth position per token, with its own key/value cache, run only when a ranking asks."""

    def __init__(self, target: LayerModel, outputs: torch.Tensor):
        self.lm, self.outputs = target.lm, outputs  # (T, D)
        spec = target.spec
        self.free = spec.depth == self.lm.n_layers and spec.head in ("none", "norm", "logits") and not spec.cached
        self.head = spec.head
        from transformers import DynamicCache  # here, not at import: reading the arguments needs no transformers
        self.cache, self.fed, self.logits = DynamicCache(), 0, None
        self.positions = 0  # full-depth positions run

    @torch.no_grad()
    def __call__(self, tokens: list[int]) -> torch.Tensor | None:
        """(V,) logits for the token after ``tokens``; None at position 0 (nothing to condition on)."""
        if not tokens:
            return None
        if self.free:
            h = self.outputs[len(tokens) - 1]  # (D,)
            return h if self.head == "logits" else self.lm.logits(h if self.head == "norm" else self.lm.final_norm(h))
        new = tokens[self.fed:]
        if new:
            ids = torch.tensor([new], device=self.lm.device)
            pos = torch.arange(self.fed, len(tokens), device=self.lm.device)[None]
            self.logits = self.lm.model(input_ids=ids, use_cache=True, position_ids=pos,
                                        **cache_keyword(self.lm.model, self.cache)).logits[0, -1]
            self.fed, self.positions = len(tokens), self.positions + len(new)
        return self.logits


@dataclass
class Position:
    """What a ranking may use at position t."""
    target: LayerModel
    t: int
    h: torch.Tensor  # (D,): the target row
    f: torch.Tensor  # (F,): its output features
    prefix: Prefix  # the verified tokens 0..t-1 and their cache
    tokens: list[int]  # those tokens
    W: torch.Tensor  # (V, d): embedding rows
    sqnorm: torch.Tensor  # (V,): their squared norms
    setup: Setup
    expectation: Expectation
    memory: dict = field(default_factory=dict)  # a ranking's notes across the positions of one search

    def start(self, cal: Calibration) -> torch.Tensor:
        """The calibrated first guess of the embedding, (d,)."""
        return (cal.first if self.t == 0 else cal.later)(self.f)

    def descent(self, start: torch.Tensor) -> Callable[[], Descent]:
        return lambda: Descent(self.prefix, self.W, self.sqnorm, self.h, start)


def with_expectation(pos: Position, geometric: Proposal, first: Proposal) -> Proposal:
    """``geometric`` first, then half of each batch from the model's expectation. The expectation joins from the
    first batch once the geometric first choice (``first``'s, before any step) has been right at most half the
    time on earlier positions."""
    tops = pos.memory.setdefault("geometric_top", [])
    hits = sum(int(a == b) for a, b in zip(tops, pos.tokens))
    tried = torch.zeros(len(pos.W), dtype=torch.bool, device=pos.W.device)
    tops.append(int(first.next(1, tried)[0]))

    def expected() -> Proposal | None:
        logits = pos.expectation(pos.tokens)  # (V,), or None at position 0
        return None if logits is None else Scores(logits)
    return Then(geometric, expected, after=0 if 2 * hits < pos.t else 1)


def guided(pos: Position) -> Proposal:
    """the model's expectation and, fused by how well each ranked earlier positions, every token's output predicted
    from the nearest point evaluated by the layer's calibrated slope and a calibrated guess moved by secant steps
    (position 0: the guess alone), then gradient steps (no table needed).
    """
    cal = pos.setup.calibration()
    start = pos.start(cal)
    secant = Guess(pos.W, pos.sqnorm, pos.f, start, cal.secant)
    if pos.t == 0:  # position 0 sees only its own token (and a trained model's is a sink): secant steps there
        geometric = secant
    else:  # each weighted by how well it ranked the tokens of earlier positions (untrained layers: secant)
        parts = [Predicted(pos.W, pos.f, start, cal.forward, cal.pred_sqnorm(pos.W)), secant]
        geometric = Fused(parts, _trust(pos, parts, "guided"))
    return with_expectation(pos, Then(geometric, pos.descent(start), after=SECANT_BATCHES), geometric)


def tabulated(pos: Position) -> Proposal:
    """every token's output at the layer after random prefixes (built once per layer, minutes, kept on disk),
    plus an offset for this prefix; the expectation and gradient steps join as in guided.
    """
    if pos.t == 0:  # position 0 sees nothing but its own token: its table is exact
        return ContextTable(pos.setup.vocab_table(0), pos.f)
    near = ContextTable(pos.setup.vocab_table(TABLE_CONTEXTS), pos.f)
    start = pos.start(pos.setup.calibration())
    return with_expectation(pos, Then(near, pos.descent(start), after=SECANT_BATCHES), near)


def _probe_guess(pos: Position) -> tuple[RidgeStats, Guess, torch.Tensor]:
    """The probe's fit for this position, the guess it starts (moved by secant steps from the probe's own map)
    and its start."""
    stats = pos.setup.probe().at(pos.t)
    fit = stats.map(pos.W.dtype)
    start = fit(pos.f)
    return stats, Guess(pos.W, pos.sqnorm, pos.f, start, fit.A), start


def probed(pos: Position) -> Proposal:
    """a probe of the layer (state -> token), fitted in seconds and refined by every candidate verified, moved by
    secant, then gradient steps; no calibration, no expectation.
    """
    stats, guess, start = _probe_guess(pos)
    return Teach(Then(guess, pos.descent(start), after=SECANT_BATCHES), stats)


def fused(pos: Position) -> Proposal:
    """the probe's guess and the model's expectation by the sum of their reciprocal ranks, each weighted by how
    often it ranked the token better on earlier positions; gradient steps join as in probe.
    """
    stats, guess, start = _probe_guess(pos)
    logits = pos.expectation(pos.tokens)  # (V,), or None at position 0
    if logits is None:
        return Teach(Then(guess, pos.descent(start), after=SECANT_BATCHES), stats)
    parts = [guess, Scores(logits)]
    first = Fused(parts, _trust(pos, parts, "fused"))
    return Teach(Then(first, pos.descent(start), after=SECANT_BATCHES), stats)


def _trust(pos: Position, parts: list, name: str) -> list[float]:
    """Weights of the parts of a fusion (``name``: which one, for the search's memory): each part's mean
    reciprocal rank of the accepted token over the earlier positions (1 / (1 + rank), with a prior of 1/2 for one
    position), each rank read from the part's scores as they stood when its position ended (after the moves of
    every batch that missed: the order that found the token, or would have)."""
    memory = pos.memory.setdefault(name, dict(earned=[0.5] * len(parts), last=None))
    if memory["last"] is not None:
        token = pos.tokens[-1]
        scores = [p.score() for p in memory["last"]]
        memory["earned"] = [e + 1 / (1 + int((s > s[token]).sum())) for e, s in zip(memory["earned"], scores)]
    memory["last"] = parts
    total = sum(memory["earned"])
    return [e / total for e in memory["earned"]]


def secant(pos: Position) -> Proposal:
    """the calibrated guess moved by secant steps alone (best at the first layers; strays at depth).
    """
    cal = pos.setup.calibration()
    return Guess(pos.W, pos.sqnorm, pos.f, pos.start(cal), cal.secant)


def vocab(pos: Position) -> Proposal:
    """brute force in vocabulary order, the baseline to beat.
    """
    return Scores(-torch.arange(len(pos.W), dtype=torch.float32, device=pos.W.device))


# config.RANKINGS' names -> the factory of each (tests/test_exact.py checks that the two tables name the same ones)
FACTORIES: dict[str, Callable[[Position], Proposal]] = {"guided": guided, "probe": probed, "fused": fused,
                                                         "table": tabulated, "secant": secant, "vocab": vocab}
PLAIN = "vocab"  # the cheapest order, for when every token is verified anyway (its order then changes nothing)

"""What one inversion run is: the method and its settings, each field with its help text and check."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..records.checks import When, at_least, between, check_fields, each, non_negative, one_of, option, positive
from ..records.health import DIVERGE_FACTOR
from ..errors import LmrepError
from ..objective.names import DECODERS, LOSSES, SCHEDULES
from .exact.config import ExactConfig
from .registry import method_names

INITS = ("text", "original", "mix")
OPTIMIZERS = ("adam", "sgd")
GRADIENT = When("method", ("gd", "nearest"))  # the options of the gradient methods (the exact search has none)


@dataclass
class InvertConfig(ExactConfig):
    """Every method's options: the gradient methods' below, the exact search's from ``ExactConfig``."""
    method: str = option("gd", "gd: the page's gradient descent; nearest: PEZ-style projection to the nearest "
                         "tokens; exact: left-to-right search with a certificate", one_of(method_names))
    steps: int = option(500, "optimisation steps N", at_least(1), when=GRADIENT)
    lr: float = option(0.01, "eta; falls linearly to eta/10 over the steps (the page's schedule)", positive,
                       when=GRADIENT)
    schedule: str = option("linear", "linear: eta falls to eta/10 over the steps (the page's); constant",
                           one_of(SCHEDULES), when=GRADIENT)
    optimizer: str = option("adam", "adam, or sgd: the page's plain gradient steps", one_of(OPTIMIZERS),
                            when=GRADIENT)
    init: str = option("text", "text: N(0.5, 1/20); original: N(0, 1) (the author's scripts); mix: "
                       "s*N(0.5, 1/20) + t*e (see --mix)", one_of(INITS), when=GRADIENT)
    mix: tuple[float, float] = option((0.001, 0.999), "(s, t) for --init mix", each(non_negative),
                                      metavar=("S", "T"), when=When("init", ("mix",)))
    loss: str = option("l1", "distance to the target output: l1 (the page's), l2, cosine", one_of(LOSSES),
                       when=GRADIENT)
    decoder: str = option("pinv", "embeddings -> tokens: pinv (eq. 3), l2 or cosine nearest row", one_of(DECODERS),
                          when=GRADIENT)
    topk: int = option(1, "also report the top-k tokens per position", at_least(1), when=GRADIENT)
    sigma: float = option(0.05, "eq. 4: the threshold m uses e' = e + N(0, sigma)", positive, when=GRADIENT)
    batch_size: int = option(8, "prompts optimised together (padded; each prompt's loss is its own)", at_least(1),
                             when=GRADIENT)
    diverge_factor: float = option(DIVERGE_FACTOR, "a run whose last loss is above this multiple of its first is "
                                   "labelled diverged and left out of every rate", between(1, 1e6), when=GRADIENT)
    snapshots: tuple[int, ...] = option((), "steps at which to decode, 0..N (default: a spread up to N)",
                                        each(at_least(0)), when=GRADIENT)

    def check(self) -> "InvertConfig":
        """Raise LmrepError on a value that cannot work; returns self. Run once, when the config is made."""
        check_fields(self)
        late = [s for s in self.snapshots if s > self.steps]
        if late and self.method in GRADIENT.values:
            raise LmrepError(f"snapshots must be steps 0..{self.steps} (the run has {self.steps} steps), "
                             f"got {late[0]}")
        return self

    def fits(self, vocab_size: int) -> "InvertConfig":
        """What only a model can tell: top-k no larger than its vocabulary. Returns self."""
        if self.topk > vocab_size:
            raise LmrepError(f"topk must be between 1 and the vocabulary size {vocab_size}, got {self.topk}")
        return self

    def snapshot_steps(self) -> list[int]:
        if self.snapshots:
            return sorted({s for s in self.snapshots if 0 <= s <= self.steps} | {self.steps})
        spread = [0, 10, 20, 40, 50, 60, 100, 200, 500, 1000, 2000, 5000, 10000]
        return sorted({s for s in spread if s < self.steps} | {self.steps})

    def to_dict(self) -> dict:
        return asdict(self)

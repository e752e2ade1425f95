"""The exact search's own options: what to verify first, how many at a time, and when to stop; and the table of
rankings (``RANKINGS``: each one's name and what it does; rank.py builds them). Torch-free, so that the command line
offers and checks them before torch loads.

``InvertConfig`` holds these fields too (it derives from ``ExactConfig``), so ``InvertConfig(method="exact",
ranking="table")`` and the flags built from it keep working; the search itself reads only an ``ExactConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...records.checks import When, at_least, check_fields, one_of, option, optional, positive, seed_value

# the rankings: which candidates to verify first at a position (rank.FACTORIES builds each, under the same name);
# --ranking's choices, the config's check and the help read this table
RANKINGS = {
    "guided": "the model's expectation and, fused by how well each ranked earlier positions, every token's output "
              "predicted from the nearest point evaluated by the layer's calibrated slope and a calibrated guess "
              "moved by secant steps (position 0: the guess alone), then gradient steps (no table needed)",
    "probe": "a probe of the layer (state -> token), fitted in seconds and refined by every candidate verified, "
             "moved by secant, then gradient steps; no calibration, no expectation",
    "fused": "the probe's guess and the model's expectation by the sum of their reciprocal ranks, each weighted by "
             "how often it ranked the token better on earlier positions; gradient steps join as in probe",
    "table": "every token's output at the layer after random prefixes (built once per layer, minutes, kept on "
             "disk), plus an offset for this prefix; the expectation and gradient steps join as in guided",
    "secant": "the calibrated guess moved by secant steps alone (best at the first layers; strays at depth)",
    "vocab": "brute force in vocabulary order, the baseline to beat",
}
DEFAULT = "guided"
SAME = "search"  # --first-token: position 0 uses --ranking's own rule
EXACT = "exact method (docs/exact.md)"
EXACT_ONLY = When("method", ("exact",))
CPU_BATCH, GPU_BATCH = 64, 1024  # default candidate batch: on a GPU a pass of a thousand rows costs about one of one
# what one pass's copies of the prefix cache may take (each candidate row gets its own keys and values of every
# block: rows x blocks x 2 x width x (t + 1) values), so that a long prompt at depth takes smaller batches
CPU_CACHE_BYTES, GPU_CACHE_BYTES = 2**30, 4 * 2**30


def _ranking_help() -> str:
    return "; ".join(f"{name}: {about}" for name, about in RANKINGS.items())


@dataclass
class ExactConfig:
    tolerance: float | None = option(None, "largest relative residual counted as a match (default: from dtype and "
                                     "depth)", optional(positive), group=EXACT, when=EXACT_ONLY)
    candidate_batch: int | None = option(None, f"most candidates verified in one forward pass (default: {CPU_BATCH} "
                                         f"on a CPU, {GPU_BATCH} on a GPU)", optional(at_least(1)), group=EXACT,
                                         when=EXACT_ONLY)
    max_candidates: int | None = option(None, "a cap on candidates verified at one position; a position that hits "
                                        "it is reported unverified (default: none, the whole vocabulary; for "
                                        "quantised or noisy states it bounds each ambiguity set, and a position "
                                        "where nothing within it fits goes on through the vocabulary)",
                                        optional(at_least(1)), group=EXACT, when=EXACT_ONLY)
    ranking: str = option(DEFAULT, "which candidates to verify first: " + _ranking_help(), one_of(lambda: RANKINGS),
                          group=EXACT, when=EXACT_ONLY)
    first_token: str = option(SAME, f"the ranking at position 0, which sees nothing but its own token ({SAME}: "
                              "--ranking's)", one_of(lambda: (SAME, *RANKINGS)), group=EXACT, when=EXACT_ONLY)
    seed: int = option(0, "noise for inits, thresholds and calibration", seed_value, cli=False)

    def __post_init__(self):
        self.check()  # a config is checked once, when it is made (a subclass's ``check`` covers its own fields)

    def check(self) -> "ExactConfig":
        """Raise LmrepError on a value that cannot work; returns self."""
        check_fields(self)
        return self

    def batch(self, device) -> int:
        """Candidates per forward pass at most: the user's, or one sized for the device (a torch.device or its
        name)."""
        return self.candidate_batch or (CPU_BATCH if str(device).split(":")[0] == "cpu" else GPU_BATCH)

    def cache_bytes(self, device) -> int:
        """What the candidate rows of one pass may take in copies of the prefix cache, sized for the device."""
        return CPU_CACHE_BYTES if str(device).split(":")[0] == "cpu" else GPU_CACHE_BYTES

    def cap(self, vocab_size: int) -> int:
        """Candidates verified at one position at most: the user's cap, or the whole vocabulary."""
        return min(self.max_candidates or vocab_size, vocab_size)

    def ranking_at(self, t: int) -> str:
        return self.ranking if t or self.first_token == SAME else self.first_token

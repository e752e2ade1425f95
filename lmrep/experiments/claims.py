"""Every claim of the page, declared once as data: which metric, which conditions are compared, the direction,
the effect size that counts, the step budget, the minimum n; ``verdicts.decide`` is the one rule that turns a
declaration and a run's items into holds / does not hold / not decided.

A condition is a selector: the item fields and the values they must have. ``kind`` says how the rule reads the
claim (see ``verdicts``): ``paired`` (a - b over the same prompt and seed), ``level`` (one condition's mean
against ``effect``, or inside ``band``), ``steps`` (censored steps to eq. 4's threshold: the ratio a/b against
``effect``), ``steps_level`` (one condition's median steps against ``effect``) and ``existence`` (at least one
healthy item passes every test).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

MIN_N = 20  # no verdict rests on fewer items (or pairs) than this


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of the page, as data."""

    key: str  # a short name, unique
    experiment: str  # the experiment whose items decide it
    page: str  # what the page says (or "(not on the page) ..." for lmrep's own questions)
    kind: str  # paired, level, steps, steps_level, existence
    metric: str  # an item field, or a derived metric in METRICS
    a: dict  # the condition measured: item field -> value
    b: dict = field(default_factory=dict)  # the condition it is compared with (paired, steps)
    direction: str = "greater"  # greater, less, equal (+-effect; a ratio band for steps), within (band)
    effect: float = 0.0  # the effect that counts: a difference (paired), a level, a ratio (steps), steps
    band: tuple[float, float] = (0.0, 0.0)  # direction "within": the interval the mean must lie in
    budget: int = 0  # steps the claim is about: runs with fewer cannot decide it (0: any)
    min_n: int = MIN_N
    pair: tuple[str, ...] = ("prompt", "seed")  # paired: the item fields that make two items a pair
    tests: tuple[tuple[str, str, object], ...] = ()  # existence: (metric or field, op, value), all must pass


def _top(k: int, decoder: str = "pinv"):
    def top(r: dict) -> float | None:
        ranks = (r.get("true_rank") or {}).get(decoder)
        return None if not ranks else sum(x <= k for x in ranks) / len(ranks)
    return top


def _log10(key: str):
    def log(r: dict) -> float | None:
        v = r.get(key)
        return math.log10(v) if v is not None and v > 0 else None
    return log


def _ppl_gap(r: dict) -> float | None:
    if r.get("log10_ppl") is None or r.get("log10_ppl_prompt") is None:
        return None
    return r["log10_ppl"] - r["log10_ppl_prompt"]


def _reached(key: str):
    return lambda r: float(r.get(key) is not None)


def _at_change(name: str):
    """A metric read only where the walk reached another token (``first_change``); None elsewhere."""
    inner = _log10(name)

    def at(r: dict) -> float | None:
        return None if r.get("first_change") is None else inner(r)
    return at


def _orthogonality(r: dict) -> float | None:
    d = r.get("diagnostics") or []
    return max((x["orthogonality"] for x in d if "orthogonality" in x), default=None)


METRICS = {"top1_pinv": _top(1), "top2_pinv": _top(2), "top5_pinv": _top(5), "log10_r": _log10("r"),
           "log10_r_over_random": _log10("r_over_random"),
           "log10_r_over_random_at_change": _at_change("r_over_random"), "log10_front_back": _log10("front_back"),
           "ppl_gap": _ppl_gap, "orthogonality": _orthogonality,
           "reached_m": _reached("steps_to_m"), "reached_m_strict": _reached("steps_to_m_strict")}
OPS = {"==": operator.eq, "<": operator.lt, ">": operator.gt, ">=": operator.ge, "<=": operator.le}

GPT2U, SMOL = "gpt2 untrained", "smollm2-135m"
PAGE_N = 1000  # the page's (the scripts') N for a trained model
_DEPTH = [
    ClaimSpec("depth-untrained", "depth", "Deeper layers keep less of the input (untrained GPT-2, gradient descent "
              "+ pinv: after 1 vs after 12 blocks)", "paired", "token_accuracy",
              dict(label=GPT2U, method="gd", depth=1), dict(label=GPT2U, method="gd", depth=12), effect=0.1),
    ClaimSpec("depth-trained", "depth", "Deeper layers keep less of the input (trained model, gradient descent + "
              "pinv: after 1 vs after 30 blocks)", "paired", "token_accuracy",
              dict(label=SMOL, method="gd", depth=1), dict(label=SMOL, method="gd", depth=30), effect=0.1),
    ClaimSpec("training-first-block", "depth", "Training makes the first block harder to invert by gradient "
              "descent (after 1 block: untrained vs trained)", "paired", "token_accuracy",
              dict(label=GPT2U, method="gd", depth=1), dict(label=SMOL, method="gd", depth=1), effect=0.1),
    *[ClaimSpec(f"{method}-everywhere-{'trained' if label == SMOL else 'untrained'}", "depth",
                f"(not on the page) The {method} method recovers every token at every layer tried ({label}; counted "
                "as: mean token accuracy above 0.99)", "level", "token_accuracy", dict(label=label, method=method),
                effect=0.99) for method in ("exact", "nearest") for label in (SMOL, GPT2U)],
]
_RECONSTRUCTION = [
    ClaimSpec("fcnet-exact", "sentence-reconstruction", "The invertible FCNet generates the prompt exactly from "
              "noise within a few dozen steps (exact at n = 60), decoded with pinv (eq. 3)", "level", "exact_match", dict(label="FCNet (invertible)"), effect=0.5),
    ClaimSpec("fcnet-noninv-not-exact", "sentence-reconstruction", "Its non-invertible variant no longer "
              "typically gives exact copies", "level", "exact_match", dict(label="FCNet, last layer T*d"),
              direction="less", effect=0.5),
    ClaimSpec("fcnet-noninv-next-token", "sentence-reconstruction", "...yet its reconstructions give the same "
              "next token under a trained model", "level", "next_token_match", dict(label="FCNet, last layer T*d"),
              effect=0.5),
    ClaimSpec("untrained-blocks-head", "sentence-reconstruction", "With more untrained GPT-2 blocks before the "
              "LM head the input is harder to recover (1 vs 12 blocks + head)", "paired", "token_accuracy",
              dict(label="gpt2 untrained, 1 block + head"), dict(label="gpt2 untrained, 12 blocks + head"),
              effect=0.1),
]
_THRESHOLD = [
    ClaimSpec("untrained-baseline", "threshold", "Untrained GPT-2, one block + LM head, meets eq. 4 within ~100 "
              "steps (counted as: median steps <= 200)", "steps_level", "steps_to_m", dict(label="untrained, head"),
              direction="less", effect=200),
    ClaimSpec("trained-100x", "threshold", "A trained model (one block + LM head) needs on the order of 100x the "
              "steps of the untrained one (counted as: >= 30x)", "steps", "steps_to_m",
              dict(label="trained, head"), dict(label="untrained, head"), effect=30),
    ClaimSpec("head-100x", "threshold", "Removing the LM head cuts the steps by a factor > 100 (one trained "
              "block)", "steps", "steps_to_m", dict(label="trained, head"), dict(label="trained, no head"),
              effect=100),
    ClaimSpec("float64-same", "threshold", "float64 instead of float32 changes nothing (steps within 25%)",
              "steps", "steps_to_m", dict(label="trained, head, float64"), dict(label="trained, head"),
              direction="equal", effect=0.25),
    ClaimSpec("mix-close-strict", "threshold", "With e0 = 0.001 noise + 0.999 e, eq. 4 holds at N = 1000 even "
              "for e' very close to e (sigma 1/25)", "level", "reached_m_strict",
              dict(label="trained, head, mix s=0.001 t=0.999"), effect=0.5, budget=PAGE_N),
    ClaimSpec("mix-even-reaches", "threshold", "(s, t) = (1, 1) optimises nearly as well (it reaches eq. 4 "
              "within N = 1000) ...", "level", "reached_m", dict(label="trained, head, mix s=1 t=1"),
              effect=0.5, budget=PAGE_N),
    ClaimSpec("mix-even-slower", "threshold", "... only with more steps than (0.001, 0.999)", "steps",
              "steps_to_m", dict(label="trained, head, mix s=1 t=1"),
              dict(label="trained, head, mix s=0.001 t=0.999"), effect=1.0),
    ClaimSpec("strict-infeasible", "threshold", "For a trained model eq. 4 stays practically infeasible with "
              "the stricter e' (sigma 1/25) within N = 1000", "level", "reached_m_strict",
              dict(label="trained, head"), direction="less", effect=0.5, budget=PAGE_N),
]
_NONSENSE = [
    ClaimSpec("gibberish-exists", "nonsense", "Inputs far from the prompt (gibberish) that give the same next "
              "token exist (gradient descent + pinv finds one: next token kept, < half the tokens in place)",
              "existence", "kept", dict(method="gd+pinv"), tests=(("kept", "==", True), ("overlap", "<", 0.5))),
    ClaimSpec("gibberish-swap", "nonsense", "(not on the page) A discrete search finds such inputs",
              "existence", "kept", dict(method="swap search"), tests=(("kept", "==", True), ("overlap", "<", 0.5))),
    ClaimSpec("gibberish-unlikely", "nonsense", "The model cannot tell English from gibberish: inputs far less "
              "likely than the prompt (>= 10x perplexity) still predict the same next token", "existence",
              "ppl_gap", {}, tests=(("kept", "==", True), ("ppl_gap", ">=", 1.0))),
]
_TOKENS = [
    ClaimSpec("fcnet-top1", "token-mapping", "Invertible FCNet: the top-1 string is the prompt (true token top-1, "
              "pinv)", "level", "top1_pinv", dict(label="FCNet (invertible)"), effect=0.8),
    ClaimSpec("mlp-top2", "token-mapping", "Non-invertible MLP [d, 4d, d]: the top one or two strings are "
              "recognisable (true token within the top 2)", "level", "top2_pinv",
              dict(label="MLP d-4d-d (non-invertible)"), effect=0.5),
    ClaimSpec("block-top5", "token-mapping", "One trained block (no head) gives only gibberish, even in the top 5",
              "level", "top5_pinv", dict(label="one trained block"), direction="less", effect=0.2),
]
_WALKS = [
    *[ClaimSpec(f"r-{inner}-{s}", "walks", f"12-block transformer ({s}), clamped walk, {inner} inner step(s): "
                f"r ~ {level:g} (counted as: within [{level / 2:g}, {level * 2:g}])", "level", "r",
                dict(kind="clamped", subject=s, inner_steps=inner), direction="within",
                band=(level / 2, level * 2))
      for inner, level in ((1, 10.0), (50, 100.0)) for s in ("gpt2-untrained", "smollm2")],
    *[ClaimSpec(f"r-grows-{s}", "walks", f"r grows with the inner steps per round, 1 -> 50 ({s}; log10 r)",
                "paired", "log10_r", dict(kind="clamped", subject=s, inner_steps=50),
                dict(kind="clamped", subject=s, inner_steps=1), effect=0.1) for s in ("gpt2-untrained", "smollm2")],
    *[ClaimSpec(f"r-random-{s}", "walks", f"(not on the page) The clamped walk (10 inner steps) moves further "
                f"per output change than a random move of the same size ({s}; log10 r / r_random)", "level",
                "log10_r_over_random", dict(kind="clamped", subject=s, inner_steps=10), effect=0.0)
      for s in ("gpt2-untrained", "smollm2")],
    *[ClaimSpec(f"walk-change-{s}", "walks", f"A clamped walk reaches different input tokens (\"choose N, eta, "
                f"epsilon such that e_N corresponds to different input tokens\"; {s}, noise 1x the embeddings' RMS "
                "per round, 10 inner steps)", "existence", "first_change", dict(kind="change", subject=s),
                tests=(("first_change", ">=", 1),)) for s in ("gpt2-untrained", "smollm2")],
    *[ClaimSpec(f"change-r-random-{s}", "walks", f"The walk reaches those tokens while the output stays put: at "
                f"the round a token changes, r is well above a random move's of the same size ({s}; counted as: "
                "r / r_random >= 2, in log10)", "level", "log10_r_over_random_at_change",
                dict(kind="change", subject=s), effect=math.log10(2.0))
      for s in ("gpt2-untrained", "smollm2")],
    ClaimSpec("mlp-r3", "walks", "An MLP rarely gives r > 3 (clamped walk, 10 inner steps)", "level", "r",
              dict(kind="clamped", subject="mlp-mimic", inner_steps=10), direction="less", effect=3.0),
    ClaimSpec("perp-mlp", "walks", "Tangent walk: gradient @ perp ~ 1e-8 for the MLP mimic (counted as: < 1e-6)",
              "level", "orthogonality", dict(kind="compare", subject="mlp-mimic", method="tangent"),
              direction="less", effect=1e-6),
    ClaimSpec("perp-transformer", "walks", "Tangent walk: gradient @ perp ~ 1e-2 for a transformer (GPT-2 "
              "untrained; counted as: within [1e-3, 1e-1])", "level", "orthogonality",
              dict(kind="compare", subject="gpt2-untrained", method="tangent"), direction="within", band=(1e-3, 0.1)),
    ClaimSpec("tangent-mlp-r1", "walks", "Tangent walk on the MLP mimic: the input moves only slightly more than "
              "the output (counted as: r within [0.5, 2])", "level", "r",
              dict(kind="compare", subject="mlp-mimic", method="tangent"), direction="within", band=(0.5, 2.0)),
    *[ClaimSpec(f"jacobian-{s}", "walks", f"(not on the page) lmrep's Jacobian walk moves the input further than "
                f"the tangent walk per output change ({s}; log10 r)", "paired", "log10_r",
                dict(kind="compare", subject=s, method="jacobian"), dict(kind="compare", subject=s, method="tangent"),
                effect=0.1) for s in ("gpt2-untrained", "smollm2")],
]
_IMAGE = ("image", "seed")  # reconstructions of one image from one starting noise are a pair
_VISION = [
    *[ClaimSpec(f"image-gpt2-below-{vit}-{m}", "vision-reconstruction", f"GPT-2 keeps a less accurate image than "
                f"ViT-Large in the early layers (here: untrained GPT-2 behind the untrained ViT-B/16 stem vs {about}, "
                f"after 1 block; {m.upper()}, counted as: {vit} higher by >= {effect:g})", "paired", m,
                dict(subject=vit, depth=1), dict(subject="gpt2", depth=1), effect=effect, pair=_IMAGE)
      for vit, about in (("vit-l16", "untrained ViT-L/16"), ("dinov2-s14", "trained DINOv2 ViT-S/14, the stand-in "
                                                                       "for a trained ViT"))
      for m, effect in (("psnr", 1.0), ("ssim", 0.05))],
    ClaimSpec("image-first-tokens-worst", "vision-reconstruction", "The first few dozen tokens (the top rows of "
              "patches) are poorly represented (GPT-2 behind the ViT-B/16 stem, after n/2 blocks; log10 of the first "
              "quarter of patches' squared error over the last quarter's, counted as: >= 0.1)", "level",
              "log10_front_back", dict(subject="gpt2", fraction=0.5), effect=0.1),
    ClaimSpec("features-broader-deeper", "vision-features", "Deeper layers focus more broadly (the trained LM behind "
              "a ViT-B/16-geometry stem, one neuron over all patches: breadth of the per-patch change after the "
              "last block vs after 1 block, counted as: >= 0.05 higher)", "paired", "breadth", dict(fraction=1.0),
              dict(depth=1), effect=0.05, pair=("seed", "panel")),
]
CLAIMS = (*_DEPTH, *_RECONSTRUCTION, *_THRESHOLD, *_NONSENSE, *_TOKENS, *_WALKS, *_VISION)

"""The leakage audit: how much of a prompt the states a deployed system holds give back, and how surely.

Per model x layer x source (the hidden state after the layer's block, that block's keys, its values) x exposure
(float32, bfloat16, fp8 e4m3, int8, int4, int2 with zero points as KIVI stores caches, Gaussian noise on a grid of
sigmas, and the defences: a KV-Cloak-style obfuscation read by attackers who do not know it, know it but not its
secret, know its secret, and noise read as if exact), the exact method inverts the states as an attacker would hold
them (``inversion.exposure.observe``: captured, quantised, written to a states file and read back, the shipped path)
and tests every candidate against the exposure's bound, so each position has an ambiguity set. Items: token
recovery, the share of positions certified (a set of one token), of positions where some token fits, the mean set
size, whether the true token was left out of a set where the recovered prefix was right (it never should be),
seconds per token; over English prompts and random token ids. The report (leakage_report.py) says where each layer
stops leaking the prompt exactly.

A position's set is over the ``cut`` candidates the ranking puts first (the whole vocabulary when it is smaller):
checking all of |V| costs |V| / 512 forward passes per position, so the profiles bound it and the report says so.
A position where nothing inside the cut fits is searched through the rest of the vocabulary (search.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..engine import Plan, Task, item_id
from ..inversion import InvertConfig, invert_outputs
from ..inversion.exact.config import DEFAULT as DEFAULT_RANKING
from ..inversion.exact.rank import PLAIN
from ..inversion.exposure import Exposure, observe
from ..models.layers import layer_model
from .config import ReproduceConfig
from . import leakage_report
from .pool import ModelPool

NAME = "leakage"
ABOUT = "token recovery, certified rate and ambiguity sets from hidden states, keys and values, per precision, " \
        "noise and defence"
TITLE = "Leakage audit: what stored, quantised, noisy or obfuscated states give back"
LAYERS = True  # honours ReproduceConfig.layers
EXTRA_MODELS = True  # --also audits more models the same way
SOURCES = {"hidden": "blocks.{i}.hook_resid_post", "k": "blocks.{i}.attn.hook_k", "v": "blocks.{i}.attn.hook_v"}
DEFENDED = ("k", "v")  # the sources the defences are evaluated on: what a key/value cache stores
GROUP = "channel"  # the quantisers' scale: one per channel
SECRET = 20250813  # the obfuscation's secret (the attacker who guesses uses another)


@dataclass(frozen=True)
class Profile:
    """What a run covers besides its models, layers and prompts."""

    random: int  # sequences of random token ids, beside the English prompts
    random_length: int  # tokens in each
    noise: tuple[float, ...]  # sigmas, times each position's RMS
    cut: int  # candidates verified per position at most (the ambiguity sets are over these)


QUICK = Profile(random=1, random_length=6, noise=(0.1, 1.0), cut=512)
FULL = Profile(random=10, random_length=12, noise=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0), cut=2048)


def exposures(profile: Profile) -> list[tuple[str, Exposure]]:
    """(group, exposure) in the report's order: the precision ladder (most bits first), the noise grid (least
    first), then the defences."""
    top = max(profile.noise)
    return [("precision", Exposure("fp32")), ("precision", Exposure("bf16", dtype="bfloat16")),
            ("precision", Exposure("fp8_e4m3", quant="fp8_e4m3")), ("precision", Exposure("int8", quant="int8")),
            ("precision", Exposure("int4", quant="int4")),
            ("precision", Exposure("int2, zero point", quant="int2", zero=True)),
            *[("noise", Exposure(f"noise {s:g}", noise=s)) for s in sorted(profile.noise)],
            ("defence", Exposure("cloak, attacker unaware", cloak=True, attacker="unaware")),
            ("defence", Exposure("cloak, secret unknown", cloak=True, attacker="guess")),
            ("defence", Exposure("cloak, secret known", cloak=True, attacker="secret")),
            ("defence", Exposure(f"noise {top:g}, attacker unaware", noise=top, attacker="unaware"))]


def layers_for(n_layers: int, cfg: ReproduceConfig) -> list[int]:
    """The layers asked for (those the model has, at least 1: keys and values need a block), else the quick
    profile's first block, or the first, middle and last."""
    if cfg.layers:
        return [k for k in cfg.layers if 1 <= k <= n_layers]
    return [1] if cfg.quick else sorted({1, n_layers // 2, n_layers})


@dataclass(frozen=True)
class Condition:
    """One task's condition, as data (it travels to workers)."""

    model: str
    layer: int  # blocks run: the hidden state after block layer - 1, and that block's keys and values
    source: str  # a key of SOURCES
    group: str  # precision, noise or defence
    order: int  # the exposure's place in the report
    exposure: Exposure
    cut: int

    @property
    def layer_name(self) -> str:
        return SOURCES[self.source].format(i=self.layer - 1)


def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: a task per model x layer x source x exposure (the defences on keys and values), over every prompt
    (the quick profile: the first) and random sequence."""
    profile = QUICK if cfg.quick else FULL
    prompts = cfg.prompts[:1] if cfg.quick else cfg.prompts
    units = [("text", p) for p in prompts] + [("random", i) for i in range(profile.random)]
    tasks = []
    for model in dict.fromkeys((cfg.model, *cfg.extra_models)):
        for layer in layers_for(pool.n_layers(model), cfg):
            for source in SOURCES:
                for order, (group, exp) in enumerate(exposures(profile)):
                    if group == "defence" and source not in DEFENDED:
                        continue
                    cond = Condition(model, layer, source, group, order, exp, profile.cut)
                    keys = tuple(item_id(model, f"layer {layer}", source, exp.name, _label(u)) for u in units)
                    tasks.append(Task(solve_leak, (cond, profile.random_length), keys, tuple(units), affinity=model))
    yield tasks


def _label(unit: tuple) -> str:
    return unit[1] if unit[0] == "text" else f"random ids #{unit[1]}"


def unit_ids(lm, unit: tuple, length: int) -> list[int]:
    """A prompt's token ids, or random sequence i: ``length`` ids drawn uniformly from the vocabulary under seed i."""
    if unit[0] == "text":
        return lm.encode(unit[1])
    g = torch.Generator().manual_seed(int(unit[1]))
    return torch.randint(0, lm.vocab_size, (length,), generator=g).tolist()


def solve_leak(pool: ModelPool, units: list[tuple], cond: Condition, length: int):
    """Every unit's states exposed as the condition says, inverted by the exact method: one item each."""
    lm = pool.model(cond.model)
    target = layer_model(lm, cond.layer_name)
    cut = min(cond.cut, lm.vocab_size)
    # every candidate is verified when the cut is the vocabulary, so the order does not matter: take the cheapest
    cfg = InvertConfig(method="exact", max_candidates=cut, ranking=PLAIN if cut == lm.vocab_size else DEFAULT_RANKING)
    for unit in units:
        ids = unit_ids(lm, unit, length)
        obs = observe(target, ids, cond.exposure, GROUP, SECRET)
        rec = next(invert_outputs(target, [obs], cfg))
        yield dict(model=lm.name, trained=lm.trained, layer=cond.layer, source=cond.source,
                   layer_name=target.name, condition=cond.exposure.name, group=cond.group, order=cond.order,
                   attacker=cond.exposure.attacker, bits=cond.exposure.bits, noise=cond.exposure.noise,
                   kind=unit[0], prompt=_label(unit), seed=0, text=lm.decode(ids), candidates_cut=cut,
                   vocab_size=lm.vocab_size, ranking=cfg.ranking, degradation=rec.get("degradation", ""),
                   **scores(ids, rec))


def scores(ids: list[int], rec: dict) -> dict:
    """What an item measures, from the exact method's record and the true ids."""
    got, cert, T = rec["recovered_ids"], rec["certificate"], len(ids)
    right_prefix = [got[:t] == ids[:t] for t in range(T)]
    sizes = rec["ambiguity_sizes"]
    fitting = [n for n in sizes if n]
    return dict(target_ids=ids, recovered_ids=got, n_tokens=T,
                recovery=sum(a == b for a, b in zip(ids, got)) / T,
                certified=rec["certified_positions"] / T, fits=len(fitting) / T,
                mean_set=sum(fitting) / len(fitting) if fitting else None, ambiguity_sizes=sizes,
                checked=sum(right_prefix),
                missed=sum(ok and truth not in c["ambiguity"] for ok, truth, c in zip(right_prefix, ids, cert)),
                seconds=rec["seconds"], seconds_per_token=rec["seconds"] / T)


# the experiment's report, built from its items alone (leakage_report.py)
claims, draw, header = leakage_report.claims, leakage_report.draw, leakage_report.header
markdown, summarize = leakage_report.markdown, leakage_report.summarize

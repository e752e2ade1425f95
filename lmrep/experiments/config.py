"""What one reproduction run is: the experiment, its profile (quick or full), the setting, prompts and seeds.

Where the page's text and the author's original scripts disagree, a *setting* picks one side by name:

    text       e0 ~ N(0.5, 1/20); plain gradient steps on sum |O(e_n) - O(e)| with eta falling linearly to eta/10;
               eta = 0.001 and N = 2000 (the only values the text gives, for 12 blocks + LM head);
               "with the LM head" means final norm + head
    original   e0 ~ N(0, 1); plain steps on 0.1 * sum |...| with lr 2 -> 0.2 (the same steps as lr 0.2 -> 0.02 on
               the plain sum); N = 1000 for trained models, 500 for untrained; the LM head WITHOUT the final norm
    adam       neither: lmrep's own default (Adam, lr 0.01 -> 0.001, e0 ~ N(0.5, 1/20), N = 500, final norm + head),
               to see which of the page's conclusions survive a better optimiser
    tuned      original, with the optimiser, lr and schedule tuned per condition the way the page says (``tuning``)

Quick profiles cut the steps (``Setting.steps``), prompts and conditions so that every experiment finishes on two
CPU cores in a few minutes; full profiles use the setting's own step counts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..records.checks import read_lines
from ..inversion.config import InvertConfig
from ..models.names import DEFAULT_MODEL
from ..records.checks import at_least, boolean, check_fields, each, one_of, option
from ..records.inputs import device_problem

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "data" / "prompts.txt"
EVAL_FILE = PROMPTS_FILE.with_name("eval.txt")  # the evaluation set: held out from every tuning
HELD_OUT = ("leakage",)  # experiments whose full profile runs the evaluation set (they tune nothing on prompts)
PAGE_PROMPT = "This is a prompt sentence."  # the page's running example
SKY_PROMPT = "The sky is blue."


BATCH = 32  # prompts optimised together: a condition's prompts are one batch (the batched path is 3-6x faster)


@dataclass(frozen=True)
class Setting:
    """One side of the page/script disagreements: init, optimiser, step size, N and what "head" means."""

    name: str
    init: str  # InvertConfig.init
    optimizer: str  # InvertConfig.optimizer
    lr: float  # eta: the step size on the plain L1 sum (Adam's lr for the adam setting)
    steps_trained: int  # N for a trained model
    steps_untrained: int  # N for an untrained model or a toy net
    head: str  # the layers.HEADS value that "with the LM head" means
    about: str
    tuned: bool = False  # optimiser, lr and schedule chosen per condition on the tuning prompts (``tuning``)

    def steps(self, trained: bool) -> int:
        """N for a trained or an untrained model (the full profile; quick profiles set their own)."""
        return self.steps_trained if trained else self.steps_untrained

    def invert_config(self, steps: int, seed: int, **kw) -> InvertConfig:
        """The gradient-descent configuration this setting stands for; ``kw`` overrides or adds fields. The
        prompts of a condition are optimised together, in one batch of up to ``BATCH``."""
        args = dict(method="gd", steps=steps, lr=self.lr, optimizer=self.optimizer, init=self.init, loss="l1",
                    seed=seed, batch_size=BATCH)
        return InvertConfig(**{**args, **kw})


SETTINGS = {
    "text": Setting("text", init="text", optimizer="sgd", lr=0.001, steps_trained=2000, steps_untrained=2000,
                    head="logits", about="the page's text: e0 ~ N(0.5, 1/20), plain steps, eta 0.001 -> 0.0001, "
                                         "N = 2000, LM head after the final norm"),
    "original": Setting("original", init="original", optimizer="sgd", lr=0.2, steps_trained=1000,
                        steps_untrained=500, head="logits_nonorm",
                        about="the author's scripts: e0 ~ N(0, 1), plain steps on 0.1 * L1 with lr 2 -> 0.2, "
                              "N = 1000 trained / 500 untrained, LM head without the final norm"),
    "adam": Setting("adam", init="text", optimizer="adam", lr=0.01, steps_trained=500, steps_untrained=500,
                    head="logits", about="not the page's: Adam, lr 0.01 -> 0.001, e0 ~ N(0.5, 1/20), N = 500, "
                                         "LM head after the final norm"),
}
SETTINGS["tuned"] = Setting("tuned", init="original", optimizer="sgd", lr=0.2, steps_trained=1000,
                            steps_untrained=500, head="logits_nonorm", tuned=True,
                            about="the author's scripts (e0 ~ N(0, 1), 0.1 * L1, N = 1000 trained / 500 untrained, "
                                  "LM head without the final norm), but the optimiser, lr and schedule tuned per "
                                  "condition on the tuning prompts: the lowest median best loss of a small grid "
                                  "that includes the scripts' plain steps")
DEFAULT_SETTING = "original"


def _text(v) -> str | None:
    return None if isinstance(v, str) and v.strip() else "non-empty text"


QUICK_SEEDS, FULL_SEEDS = 1, 3  # seeds per condition when a run gives none (reporting.profile_label reads them)


@dataclass
class ReproduceConfig:
    """One run of one experiment; its dict (after ``resolved``) names and hashes the run folder. Every field
    carries its type, range, default and help: the command line, a sweep spec and Python check it the same way,
    once, when the config is made."""

    experiment: str = option("", "an experiment (see lmrep reproduce --list)", cli=False)
    quick: bool = option(False, "the small profile (a few minutes on 2 CPU cores; default: the full one)", boolean)
    setting: str = option(DEFAULT_SETTING, "follow the page's text or the author's original scripts where they "
                          "disagree", one_of(SETTINGS))
    prompts: tuple[str, ...] = option((), "prompts (empty: the profile's own)", each(_text), cli=False)
    seeds: int = option(0, "seeds per condition: 0, 1, ...; 0: the profile's (3; --quick 1)", at_least(0, 1000))
    device: str = option("cpu", "cpu, cuda, cuda:N or auto", device_problem)
    model: str = option(DEFAULT_MODEL, "the trained model (stands in for trained GPT-2)")
    extra_models: tuple[str, ...] = option((), "more trained models to run the same way, for the experiments that "
                                           "take them (sentence-reconstruction; e.g. gpt2) (default: none)",
                                           each(_text), flag="also", metavar="MODEL")
    steps: int = option(0, "N for every gradient-descent run; 0: the profile's (the setting's N; --quick: 60-120)",
                        at_least(0, 10 ** 6))
    layers: tuple[int, ...] = option((), "depth: the layers to invert, as block numbers (default: every one; "
                                     "--quick: 1 2)", each(at_least(0)), metavar="LAYER")

    def __post_init__(self):
        check_fields(self)

    def resolved(self) -> "ReproduceConfig":
        """Fill the profile's defaults; the result is what the run folder records."""
        seeds = self.seeds or (QUICK_SEEDS if self.quick else FULL_SEEDS)
        prompts = tuple(self.prompts) or default_prompts(self.quick, self.experiment)
        return ReproduceConfig(self.experiment, self.quick, self.setting, prompts, seeds, self.device, self.model,
                               tuple(self.extra_models), self.steps, tuple(sorted(set(self.layers))))

    def steps_for(self, trained: bool, quick_steps: int) -> int:
        """N for one gradient-descent run: ``steps`` if given, else the quick profile's or the setting's N."""
        return self.steps or (quick_steps if self.quick else self.get_setting().steps(trained))

    def get_setting(self) -> Setting:
        """The Setting this config names."""
        return SETTINGS[self.setting]

    def to_dict(self) -> dict:
        """JSON-ready fields, as written to config.json."""
        return asdict(self)


def default_prompts(quick: bool, experiment: str = "") -> tuple[str, ...]:
    """The page's examples first, then the shipped prompt list (>= 20 prompts for the full profile); the
    evaluation set for the experiments of HELD_OUT."""
    if quick:
        return (PAGE_PROMPT, SKY_PROMPT)
    if experiment in HELD_OUT:
        return tuple(read_prompt_file(EVAL_FILE))
    return tuple(dict.fromkeys([PAGE_PROMPT, SKY_PROMPT, *read_prompt_file(PROMPTS_FILE)]))


def read_prompt_file(path: Path) -> list[str]:
    """One prompt per line; blank lines and #-comments skipped."""
    return read_lines(path, "prompt list")

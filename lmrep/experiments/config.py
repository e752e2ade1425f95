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

from ..errors import LmrepError
from ..inversion import InvertConfig
from ..models.load import DEFAULT_MODEL

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "data" / "prompts.txt"
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


@dataclass
class ReproduceConfig:
    """One run of one experiment; its dict (after ``resolved``) names and hashes the run folder."""

    experiment: str
    quick: bool = False  # the small profile the tests run; otherwise the full one (GPU or a long CPU run)
    setting: str = DEFAULT_SETTING  # text, original (the page vs the scripts where they disagree) or adam
    prompts: tuple[str, ...] = ()  # empty: the profile's default prompts
    seeds: int = 0  # 0: the profile's default (1 quick, 3 full)
    device: str = "cpu"
    model: str = DEFAULT_MODEL  # the trained model (stands in for trained GPT-2 offline)
    extra_models: tuple[str, ...] = ()  # more trained models for sentence-reconstruction (e.g. "gpt2")
    steps: int = 0  # N for every gradient-descent run; 0: the profile's (the setting's N, or the quick one)
    layers: tuple[int, ...] = ()  # depth: the blocks to invert after; empty: every one (quick: the first two)

    def resolved(self) -> "ReproduceConfig":
        """Fill the profile's defaults and check the values; the result is what the run folder records."""
        if self.setting not in SETTINGS:
            raise LmrepError(f"unknown setting '{self.setting}': choose one of {', '.join(SETTINGS)}")
        seeds = self.seeds or (1 if self.quick else 3)
        prompts = tuple(self.prompts) or default_prompts(self.quick)
        if any(not p.strip() for p in prompts):
            raise LmrepError("empty prompt: every prompt needs some text")
        if self.steps < 0 or any(k < 0 for k in self.layers):
            raise LmrepError("steps and layers must be counts >= 0")
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


def default_prompts(quick: bool) -> tuple[str, ...]:
    """The page's examples first, then the shipped prompt list (>= 20 prompts for the full profile)."""
    if quick:
        return (PAGE_PROMPT, SKY_PROMPT)
    return tuple(dict.fromkeys([PAGE_PROMPT, SKY_PROMPT, *read_prompt_file(PROMPTS_FILE)]))


def read_prompt_file(path: Path) -> list[str]:
    """One prompt per line; blank lines and #-comments skipped."""
    if not path.is_file():
        raise LmrepError(f"prompt list '{path}' not found: pass --prompts-file FILE (one prompt per line)")
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]

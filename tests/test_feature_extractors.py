"""LPIPS/FID feature extractors: the pipeline feature network, and the ImageNet path with state dicts made here.

No test downloads anything: ``no_network`` makes every socket connection fail, so a stray
fetch by torchvision, lpips or pytorch-fid would fail the test rather than reach the internet.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from semsim_study.errors import ConfigError, DataError
from semsim_study.metrics import featurenet, feature_extractors, imagenet
from semsim_study.metrics.feature_extractors import LpipsOptions
from tests.support import metrics_helpers as H


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def feature_folder(tmp_path_factory):
    return H.feature_dir(tmp_path_factory.mktemp("features"))


def _batch(n=4, seed=0):
    x, _ = H.blobs(n, 3, seed=seed)
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


# --- pipeline ---------------------------------------------------------------------------------

def test_pipeline_lpips_is_zero_for_identical_images_and_grows_with_distortion(feature_folder):
    bb = feature_extractors.PipelineFeatures(feature_folder, LpipsOptions())
    x = _batch()
    same, fa, fb = bb(x, x.clone())
    assert np.all(same == 0) and fa.shape == (4, 32) and np.array_equal(fa, fb)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    mild, _, _ = bb(x, (x + 0.05 * noise).clamp(0, 1))
    strong, _, _ = bb(x, (x + 0.4 * noise).clamp(0, 1))
    assert np.all(mild > 0) and np.all(strong > mild)
    assert bb.describe()["features"] == "pipeline" and bb.describe()["offline_stand_in"] is True


def test_pipeline_lpips_matches_the_lpips_package_formula(feature_folder):
    """Our distance equals lpips' own lpips=False computation (normalize_tensor, sum, spatial mean, sum)."""
    import lpips

    model, _ = featurenet.load(feature_folder)
    x0, x1 = _batch(seed=0) * 2 - 1, _batch(seed=3) * 2 - 1
    with torch.no_grad():
        l0, l1 = model.layers(x0), model.layers(x1)
        ours = featurenet.lpips_distance(l0, l1)
        ref = sum(lpips.spatial_average(((lpips.normalize_tensor(a) - lpips.normalize_tensor(b)) ** 2)
                                        .sum(dim=1, keepdim=True)) for a, b in zip(l0, l1)).flatten()
    torch.testing.assert_close(ours, ref)


def test_paper_input_scale_changes_lpips_but_not_fid_features(feature_folder):
    x0, x1 = _batch(seed=0), _batch(seed=1)
    std = feature_extractors.PipelineFeatures(feature_folder, LpipsOptions())(x0, x1)
    paper = feature_extractors.PipelineFeatures(feature_folder, LpipsOptions(paper_input_scale=True))(x0, x1)
    assert not np.allclose(std[0], paper[0])
    assert np.array_equal(std[1], paper[1])


def test_feature_network_training_is_deterministic_and_its_card_says_stand_in(tmp_path):
    a, b = H.feature_dir(tmp_path / "a"), H.feature_dir(tmp_path / "b")
    assert (a / featurenet.WEIGHTS).read_bytes() == (b / featurenet.WEIGHTS).read_bytes()
    card = json.loads((a / featurenet.CARD).read_text())
    assert card["offline_stand_in"] is True and card["attacked_classifier"] is False
    assert card["num_classes"] == 7 and card["datasets"] == ["a", "b"] and card["fid"]["dims"] == 32


def test_feature_network_load_errors_name_the_file(tmp_path, feature_folder):
    with pytest.raises(DataError, match="card missing"):
        featurenet.load(tmp_path)
    (tmp_path / featurenet.CARD).write_text(json.dumps({"kind": featurenet.KIND, "trained": False}))
    with pytest.raises(DataError, match="no trained feature network"):
        featurenet.load(tmp_path)
    (tmp_path / featurenet.CARD).write_text((feature_folder / featurenet.CARD).read_text())
    with pytest.raises(DataError, match=f"{featurenet.WEIGHTS}: feature network weights missing"):
        featurenet.load(tmp_path)
    (tmp_path / featurenet.WEIGHTS).write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not loadable"):
        featurenet.load(tmp_path)


# --- imagenet ---------------------------------------------------------------------------------

def fid_inception_skeleton() -> torch.nn.Module:
    """pytorch-fid's FID Inception architecture with random weights (its blocks, as fid_inception_v3 builds it)."""
    from pytorch_fid import inception as pfi

    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """torchvision-shaped AlexNet/SqueezeNet and pytorch-fid-shaped Inception state dicts, random values."""
    import torchvision

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None).state_dict()
    # only features.* is read; the 37M-parameter classifier would just make a 200 MB file
    torch.save({k: v for k, v in alex.items() if k.startswith("features.")}, folder / imagenet.TRUNK_FILES["alex"])
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), folder / imagenet.TRUNK_FILES["squeeze"])
    torch.save(fid_inception_skeleton().state_dict(), folder / imagenet.INCEPTION_FILE)
    return folder


@pytest.mark.parametrize("net,resize", [("alex", 64), ("squeeze", None)])
def test_imagenet_backbones_load_local_state_dicts(fake_weights, no_network, net, resize):
    bb = feature_extractors.ImagenetFeatures(fake_weights, LpipsOptions(net=net, resize=resize))
    trunk = torch.load(fake_weights / imagenet.TRUNK_FILES[net], weights_only=True)
    torch.testing.assert_close(bb.lpips.net.slice1[0].weight, trunk["features.0.weight"])
    inception = torch.load(fake_weights / imagenet.INCEPTION_FILE, weights_only=True)
    torch.testing.assert_close(bb.inception.blocks[0][0].conv.weight, inception["Conv2d_1a_3x3.conv.weight"])
    x = _batch(2)
    same, fa, fb = bb(x, x.clone())
    assert same.shape == (2,) and np.all(np.abs(same) < 1e-6)
    assert fa.shape == (2, 2048) and np.allclose(fa, fb)
    other, _, _ = bb(x, _batch(2, seed=4))
    assert np.all(other > 0)
    info = bb.describe()
    assert info["features"] == "imagenet" and info["lpips"]["net"] == net and info["fid"]["dims"] == 2048


def test_missing_weights_name_the_file_and_the_folder(tmp_path, fake_weights, no_network):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError) as err:
        feature_extractors.ImagenetFeatures(empty, LpipsOptions(net="vgg"))
    msg = str(err.value)
    assert imagenet.TRUNK_FILES["vgg"] in msg and str(empty) in msg and "metrics.weights_dir" in msg
    assert "download.pytorch.org/models/vgg16-397923af.pth" in msg

    (empty / imagenet.TRUNK_FILES["alex"]).write_bytes((fake_weights / imagenet.TRUNK_FILES["alex"]).read_bytes())
    with pytest.raises(ConfigError, match=f"place {imagenet.INCEPTION_FILE} .* in {empty}"):
        feature_extractors.ImagenetFeatures(empty, LpipsOptions(net="alex"))


def test_default_folder_is_the_torch_hub_cache(tmp_path, no_network):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert imagenet.weights_dir(None) == tmp_path / "hub" / "checkpoints"
        with pytest.raises(ConfigError, match=str(tmp_path / "hub" / "checkpoints")):
            feature_extractors.ImagenetFeatures(None, LpipsOptions())
    finally:
        torch.hub.set_dir(old)


def test_corrupt_or_wrong_weights_are_named(tmp_path, fake_weights, no_network):
    (tmp_path / imagenet.TRUNK_FILES["alex"]).write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match=f"{tmp_path / imagenet.TRUNK_FILES['alex']}: not a loadable"):
        imagenet.lpips_model("alex", tmp_path)
    squeeze = torch.load(fake_weights / imagenet.TRUNK_FILES["squeeze"], weights_only=True)
    torch.save(squeeze, tmp_path / imagenet.TRUNK_FILES["alex"])  # SqueezeNet's tensors under AlexNet's name
    with pytest.raises(DataError, match="features.0.weight.* has shape"):
        imagenet.lpips_model("alex", tmp_path)
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, tmp_path / imagenet.INCEPTION_FILE)
    with pytest.raises(DataError, match="do not fit pytorch-fid's Inception"):
        imagenet.inception_model(tmp_path)


# --- the features stage -----------------------------------------------------------------------

def _features_params(kind: str) -> dict:
    return {"seed": 0, "datasets": ["a", "b"], "metrics": {"features": kind},
            "features": {"widths": [8, 16], "image_size": 32, "epochs": 1, "batch_size": 16, "lr": 0.05}}


def test_features_stage_trains_on_every_prepared_dataset(tmp_path, monkeypatch):
    import sys

    import yaml

    from semsim_study.datasets import standard
    from stages import features as stage

    for ds in (H.prepared("a", 3), H.prepared("b", 4, size=40, seed=2)):  # b is resized to 32 px
        standard.save(ds, tmp_path / "data" / "prepared" / ds.name, "test", np.arange(2))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_features_params("pipeline")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["features"])
    stage.main()
    model, card = featurenet.load(tmp_path / "models" / "features")
    assert card["datasets"] == ["a", "b"] and card["num_classes"] == 7 and card["classes"][3] == "b/c0"
    assert card["offline_stand_in"] is True and card["widths"] == [8, 16]

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_features_params("imagenet")))
    stage.main()
    assert sorted(p.name for p in (tmp_path / "models" / "features").iterdir()) == [featurenet.CARD]
    with pytest.raises(DataError, match="no trained feature network"):
        featurenet.load(tmp_path / "models" / "features")


def test_bad_feature_params_are_named():
    params = _features_params("pipeline")
    params["features"]["widths"] = [8, 0]
    with pytest.raises(ConfigError, match="'features.widths' must be a non-empty list of positive integers"):
        featurenet.from_params(params)

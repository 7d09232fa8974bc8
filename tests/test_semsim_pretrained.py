"""Trained SemSim models one call away: ``SemSim.from_pretrained`` and ``semsim pull`` fetch a
model folder from a git + DVC repository and its remote, check it against dvc.lock, cache it
atomically and load it; a model that loses to its own untrained network says so when loaded.

Everything runs in tmp folders: a tiny repository (git init, dvc init, two model folders made
with the project's own code as the outputs of one stage, committed) and a local folder remote
it pushes to. The repository's own DVC cache and model folders are deleted after the push, so
every byte a test loads came through the remote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

from semsim_study.errors import ConfigError, DataError, DownloadError
from semsim_study.semsim import SemSim, cli, embedding_nets, metric, modelcard, pretrained
from semsim_study.torch_helpers import state_bytes

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1"}
NAMES = ("dataset-other", "dataset-tiny")


def _results(trained: float, untrained: float, trained_matched: float, untrained_matched: float) -> dict:
    return {"heldout_triplet_accuracy": trained, "heldout_triplet_accuracy_random_init": untrained,
            "heldout_triplet_accuracy_matched": trained_matched,
            "heldout_triplet_accuracy_random_init_matched": untrained_matched,
            "heldout_pairs": 40, "heldout_matched_pairs": 12, "matched_db": 2.0, "heldout_annotated": 16}


def make_model(folder: Path, seed: int = 0, results: dict | None = None) -> Path:
    """A tiny untrained tinyconv16 SemSim folder as the stage writes it: semsim.pt, semsim.json
    (a card that validates, with held-out results) and MODEL_CARD.md rendered from them."""
    torch.manual_seed(seed)
    net = embedding_nets.build("tinyconv16")
    results = _results(0.75, 0.6, 0.7, 0.55) if results is None else results
    card = {"format": metric.CARD_FORMAT, "format_version": metric.CARD_VERSION, "model": "semsim",
            "backbone": "tinyconv16", "input_size": 32, "embedding_dim": net.out_dim, "embedding_normalized": True,
            "normalization": {"name": "fixture", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "weights": {"semsim": "semsim.pt"}, "split": "dataset", "held_out": folder.name.split("-", 1)[1],
            "alpha": 1.0, "epochs": 1, "batch_size": 8, "optimizer": {"name": "SGD", "lr": 0.01},
            "augmentation": {}, "selection": {"selected_epoch": 1, "rule": "the last epoch"},
            "training_datasets": ["alpha"], "heldout_results": results}
    folder.mkdir(parents=True)
    (folder / "semsim.pt").write_bytes(state_bytes(net))
    (folder / "semsim.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (folder / "MODEL_CARD.md").write_text(modelcard.render(card, results))
    return folder


def _git(cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.fixture(autouse=True)
def _dvc_stays_in_tmp(tmp_path_factory, monkeypatch):
    """DVC keeps repository indexes, .dir manifests included, in a site cache (/var/tmp/dvc by
    default): a fresh tmp folder per test, so each test reads its own remote's manifests."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path_factory.mktemp("dvc-site-cache")))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.delenv(pretrained.REPO_ENV, raising=False)
    monkeypatch.delenv(pretrained.CACHE_ENV, raising=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """{"repo", "remote", "originals"}: a committed git + DVC repository whose stage ``semsim``
    has the two model folders as outputs, pushed to a local folder remote (its default)."""
    from dvc.repo import Repo

    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("pretrained")
    mp.setenv("DVC_SITE_CACHE_DIR", str(base / "dvc-site-cache"))
    mp.setenv("DVC_NO_ANALYTICS", "1")
    originals = base / "originals"
    for seed, name in enumerate(NAMES):
        make_model(originals / name, seed=seed)
    repo_dir, remote = base / "repo", base / "remote"
    repo_dir.mkdir()
    try:
        _git(repo_dir, "init", "-q", "-b", "main")
        mp.chdir(repo_dir)  # dvc resolves stage paths against the working directory
        repo = Repo.init(str(repo_dir))
        for name in NAMES:
            shutil.copytree(originals / name, repo_dir / "models" / "semsim" / name)
        repo.stage.add(name="semsim", cmd="python -m stages.semsim", outs=["models/semsim"])  # as dvc.yaml
        repo.commit("semsim", force=True)
        with repo.config.edit() as conf:
            conf["remote"]["store"] = {"url": str(remote)}
            conf["core"]["remote"] = "store"
        repo.close()
        repo = Repo(str(repo_dir))
        assert repo.push() == len(NAMES) * 3 + 1  # three files per model and the folder's .dir manifest
        repo.close()
        _git(repo_dir, "add", "-A")
        _git(repo_dir, "commit", "-q", "-m", "two SemSim models")
    finally:
        mp.undo()
    shutil.rmtree(repo_dir / ".dvc" / "cache")
    shutil.rmtree(repo_dir / "models")
    return {"repo": repo_dir, "remote": remote, "originals": originals}


def _object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def _copy_remote(study: dict, to: Path) -> Path:
    shutil.copytree(study["remote"], to)
    for p in to.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)  # DVC makes cached objects read-only
    return to


def _lock_md5(study: dict) -> str:
    """The .dir md5 dvc.lock records for models/semsim, the stage's one output."""
    import yaml

    lock = yaml.safe_load((study["repo"] / "dvc.lock").read_text())
    (md5,) = [o["md5"] for o in lock["stages"]["semsim"]["outs"] if o["path"] == "models/semsim"]
    return md5


def _model_md5(study: dict, name: str) -> str:
    """The md5 DVC would give one model's folder: what names its cache folder."""
    return pretrained.tree_md5(pretrained.local_md5s(study["originals"] / name))


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- from_pretrained -----------------------------------------------------------------------------

def test_from_pretrained_fetches_checks_caches_and_loads(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: everything comes through repo= and its remote
    cache = tmp_path / "cache"
    m = SemSim.from_pretrained("dataset-tiny", repo=study["repo"], rev="main", cache_dir=cache)
    md5 = _model_md5(study, "dataset-tiny")
    assert m.folder == cache.absolute() / "semsim" / "dataset-tiny" / md5
    assert sorted(p.name for p in m.folder.iterdir()) == ["MODEL_CARD.md", "semsim.json", "semsim.pt"]
    assert (m.folder / "MODEL_CARD.md").read_text() == (study["originals"] / "dataset-tiny" / "MODEL_CARD.md").read_text()
    folder_md5 = _lock_md5(study).removesuffix(".dir")
    assert _leftovers(cache) == ["semsim", "semsim/.manifests", f"semsim/.manifests/{folder_md5}.json",
                                 "semsim/dataset-tiny", f"semsim/dataset-tiny/{md5}",
                                 *(f"semsim/dataset-tiny/{md5}/{f}" for f in ("MODEL_CARD.md", "semsim.json", "semsim.pt"))]

    local = SemSim.load(study["originals"] / "dataset-tiny")
    torch.manual_seed(1)
    x, y = torch.rand(5, 3, 40, 40), torch.rand(5, 3, 40, 40)
    assert torch.equal(m.score(x, y), local.score(x, y)) and torch.equal(m(x, y), local(x, y))
    other = SemSim.from_pretrained("models/semsim/dataset-other", repo=study["repo"], rev="main", cache_dir=cache)
    assert not torch.equal(other.score(x, y), m.score(x, y))  # a different model, not the same folder twice

    # the remote by name or by path gives the same folder; a cached copy that verifies is reused
    # without reading the remote (an empty remote would fail a download)
    by_name = pretrained.pull("dataset-tiny", repo=study["repo"], rev="main", remote="store", cache_dir=cache)
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    assert by_name == m.folder == pretrained.pull("dataset-tiny", repo=study["repo"], rev="main", remote=empty,
                                                  cache_dir=cache)
    # a cached copy edited by hand no longer verifies: it is fetched again, whole (and a staging
    # folder a killed pull left a day ago is cleared on the way)
    (m.folder / "semsim.json").write_text("{}")
    stale = cache / f"{pretrained.STAGING}killed.tmp"
    stale.mkdir()
    os.utime(stale, (0, 0))
    again = SemSim.from_pretrained("dataset-tiny", repo=study["repo"], rev="main", remote=study["remote"],
                                   cache_dir=cache)
    assert again.folder == m.folder and torch.equal(again.score(x, y), local.score(x, y))
    assert not [p for p in cache.rglob("*") if p.name.startswith(pretrained.STAGING)]


def test_default_cache_and_repo_come_from_the_environment(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "env-cache"))
    monkeypatch.setenv(pretrained.REPO_ENV, str(study["repo"]))
    folder = pretrained.pull("dataset-other", rev="main")
    assert folder.parent == tmp_path / "env-cache" / "semsim" / "dataset-other"
    monkeypatch.delenv(pretrained.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pretrained.default_cache() == tmp_path / "xdg" / "semsim-study" / "models"
    monkeypatch.delenv(pretrained.REPO_ENV)
    monkeypatch.setattr(pretrained, "DEFAULT_REPO", None)
    with pytest.raises(ConfigError, match=r"no repository to pull SemSim models from: pass repo= .*SEMSIM_REPO"):
        SemSim.from_pretrained("dataset-other")


def test_a_git_url_is_cloned_and_the_clone_removed(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = SemSim.from_pretrained("dataset-tiny", repo=f"file://{study['repo']}", rev="main", cache_dir=tmp_path / "c")
    assert (m.folder / "semsim.pt").read_bytes() == (study["originals"] / "dataset-tiny" / "semsim.pt").read_bytes()


def test_unknown_name_lists_the_available_models(study, tmp_path):
    with pytest.raises(DataError, match=r"no model 'dataset-nope' under models/semsim/ in dvc\.lock; "
                                        r"available: dataset-other, dataset-tiny"):
        SemSim.from_pretrained("dataset-nope", repo=study["repo"], rev="main", cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"no model 'dataset-tiny' under models/ce_baseline/ .*available: none"):
        pretrained.pull("dataset-tiny", repo=study["repo"], rev="main", baseline=True, cache_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match=r"model name '\.\./x': give one folder name under models/semsim/"):
        pretrained.pull("../x", repo=study["repo"], cache_dir=tmp_path / "c")
    assert _leftovers(tmp_path / "c") == []


def test_a_corrupt_remote_file_fails_and_leaves_nothing(study, tmp_path):
    remote = _copy_remote(study, tmp_path / "remote")
    md5 = pretrained.local_md5s(study["originals"] / "dataset-tiny")["semsim.pt"]
    obj = _object(remote, md5)
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0xFF
    obj.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=rf"models/semsim/dataset-tiny/semsim\.pt downloaded with md5 [0-9a-f]{{32}}, "
                                            rf"but DVC records {md5}: the remote's copy is corrupt"):
        SemSim.from_pretrained("dataset-tiny", repo=study["repo"], rev="main", remote=remote, cache_dir=cache)
    assert _leftovers(cache) == []  # no model folder, no staging folder

    out = tmp_path / "here"
    with pytest.raises(DownloadError, match="corrupt"):
        pretrained.pull("dataset-tiny", repo=study["repo"], rev="main", remote=remote, dest=out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(pretrained.STAGING)]


def test_a_tampered_manifest_or_lock_fails_against_dvc_lock(study, tmp_path):
    """The remote's .dir manifest is not trusted: rewritten so that semsim.json is served the
    bytes of MODEL_CARD.md, each file would match the manifest, but the manifest does not hash to
    the md5 that git's dvc.lock records for models/semsim."""
    remote = _copy_remote(study, tmp_path / "remote")
    dir_md5 = _lock_md5(study)
    manifest = _object(remote, dir_md5)
    entries = json.loads(manifest.read_text())
    card_md5 = next(e["md5"] for e in entries if e["relpath"] == "dataset-tiny/MODEL_CARD.md")
    manifest.write_text(json.dumps([{**e, "md5": card_md5} if e["relpath"] == "dataset-tiny/semsim.json" else e
                                    for e in entries]))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=rf"the remote's manifest of models/semsim does not match the md5 "
                                            rf"{dir_md5} that dvc\.lock records"):
        SemSim.from_pretrained("dataset-tiny", repo=study["repo"], rev="main", remote=remote, cache_dir=cache)
    assert _leftovers(cache) == []

    # a lock whose md5 names nothing on the remote: the listing fails, naming the output and remote
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(study["repo"]), str(clone))
    lock = clone / "dvc.lock"
    lock.write_text(lock.read_text().replace(dir_md5, "0" * 32 + ".dir"))
    _git(clone, "commit", "-q", "-am", "tampered")
    with pytest.raises(DownloadError, match=r"at HEAD: (cannot list models/semsim from DVC remote |the remote's manifest)"):
        pretrained.pull("dataset-tiny", repo=clone, rev="HEAD", remote=study["remote"], cache_dir=cache)
    assert _leftovers(cache) == []


# -- the command ---------------------------------------------------------------------------------

def test_semsim_pull_prints_where_it_put_the_model(study, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    assert cli.main(["pull", "dataset-tiny", "--repo", str(study["repo"]), "--rev", "main"]) == 0
    out, err = capsys.readouterr()
    folder = Path(out.strip())
    assert folder.parent == tmp_path / "cache" / "semsim" / "dataset-tiny" and (folder / "semsim.pt").is_file()
    assert f"-> {folder}; model card: {folder / 'MODEL_CARD.md'}" in err

    here = tmp_path / "models" / "tiny"
    args = ["pull", "dataset-tiny", "--repo", str(study["repo"]), "--rev", "main", "--remote", str(study["remote"]),
            "--out", str(here)]
    assert cli.main(args) == 0 and capsys.readouterr().out.strip() == str(here)
    torch.manual_seed(2)
    x, y = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    assert torch.equal(SemSim.load(here).score(x, y), SemSim.load(study["originals"] / "dataset-tiny").score(x, y))
    assert cli.main(args) == 0  # already there, same files: nothing to do
    capsys.readouterr()
    other = args[:1] + ["dataset-other"] + args[2:]
    assert cli.main(other) == 2  # never overwrites a folder holding something else
    assert "already exists and does not hold models/semsim/dataset-other" in capsys.readouterr().err

    assert cli.main(["pull", "dataset-nope", "--repo", str(study["repo"]), "--rev", "main"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "available: dataset-other, dataset-tiny" in err


# -- a model that loses to its untrained network says so -------------------------------------------

def test_a_model_worse_than_its_untrained_network_warns_on_load(tmp_path, monkeypatch):
    monkeypatch.setattr(metric, "_WARNED", set())
    lost = make_model(tmp_path / "dataset-lost", results=_results(0.81, 0.82, 0.48, 0.715))
    matched_only = make_model(tmp_path / "dataset-matched", results=_results(0.9, 0.8, 0.5, 0.6))
    fine = make_model(tmp_path / "dataset-fine", results=_results(0.9, 0.9, 0.7, 0.6))
    no_pairs = make_model(tmp_path / "dataset-none", results=_results(0.7, 0.9, None, None))
    card = json.loads((no_pairs / "semsim.json").read_text())
    del card["heldout_results"]
    bare = tmp_path / "dataset-bare"
    shutil.copytree(no_pairs, bare)
    (bare / "semsim.json").write_text(json.dumps(card))

    def said(folder: Path) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            SemSim.load(folder)
            SemSim.load(folder)  # once per model, not per load
        return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]

    (msg,) = said(lost)
    assert "\n" not in msg and msg.startswith(f"{lost / 'semsim.json'}: ")
    assert "on its held-out data it does worse than its own untrained network (triplet accuracy " in msg
    assert "0.810 trained vs 0.820 untrained on all pairs; 0.480 trained vs 0.715 untrained on PSNR-matched pairs" in msg
    (msg,) = said(matched_only)
    assert "0.500 trained vs 0.600 untrained on PSNR-matched pairs" in msg and "all pairs" not in msg
    (msg,) = said(no_pairs)  # no matched pair to compare on: all pairs only
    assert "0.700 trained vs 0.900 untrained on all pairs" in msg and "PSNR-matched" not in msg
    assert said(fine) == [] and said(bare) == []
    # a loss of a pair in thousands prints the decimals where it lies, and says when the paired
    # interval of the difference spans 0
    close = make_model(tmp_path / "dataset-close", results=_results(0.900063, 0.900117, 0.7, 0.6)
                       | {"heldout_gain_over_random_init_ci": [-0.0011, 0.0009]})
    (msg,) = said(close)
    assert ("0.90006 trained vs 0.90012 untrained on all pairs (within resampling noise: paired 95% interval of "
            "the difference [-0.0011, +0.0009])") in msg
    clear = make_model(tmp_path / "dataset-clear", results=_results(0.85, 0.9, 0.7, 0.6)
                       | {"heldout_gain_over_random_init_ci": [-0.08, -0.02]})  # a loss beyond the noise
    (msg,) = said(clear)
    assert "0.850 trained vs 0.900 untrained on all pairs" in msg and "within resampling noise" not in msg

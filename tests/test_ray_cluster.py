"""Scale-out, end to end: the train and attack stages on a real two-node Ray cluster give the
local executor's bytes, and a DVC remote hands a finished run to another clone.

Ray replaces 127.0.0.1 with the machine's routable address; to keep all traffic on loopback
the cluster, and the stages that connect to it, run in a network namespace that has only
loopback (``unshare -n``, then ``ip link set lo up``), where Ray binds 127.0.0.1. That needs
root (CI runs as root); elsewhere the cluster test is skipped with that reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.dvc_clone import clone, digest, dvc, env, run  # noqa: F401 (clone is a fixture)

DATASET, ATTACK = "digits", "idlg"
STAGES = [f"train@{DATASET}", f"attack@{DATASET}"]
PORT = 6391


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    try:
        res = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n failed: {exc}"
    return None if res.returncode == 0 else "unshare -n needs root (CI runs as root)"


def _ray_version() -> str:
    import ray

    return ray.__version__


def _tiny_one_dataset(tiny_params: dict) -> dict:
    p = {**tiny_params, "datasets": [DATASET], "attacks": [ATTACK]}
    p["semsim"] = {**p["semsim"], "held_out_attacks": [ATTACK], "held_out_backbones": ["lenet"]}
    return p


@pytest.fixture(scope="module")
def local_run(clone, tiny_params):
    """The train and attack stages of one dataset with the local executor, committed."""
    (clone / "params.yaml").write_text(yaml.safe_dump(_tiny_one_dataset(tiny_params), sort_keys=False))
    dvc("repro", *STAGES, cwd=clone)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run(git + ["add", "-A"], clone)
    run(git + ["commit", "-q", "-m", "local run"], clone)
    return {"models": digest(clone / "models" / DATASET),
            "attack": digest(clone / "data" / "attacks" / DATASET / ATTACK),
            "lock": (clone / "dvc.lock").read_text()}


@pytest.mark.slow
def test_ray_cluster_gives_the_local_executors_bytes(clone, local_run):
    why = _can_unshare()
    if why:
        pytest.skip(why)
    ray = Path(sys.executable).parent / "ray"
    dvc_bin = Path(sys.executable).parent / "dvc"
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["executor"] = {"kind": "ray", "address": f"127.0.0.1:{PORT}", "jobs_per_gpu": 1}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    common = "--num-cpus=1 --num-gpus=0 --object-store-memory=150000000 --disable-usage-stats"
    script = f"""
set -euo pipefail
ip link set lo up
trap '"{ray}" stop --force >/dev/null 2>&1 || true' EXIT
"{ray}" start --head --node-ip-address=127.0.0.1 --port={PORT} --include-dashboard=false {common}
"{ray}" start --address=127.0.0.1:{PORT} --node-ip-address=127.0.0.1 {common}
"{ray}" status --address=127.0.0.1:{PORT}
"{dvc_bin}" repro --force --single-item {' '.join(STAGES)}
"""
    res = subprocess.run(["unshare", "-n", "bash", "-c", script], cwd=clone, env={**env(), "RAY_USAGE_STATS_ENABLED": "0"},
                         capture_output=True, text=True, timeout=1200)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    # each node offers one CPU: two in the cluster means the second node joined, and the stages say so
    assert log.count(f"executor: Ray {_ray_version()} at 127.0.0.1:{PORT}, 2.0 CPU(s)") == 2, log[-3000:]
    assert digest(clone / "models" / DATASET) == local_run["models"]
    assert digest(clone / "data" / "attacks" / DATASET / ATTACK) == local_run["attack"]
    assert (clone / "dvc.lock").read_text() == local_run["lock"]  # executor is no stage param: nothing reruns
    params["executor"] = {"kind": "local", "address": None, "jobs_per_gpu": 1}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Running stage" not in dvc("repro", *STAGES, cwd=clone).stdout


@pytest.mark.slow
def test_a_dvc_remote_hands_a_finished_run_to_another_clone(clone, local_run, tmp_path):
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=clone)
    dvc("push", cwd=clone)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run(git + ["add", "-A"], clone)
    run(git + ["commit", "-q", "-m", "remote"], clone)
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(clone), str(other)], tmp_path)
    assert not (other / "models" / DATASET).exists()
    dvc("pull", "--with-deps", *STAGES, cwd=other)
    assert digest(other / "models" / DATASET) == local_run["models"]
    assert digest(other / "data" / "attacks" / DATASET / ATTACK) == local_run["attack"]
    again = dvc("repro", *STAGES, cwd=other)
    assert "Running stage" not in again.stdout, again.stdout

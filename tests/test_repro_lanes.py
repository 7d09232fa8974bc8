"""scripts/repro (what `make repro` runs): stages on two lanes, in dependency order, through DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "repro"
STAMP = ("import json, sys, time; s = time.time(); time.sleep(1.5); "
         "open(sys.argv[1], 'w').write(json.dumps([s, time.time()]))")


def _run(args, cwd):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_independent_stages_share_the_time_and_dependents_wait(tmp_path):
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(cmd, tmp_path).returncode == 0
    stage = lambda out, deps=(): {"cmd": f'python -c "{STAMP}" {out}', "deps": list(deps), "outs": [out]}
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": {
        "a": stage("a.json"), "b": stage("b.json"), "c": stage("c.json", ["a.json", "b.json"])}}))
    dry = _run([sys.executable, str(SCRIPT), "--dry"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["a  <- (nothing to wait for)", "b  <- (nothing to wait for)", "c  <- a, b"]
    done = _run([sys.executable, str(SCRIPT), "--jobs", "2"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    a, b, c = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "abc")
    assert a[0] < b[1] and b[0] < a[1], "a and b did not run side by side"
    assert c[0] >= max(a[1], b[1]), "c started before its inputs were done"
    assert "a | " in done.stdout and "repro: 3 stage(s)" in done.stdout
    status = _run(["dvc", "status"], tmp_path)
    assert "up to date" in status.stdout, status.stdout  # dvc.lock holds every stage
    again = _run([sys.executable, str(SCRIPT)], tmp_path)
    assert again.stdout.strip() == "Data and pipelines are up to date."


def test_a_failing_stage_stops_its_dependents(tmp_path):
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(cmd, tmp_path).returncode == 0
    (tmp_path / "dvc.yaml").write_text(json.dumps({"stages": {
        "bad": {"cmd": "python -c \"raise SystemExit(3)\"", "outs": ["bad.txt"]},
        "after": {"cmd": "python -c \"open('after.txt', 'w')\"", "deps": ["bad.txt"], "outs": ["after.txt"]}}}))
    done = _run([sys.executable, str(SCRIPT), "--jobs", "2"], tmp_path)
    assert done.returncode == 1
    assert "repro: bad FAILED" in done.stderr and "not run: after" in done.stderr
    assert not (tmp_path / "after.txt").exists()

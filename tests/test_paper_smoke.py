"""`make paper-smoke` runs dvc.yaml family by family (`dvc repro --single-item`), so its list of
families must hold every stage of dvc.yaml, each after the families whose outputs it reads."""

from __future__ import annotations

import importlib.util

import yaml

from tests.conftest import ROOT


def _families() -> list[str]:
    spec = importlib.util.spec_from_file_location("paper_smoke", ROOT / "scripts" / "paper_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAMILIES


def test_families_are_every_stage_in_dag_order():
    families = _families()
    assert sorted(families) == sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    position = {name: i for i, name in enumerate(families)}
    # dvc.lock holds every stage with its templates resolved: who writes what, who reads what
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    writers = [(out["path"], name.split("@")[0]) for name, st in lock.items() for out in st.get("outs", [])]
    for name, st in lock.items():
        family = name.split("@")[0]
        for dep in (d["path"] for d in st.get("deps", [])):
            for out, writer in writers:
                if writer != family and (dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")):
                    assert position[writer] < position[family], f"{name} reads {dep} from {writer}, which runs later"

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

import semsim_study  # noqa: F401  (pins the CPU kernels before any test module loads torch)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded_params() -> dict:
    """The embedded profile as shipped (profiles/embedded.yaml, identical to params.yaml)."""
    return yaml.safe_load((ROOT / "profiles" / "embedded.yaml").read_text())


def shrink(params: dict, scale: float = 0.15) -> dict:
    """A tiny copy of the embedded profile: same domains and keys, a fraction of the images."""
    p = copy.deepcopy(params)
    for cfg in p["prepare"].values():
        for key in ("patches_per_photo", "images_per_class", "views_per_identity"):
            if key in cfg:
                cfg[key] = max(6, int(cfg[key] * scale))
        if "identities" in cfg:
            cfg["identities"] = min(cfg["identities"], 12)
        cfg["attack_images"] = min(cfg["attack_images"], 4)
    for cfg in p.get("train", {}).get("datasets", {}).values():
        cfg["epochs"] = 1
        cfg["models"] = {backbone: settings[:1] for backbone, settings in cfg["models"].items()}
    if "attack" in p:
        p["attack"]["images_per_model"] = 1
        for name, overrides in p["attack"]["methods"].items():
            overrides["iterations"] = 1 if name in ("dlg", "idlg") else 2
            overrides["budgets"] = [1] if overrides["iterations"] > 1 else []
        for per_dataset in (p["attack"].get("datasets") or {}).values():
            for overrides in (per_dataset or {}).values():  # the embedded profile's longer faces DLG/iDLG
                overrides.update(iterations=1, budgets=[])
    if "features" in p:
        p["features"]["epochs"] = 1
    if "annotate" in p:
        p["annotate"]["simulated"]["observer"]["epochs"] = 2
        # tiny attacks give noise, which nobody recognises; a liberal crowd on protocol B
        # (everyone says "same") keeps recognised reconstructions in every SemSim training split
        p["annotate"]["simulated"]["criterion_mean"] = -5.0
    if "observer_controls" in p:
        p["observer_controls"]["min_images"] = 8
        p["observer_controls"]["bootstrap"] = 50
    if "semsim" in p:
        p["semsim"]["training"]["epochs"] = 1
        p["semsim"]["training"]["milestones"] = [1]
    if "report" in p:
        p["report"]["bootstrap"] = 50
    return p


@pytest.fixture(scope="session")
def tiny_params(embedded_params) -> dict:
    return shrink(embedded_params)


# Browser tests drive Debian's chromium (/usr/bin/chromium, installed by .ci/run) with
# Playwright; no browser is downloaded. Outside CI they skip when it is missing; in CI
# (CI=true) they fail instead, so a broken install cannot pass unnoticed.
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _unavailable("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc})")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()

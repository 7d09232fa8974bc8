#!/usr/bin/env python3
"""The Label Studio round trip against a real Label Studio server (run by hand; CI does not).

Label Studio's server pins Django and dozens of packages that clash with the study's lock, so
it lives in its own virtual environment:

    python3 -m venv /tmp/lsenv && /tmp/lsenv/bin/pip install label-studio
    python scripts/label_studio_roundtrip.py --label-studio /tmp/lsenv/bin/label-studio \\
        --datasets digits faces --out /tmp/ls-roundtrip

It exports the datasets' tasks (blinded, shuffled: `export-label-studio`), starts Label Studio
on 127.0.0.1 with a throwaway data folder and user (the user's API token as a legacy token,
which newer releases disable unless asked), and per protocol creates a project from the
exported config (K answers per task, random sampling), imports the tasks as they are, answers
every task through the API, exports the project as JSON beside the export's task_map.csv, and
runs `validate` on it. Everything goes through Label Studio's HTTP API (stdlib only here).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path.cwd()


def _call(base: str, token: str, method: str, path: str, body=None, raw: bool = False):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        payload = resp.read()
    return payload if raw else (json.loads(payload) if payload else None)


def _wait(base: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"Label Studio exited with {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(2)
    raise SystemExit(f"Label Studio did not answer at {base}/health within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label-studio", required=True, help="the label-studio executable of its own venv")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--out", required=True, help="a fresh folder: the export, Label Studio's data, its exports")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--k", type=int, default=3, help="answers per task Label Studio is told to collect")
    parser.add_argument("--limit", type=int, default=40, help="tasks answered per protocol (0: all)")
    args = parser.parse_args()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    export = out / "export"
    subprocess.run([sys.executable, "-m", "semsim_study.annotation", "export-label-studio", "--datasets", *args.datasets,
                    "--out", str(export)], cwd=ROOT, check=True)
    token = secrets.token_hex(20)
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "roundtrip@example.org", "LABEL_STUDIO_PASSWORD": secrets.token_hex(8),
           "LABEL_STUDIO_USER_TOKEN": token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
           "DATA_UPLOAD_MAX_MEMORY_SIZE": str(512 * 1024 * 1024)}
    base = f"http://127.0.0.1:{args.port}"
    log = open(out / "label-studio.log", "w")
    proc = subprocess.Popen([args.label_studio, "start", "--no-browser", "--host", "127.0.0.1", "--internal-host",
                             "127.0.0.1", "--port", str(args.port), "--data-dir", str(out / "ls-data"),
                             "--enable-legacy-api-token"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(base, proc)
        print(f"Label Studio up at {base}")
        for folder in sorted(p for p in export.iterdir() if p.is_dir()):
            protocol = folder.name
            project = _call(base, token, "POST", "/api/projects", {
                "title": f"SemSim study, protocol {protocol}", "label_config": (folder / "label_config.xml").read_text(),
                "maximum_annotations": args.k, "overlap_cohort_percentage": 100, "sampling": "Uniform sampling"})
            tasks = json.loads((folder / "tasks.json").read_text())
            _call(base, token, "POST", f"/api/projects/{project['id']}/import", tasks)
            listed = _call(base, token, "GET", f"/api/tasks?project={project['id']}&page_size=100000&fields=all")
            listed = listed["tasks"] if isinstance(listed, dict) else listed
            assert len(listed) == len(tasks), f"protocol {protocol}: imported {len(listed)} of {len(tasks)} tasks"
            leaked = [t["id"] for t in listed if any(w in json.dumps(t["data"]) for w in ("item_id", "@", "lenet", "resnet"))]
            assert not leaked, f"protocol {protocol}: task data names a model, attack or item: {leaked[:5]}"
            answered = listed[: args.limit] if args.limit else listed
            for t in answered:
                choice = t["data"]["candidates"][0]["value"] if protocol == "A" else "same"
                _call(base, token, "POST", f"/api/tasks/{t['id']}/annotations", {"result": [
                    {"from_name": "answer", "to_name": "reconstruction", "type": "choices",
                     "value": {"choices": [choice]}}]})
            exported = _call(base, token, "GET", f"/api/projects/{project['id']}/export?exportType=JSON", raw=True)
            path = folder / "label-studio-export.json"
            path.write_bytes(exported)
            print(f"protocol {protocol}: project {project['id']} (maximum_annotations {project.get('maximum_annotations')}, "
                  f"sampling {project.get('sampling')!r}), {len(tasks)} tasks imported, none naming a model, attack "
                  f"or item, {len(answered)} answered, exported to {path}")
            check = subprocess.run([sys.executable, "-m", "semsim_study.annotation", "validate", str(path),
                                    *[a for ds in args.datasets for a in ("--dataset", ds)]], cwd=ROOT,
                                   capture_output=True, text=True)
            print(check.stdout.strip() or check.stderr.strip())
            if check.returncode != 0:
                raise SystemExit(f"validate failed on {path}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    main()

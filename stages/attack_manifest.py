"""DVC stage `attack-manifest`: one manifest per dataset of the files its attacks wrote (path, md5).

Reads data/attacks/<ds>/; writes data/attack-manifests/<ds>.json for every dataset in params.
The stages that read reconstructions depend on these manifests rather than on the attack
folders, so a `dvc repro` with nothing to do checks the ~8,000 attack files once, not eight
times (semsim_study/manifests.py says why).
"""

from __future__ import annotations

import logging

from semsim_study import manifests, params as P

from ._cli import arguments, begin, run

log = logging.getLogger("attack-manifest")


def main() -> None:
    _, params = begin(arguments(__doc__, dataset=False, raw=True))
    for dataset in P.get(params, "datasets", list):
        m = manifests.write(".", dataset)
        log.info("attack-manifest: %s: %d files -> %s", dataset, len(m["files"]), manifests.path(".", dataset))


if __name__ == "__main__":
    run(main)

"""DVC stage `prepare@<dataset>`: build one dataset in its standard form under data/prepared/<dataset>."""

from __future__ import annotations

import logging
import time

from semsim_study import params as P
from semsim_study.datasets import build
from semsim_study.datasets import standard

from ._cli import arguments, begin, run

log = logging.getLogger("prepare")


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--out", default=None, help="output folder (default data/prepared/<dataset>)")
    args, params = begin(parser)
    start = time.perf_counter()
    ds, split, indices = build.prepare(params, args.dataset)
    out = args.out or f"data/prepared/{args.dataset}"
    standard.save(ds, out, split, indices, extra_meta={"seed": P.get(params, "seed", int)})
    log.info("%s: %d train / %d test images, %d classes, %d px, protocol %s, %d attack images -> %s (%.1f s)",
             ds.name, len(ds.train_labels), len(ds.test_labels), ds.num_classes, ds.image_size, ds.protocol,
             len(indices), out, time.perf_counter() - start)


if __name__ == "__main__":
    run(main)

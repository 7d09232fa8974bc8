"""DVC stage `prepare`: build every dataset of the profile in its standard form under
data/prepared/<dataset>, one after another (a few seconds each on the embedded profile).
`--dataset` (repeatable) builds only the datasets named, e.g. into another `--out` folder."""

from __future__ import annotations

import logging
import time

from semsim_study import params as P
from semsim_study.datasets import build
from semsim_study.datasets import standard

from ._cli import arguments, begin, run

log = logging.getLogger("prepare")


def main() -> None:
    parser = arguments(__doc__, dataset=False)
    parser.add_argument("--dataset", action="append", help="a dataset to build (repeatable; default: every one in "
                                                            "'datasets')")
    parser.add_argument("--out", default="data/prepared", help="output folder, one subfolder per dataset")
    args, params = begin(parser)
    for name in args.dataset or P.get(params, "datasets", list):
        start = time.perf_counter()
        ds, split, indices = build.prepare(params, name)
        out = f"{args.out}/{name}"
        standard.save(ds, out, split, indices, extra_meta={"seed": P.get(params, "seed", int)})
        log.info("%s: %d train / %d test images, %d classes, %d px, protocol %s, %d attack images -> %s (%.1f s)",
                 ds.name, len(ds.train_labels), len(ds.test_labels), ds.num_classes, ds.image_size, ds.protocol,
                 len(indices), out, time.perf_counter() - start)


if __name__ == "__main__":
    run(main)

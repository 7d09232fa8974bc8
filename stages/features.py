"""DVC stage `features`: train the pipeline's feature network for LPIPS and FID.

Output models/features/: feature_net.pt (state dict) and feature_net.json (its card, which
records that it is an offline stand-in for ImageNet-pretrained backbones). It is trained on
the training split of every prepared dataset. When `metrics.features` is `imagenet` the
metrics do not use it: the stage then writes only a card saying so, and trains nothing.
"""

from __future__ import annotations

import logging

from semsim_study import atomic, params as P
from semsim_study.datasets import standard
from semsim_study.metrics import featurenet
from semsim_study.torch_helpers import state_bytes

from ._cli import arguments, begin, run

log = logging.getLogger("features")


def main() -> None:
    parser = arguments(__doc__, dataset=False)
    parser.add_argument("--out", default="models/features")
    args, params = begin(parser, threads="features.threads")
    kind = P.choice(params, "metrics.features", ("imagenet", "pipeline"))
    cfg = featurenet.from_params(params)
    with atomic.build_dir(args.out) as out:
        if kind != "pipeline":
            card = {"kind": featurenet.KIND, "trained": False,
                    "reason": f"metrics.features is {kind!r}: LPIPS and FID use the ImageNet backbones"}
            (out / featurenet.CARD).write_text(atomic.dumps_json(card), encoding="utf-8")
            log.info("metrics.features is %s: no feature network trained", kind)
            return
        names = P.get(params, "datasets", list)
        datasets = [standard.load(f"data/prepared/{name}") for name in names]
        model, card = featurenet.train(datasets, cfg, P.get(params, "seed", int))
        (out / featurenet.WEIGHTS).write_bytes(state_bytes(model))
        (out / featurenet.CARD).write_text(atomic.dumps_json(card), encoding="utf-8")


if __name__ == "__main__":
    run(main)

"""Metrics throughput (pairs/s) ours vs the paper code's approach, and peak memory for N vs 10N pairs.

Ours: `semsim_study.metrics` as the stage runs it: pairs read in batches, MSE/PSNR/SSIM batched
on torch, LPIPS and FID features from one batched forward pass, FID statistics streamed.
The paper's approach (SonyResearch/SemSim `metrics/pixel_level_metrics.py`, `fd_score.py`):
one pair at a time, read from disk for each metric family (pixel metrics, then LPIPS again),
scikit-image per image, LPIPS one pair per forward, FID with its network rebuilt per set,
one image per forward and pytorch-fid's `calculate_frechet_distance` (scipy sqrtm).

Both use the same backbone so only the way of computing differs: by default the pipeline
feature network (random weights: speed does not depend on their values); `--imagenet` uses
lpips' AlexNet and pytorch-fid's Inception-v3 with random weights (no download), where the
paper code also resizes to 256 (LPIPS) and 64 (FID) as it did. Each pair set is written to a
temporary folder in the attack stage's layout first. Peak memory runs in a fresh process per
size: tracemalloc's peak (Python and NumPy allocations) and how far the process's peak RSS
rose above its RSS when the loop started (torch's own allocations included). Torch runs with
`--threads` threads (default 1, as the stage's `metrics.threads`).

Run: `make bench` or `python -m benchmarks.metrics_throughput`; results go to
benchmarks/results/metrics_throughput.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import psutil
import torch

from semsim_study.classifiers import backbones
from semsim_study.torch_helpers import state_bytes
from semsim_study.datasets.imaging import save_png
from semsim_study.metrics import classification, compute, feature_extractors, featurenet, frechet, imagenet, pairs as P, pixel

ATTACKS = ("dlg", "invgrad")
MODELS = ("resnet8_none", "resnet8_crop", "convnet4_none", "convnet4_crop")  # 8 sets per attack grid


# --- inputs -------------------------------------------------------------------------------------

def make_project(root: Path, n_pairs: int, size: int = 32, seed: int = 0) -> Path:
    """data/attacks/bench/<attack>/ with n_pairs (original, reconstruction) PNGs; models/ with a
    classifier and a feature network (random weights, as speed does not depend on them)."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    sets = [(a, m) for a in ATTACKS for m in MODELS]
    per_set = max(1, n_pairs // len(sets))
    for attack in ATTACKS:
        out = root / "data" / "attacks" / "bench" / attack
        rows = []
        for model in MODELS:
            (out / "images" / model).mkdir(parents=True, exist_ok=True)
            for i in range(per_set):
                photo = photos[i % len(photos)]
                r, c = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
                ori = photo[r : r + size, c : c + size]
                rec = np.clip(ori + rng.normal(0, 40, ori.shape), 0, 255).astype(np.uint8)
                image_id = f"test-{i:06d}"
                rel = {k: f"images/{model}/{image_id}_{k}.png" for k in ("original", "reconstruction")}
                save_png(ori, out / rel["original"])
                save_png(rec, out / rel["reconstruction"])
                rows.append({"item_id": f"bench/{model}/{attack}/{image_id}", "dataset": "bench", "model": model,
                             "attack": attack, "image_id": image_id, "label": i % 10, "status": "ok", **rel})
        with open(out / "index.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    torch.manual_seed(seed)
    mdir = root / "models" / "bench"
    mdir.mkdir(parents=True)
    (mdir / "resnet8_none.pt").write_bytes(state_bytes(backbones.build("resnet8", 10, size)))
    (mdir / "resnet8_none.json").write_text(json.dumps({
        "model_id": "resnet8_none", "backbone": "resnet8", "setting": "none", "num_classes": 10, "image_size": size,
        "test_accuracy": 0.0, "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}))
    fdir = root / "models" / "features"
    fdir.mkdir(parents=True)
    widths = (16, 32, 64, 128)
    (fdir / featurenet.WEIGHTS).write_bytes(state_bytes(featurenet.FeatureNet(82, widths)))
    (fdir / featurenet.CARD).write_text(json.dumps({
        "kind": featurenet.KIND, "trained": True, "num_classes": 82, "widths": list(widths), "image_size": size,
        "lpips": {"layers": [], "formula": ""}, "fid": {"features": "pool", "dims": widths[-1]}}))
    return root


def fake_imagenet_weights(folder: Path) -> Path:
    """Random-valued AlexNet trunk and FID Inception state dicts of the right shapes (timing only)."""
    import torchvision
    from pytorch_fid import inception as pfi

    folder.mkdir(parents=True, exist_ok=True)
    alex = torchvision.models.alexnet(weights=None).state_dict()
    torch.save({k: v for k, v in alex.items() if k.startswith("features.")}, folder / "alexnet-owt-7be5be79.pth")
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b, net.Mixed_5c = pfi.FIDInceptionA(192, pool_features=32), pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b, net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=128), pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d, net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=160), pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b, net.Mixed_7c = pfi.FIDInceptionE_1(1280), pfi.FIDInceptionE_2(2048)
    torch.save(net.state_dict(), folder / "pt_inception-2015-12-05-6726825d.pth")
    return folder


def build_backbone(root: Path, kind: str):
    if kind == "imagenet":
        return feature_extractors.ImagenetFeatures(root / "weights", feature_extractors.LpipsOptions(net="alex", resize=256))
    return feature_extractors.PipelineFeatures(root / "models" / "features", feature_extractors.LpipsOptions())


# --- ours ---------------------------------------------------------------------------------------

def ours(root: Path, kind: str, batch: int) -> dict[str, float]:
    """Seconds per metric (each from files on disk, batched) and for everything in one stream."""
    pairs = P.read_pairs(root / "data/attacks/bench", ATTACKS)
    bb = build_backbone(root, kind)
    clf = classification.Classifier(root / "models/bench/resnet8_none.pt")
    out = {}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start

    def pixel_only(metric):
        fn = {"mse": pixel.mse, "psnr": pixel.psnr, "ssim": pixel.ssim}[metric]
        for _, ori, rec in P.batches(pairs, batch):
            fn(pixel.as_float64(ori), pixel.as_float64(rec))

    for m in ("mse", "psnr", "ssim"):
        timed(m, lambda: pixel_only(m))

    if kind == "imagenet":  # two networks: time each on its own (the stage runs both)
        def lpips_features(ori, rec):
            a, b = ori * 2 - 1, rec * 2 - 1
            a = torch.nn.functional.interpolate(a, size=(256, 256), mode="bilinear", antialias=True)
            b = torch.nn.functional.interpolate(b, size=(256, 256), mode="bilinear", antialias=True)
            with torch.no_grad():
                bb.lpips(a, b)

        def fid_features(ori, rec):
            with torch.no_grad():
                return None, bb.inception(ori)[0].flatten(1).double().numpy(), bb.inception(rec)[0].flatten(1).double().numpy()
    else:  # one pass of the pipeline network gives both
        lpips_features = fid_features = bb

    def lpips_only():
        for _, ori, rec in P.batches(pairs, batch):
            lpips_features(compute.to_unit(ori), compute.to_unit(rec))

    def fid_only():
        sets: dict = {}
        for chunk, ori, rec in P.batches(pairs, batch):
            _, fa, fb = fid_features(compute.to_unit(ori), compute.to_unit(rec))
            for i, p in enumerate(chunk):
                s = sets.setdefault(p.set_key, (frechet.SetFeatures(bb.dim), frechet.SetFeatures(bb.dim)))
                s[0].add(fa[i : i + 1])
                s[1].add(fb[i : i + 1])
        for a, b in sets.values():
            frechet.frechet_distance(a, b)

    def classification_only():
        for chunk, ori, rec in P.batches(pairs, batch):
            clf.predict(compute.to_unit(rec))

    timed("lpips", lpips_only)  # the pipeline network's one pass also yields FID features
    timed("fid", fid_only)
    timed("classification", classification_only)
    timed("all (one stream)", lambda: compute.evaluate(pairs, bb, clf, batch_size=batch, progress=False))
    return out


# --- the paper's approach -----------------------------------------------------------------------

def paper(root: Path, kind: str) -> dict[str, float]:
    """Seconds per metric the way the paper's scripts compute them: one pair at a time."""
    from PIL import Image
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity
    from skimage.transform import resize as sk_resize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pytorch_fid.fid_score import calculate_frechet_distance

    pairs = P.read_pairs(root / "data/attacks/bench", ATTACKS)
    read = lambda path: np.asarray(Image.open(path).convert("RGB"))  # noqa: E731  (cv2.imread in theirs)
    out = {}

    def timed(name, fn):
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start

    def loop(metric):
        for p in pairs:
            ori, rec = read(p.original), read(p.reconstruction)
            if metric == "psnr":
                peak_signal_noise_ratio(ori, rec)
            elif metric == "ssim":
                structural_similarity(ori, rec, channel_axis=-1)
            else:
                mean_squared_error(ori / 255, rec / 255)

    for m in ("mse", "psnr", "ssim"):
        timed(m, lambda: loop(m))

    bb = build_backbone(root, kind)  # built once, as their module-level LPIPS(...)
    size = 256 if kind == "imagenet" else None

    def to_tensor(path):  # Resize(256) + ToTensor, one image
        x = torch.from_numpy(read(path).copy()).permute(2, 0, 1).float().div(255)[None]
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True) if size else x

    def lpips_loop():
        for p in pairs:
            a, b = to_tensor(p.original), to_tensor(p.reconstruction)
            if kind == "imagenet":
                bb.lpips(a * 2 - 1, b * 2 - 1)
            else:
                with torch.no_grad():
                    featurenet.lpips_distance(bb.model.layers(a * 2 - 1), bb.model.layers(b * 2 - 1))

    def fid_loop():
        by_set: dict = {}
        for p in pairs:
            by_set.setdefault(p.set_key, []).append(p)
        for members in by_set.values():
            if kind == "imagenet":  # InceptionV3(...) built per call
                net = imagenet.inception_model(root / "weights")
                extract = lambda x: net(x)[0]  # noqa: E731
            else:
                net, _ = featurenet.load(root / "models" / "features")
                extract = lambda x: featurenet.pool(net.layers(x * 2 - 1)[-1])  # noqa: E731
            feats = []
            for side in ("original", "reconstruction"):
                acts = []
                for p in members:  # batch size 1, resized to 64 with scikit-image first (their get_activations)
                    img = read(getattr(p, side)).astype(np.float32)
                    if kind == "imagenet":
                        img = sk_resize(img, (64, 64)).astype(np.float32)
                    x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy()) / 255
                    with torch.no_grad():
                        f = extract(x)
                    acts.append(f.reshape(1, -1).numpy())
                feats.append(np.concatenate(acts).astype(np.float64))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                calculate_frechet_distance(feats[0].mean(0), np.cov(feats[0], rowvar=False),
                                           feats[1].mean(0), np.cov(feats[1], rowvar=False))

    clf = classification.Classifier(root / "models/bench/resnet8_none.pt")

    def classification_loop():
        for p in pairs:
            clf.predict(torch.from_numpy(read(p.reconstruction).copy()).permute(2, 0, 1).float()[None] / 255)

    timed("lpips", lpips_loop)
    timed("fid", fid_loop)
    timed("classification", classification_loop)
    out["all (one stream)"] = sum(out.values())  # their scripts run each metric family separately
    return out


# --- memory -------------------------------------------------------------------------------------

def memory_child(root: Path, batch: int) -> None:
    """Run the stage's loop on the pairs under ``root`` in this fresh process; print peak memory as JSON."""
    pairs = P.read_pairs(root / "data/attacks/bench", ATTACKS)
    bb = build_backbone(root, "pipeline")
    clf = classification.Classifier(root / "models/bench/resnet8_none.pt")
    rss_before = psutil.Process().memory_info().rss  # current, not peak: what the loop starts from
    tracemalloc.start()
    compute.evaluate(pairs, bb, clf, batch_size=batch, sink=lambda r: None, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"pairs": len(pairs), "tracemalloc_peak_mb": round(peak / 2**20, 2),
                      "peak_rss_mb": round(peak_rss / 2**20, 1), "rss_before_loop_mb": round(rss_before / 2**20, 1),
                      "loop_rss_growth_mb": round(max(0, peak_rss - rss_before) / 2**20, 1)}))


def memory(n: int, batch: int) -> dict:
    """Peak memory of the loop on n pairs, measured in a fresh process (inputs written beforehand)."""
    with tempfile.TemporaryDirectory() as tmp:
        make_project(Path(tmp), n)
        res = subprocess.run([sys.executable, "-m", "benchmarks.metrics_throughput", "--memory-child", tmp,
                              "--batch", str(batch), "--threads", str(torch.get_num_threads())],
                             capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=192, help="pairs for the throughput comparison")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the stage's metrics.threads)")
    parser.add_argument("--imagenet", action="store_true", help="also time the ImageNet backbones (random weights)")
    parser.add_argument("--imagenet-pairs", type=int, default=32)
    parser.add_argument("--memory-pairs", type=int, default=192, help="N for the N vs 10N memory comparison")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/metrics_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        memory_child(Path(args.memory_child), args.batch)
        return
    result = {"torch_threads": torch.get_num_threads(), "batch": args.batch, "throughput": []}
    cases = [("pipeline", args.pairs)] + ([("imagenet", args.imagenet_pairs)] if args.imagenet else [])
    for kind, n in cases:
        with tempfile.TemporaryDirectory() as tmp:
            root = make_project(Path(tmp), n)
            if kind == "imagenet":
                fake_imagenet_weights(root / "weights")
            n = len(P.read_pairs(root / "data/attacks/bench", ATTACKS))
            ours(root, kind, args.batch)  # warm-up: imports, first-call allocations and kernel choices
            a, b = ours(root, kind, args.batch), paper(root, kind)
        for metric in a:
            result["throughput"].append({"backbone": kind, "metric": metric, "pairs": n,
                                         "ours_pairs_per_s": round(n / a[metric], 1),
                                         "paper_pairs_per_s": round(n / b[metric], 1),
                                         "speedup": round(b[metric] / a[metric], 1)})
    result["memory"] = [memory(args.memory_pairs, args.batch), memory(10 * args.memory_pairs, args.batch)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"metrics throughput, {result['torch_threads']} threads, batch {args.batch} (pairs/s; speedup = ours/paper)")
    print(f"{'backbone':<10}{'metric':<18}{'pairs':>6}{'ours':>10}{'paper':>10}{'speedup':>9}")
    for r in result["throughput"]:
        print(f"{r['backbone']:<10}{r['metric']:<18}{r['pairs']:>6}{r['ours_pairs_per_s']:>10.1f}"
              f"{r['paper_pairs_per_s']:>10.1f}{r['speedup']:>9.1f}")
    print("peak memory of the stage's loop (fresh process per size)")
    for m in result["memory"]:
        print(f"{m['pairs']:>6} pairs: tracemalloc peak {m['tracemalloc_peak_mb']:.2f} MB, peak RSS {m['peak_rss_mb']:.0f} MB, "
              f"RSS growth during the loop {m['loop_rss_growth_mb']:.1f} MB")


if __name__ == "__main__":
    main()

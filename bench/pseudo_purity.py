"""``python -m bench.pseudo_purity``: how pure are a first model's pseudo-labels, and would an object filter help?

Self-training labels the pool with the model's sure pixels (p(mito) > ``SelfTrainConfig.fg``); v27 found
the weak first models sure of whole false objects, and the fear was that self-training teaches them as
mitochondria (v29: it does not; its background rule labels missed mitochondria background instead).
This re-scores the models a ``bench.initial_steps`` run saved (nothing is trained): on every slice of
the pool rows the run trained on (the rows self-training labels), the pixel precision and recall of
p > fg, and the share of the mitochondria that the background rule (``--bg``, ``--bg-share``) labels
background; the same on the scored rows. The pseudo-labeled objects (2D connected components, those
touching a labeled patch left out) are split into true ones (touching a mitochondrion of the ground
truth) and false ones, and each is given its mean penultimate feature vector (``UNet2D.features``).
The seed's labeled patches give references: each labeled mitochondrion's features and each 32 px
block of labeled background's. An object filter would keep an object whose nearest labeled
mitochondrion is nearer (cosine) than its nearest background block; the table gives what it keeps
of true and of false objects' pixels, and how well the margin ranks true above false objects
(pixel-weighted AUC).

    python -m bench.pseudo_purity --run bench_out/v29_noself_v24body --raw R --labels L
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy import ndimage as ndi

from ml.metrics import count_metrics
from ml.model import pad_to_multiple
from ml.self_training import SelfTrainConfig, background_threshold

from .al_protocol import seed_draw
from .rescore import add_arguments, open_or_exit
from .saved_runs import load_model

BLOCK = 32


@torch.no_grad()
def slice_outputs(model, image: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    """p(mito) (H, W) and the penultimate features (F, H, W) of one normalised image (a two-class model)."""
    x, (h, w) = pad_to_multiple(torch.from_numpy(image)[None, None].to(device), model.multiple)
    feats = model.features(x)
    prob = torch.softmax(model.head(feats), 1)[0, 1, :h, :w]
    return prob.cpu().numpy(), feats[0, :, :h, :w].cpu().numpy()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-8)


def object_means(objects: np.ndarray, n: int, feats: np.ndarray) -> np.ndarray:
    """(n, F) unit mean feature of each labeled object 1..n."""
    if n == 0:
        return np.zeros((0, feats.shape[0]), np.float32)
    index = np.arange(1, n + 1)
    return _unit(np.stack([ndi.mean(f, objects, index) for f in feats], 1))


def references(feats: np.ndarray, truth: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Unit features of the labeled mitochondria in ``box`` and of its background blocks (>= half background)."""
    y0, y1, x0, x1 = box
    f, t = feats[:, y0:y1, x0:x1], truth[y0:y1, x0:x1]
    objects, n = ndi.label(t)
    fg = object_means(objects, n, f)
    blocks = []
    for by in range(0, t.shape[0] - BLOCK + 1, BLOCK):
        for bx in range(0, t.shape[1] - BLOCK + 1, BLOCK):
            bg = ~t[by:by + BLOCK, bx:bx + BLOCK]
            if bg.mean() >= 0.5:
                blocks.append(f[:, by:by + BLOCK, bx:bx + BLOCK][:, bg].mean(1))
    return fg, _unit(np.array(blocks, np.float32).reshape(-1, f.shape[0]))


def nearest(a: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Cosine distance of each row of ``a`` to its nearest row of ``refs`` (2 where there is none)."""
    if len(refs) == 0:
        return np.full(len(a), 2.0)
    return 1.0 - (a @ refs.T).max(1)


def band_metrics(probs: list[np.ndarray], truths: list[np.ndarray], config: SelfTrainConfig) -> dict[str, float]:
    """Pixel precision, recall and IoU of p(mito) > ``config.fg`` over one row band of every slice (``probs``
    and ``truths`` by slice), and the share of the mitochondria's pixels that self-training's background rule
    would pseudo-label background."""
    cut = background_threshold([np.stack([1 - p, p]) for p in probs], config)
    tp = fp = fn = wrong_bg = 0
    for prob, truth in zip(probs, truths):
        pred = prob > config.fg
        tp, fp, fn = tp + int((pred & truth).sum()), fp + int((pred & ~truth).sum()), fn + int((truth & ~pred).sum())
        wrong_bg += int((truth & (1 - prob > cut)).sum())
    return {**count_metrics(tp, fp, fn), "mito_as_background": wrong_bg / max(tp + fn, 1), "background_cut": cut}


def model_purity(model, data, patches, config: SelfTrainConfig, device) -> dict:
    """Pixel counts of true and false pseudo-labeled objects, all and kept by the filter, plus their scores."""
    rows = data.split_y
    per_z = {}
    for p in patches:
        per_z.setdefault(p.z, []).append((p.y, p.y + p.size, p.x, p.x + p.size))
    outs, ref_fg, ref_bg = {}, [], []
    for z in range(data.image.shape[0]):
        prob, feats = slice_outputs(model, data.image[z, :rows], device)
        truth = data.mask[z, :rows] > 0
        outs[z] = (prob, feats, truth)
        for box in per_z.get(z, []):
            a, b = references(feats, truth, box)
            ref_fg.append(a)
            ref_bg.append(b)
    ref_fg, ref_bg = np.concatenate(ref_fg), np.concatenate(ref_bg)
    counts = dict.fromkeys(("true_px", "false_px", "true_kept_px", "false_kept_px", "true_objects", "false_objects",
                            "true_kept", "false_kept"), 0)
    margins = []
    for z, (prob, feats, truth) in outs.items():
        objects, n = ndi.label(prob > config.fg)
        if n == 0:
            continue
        labeled = np.zeros_like(truth)
        for y0, y1, x0, x1 in per_z.get(z, []):
            labeled[y0:y1, x0:x1] = True
        index = np.arange(1, n + 1)
        size = ndi.sum(np.ones_like(truth), objects, index)
        is_true = ndi.maximum(truth, objects, index) > 0
        skip = ndi.maximum(labeled, objects, index) > 0
        means = object_means(objects, n, feats)
        margin = nearest(means, ref_bg) - nearest(means, ref_fg)     # > 0: nearer a labeled mitochondrion
        for k in np.flatnonzero(~skip):
            kind = "true" if is_true[k] else "false"
            counts[f"{kind}_px"] += int(size[k])
            counts[f"{kind}_objects"] += 1
            if margin[k] > 0:
                counts[f"{kind}_kept_px"] += int(size[k])
                counts[f"{kind}_kept"] += 1
            margins.append((float(margin[k]), bool(is_true[k]), int(size[k])))
    slices = range(data.image.shape[0])
    scored = [slice_outputs(model, data.image[z, rows:], device)[0] for z in slices]
    return {"counts": counts, "auc": _weighted_auc(margins), "references": [len(ref_fg), len(ref_bg)],
            "trained_rows": band_metrics([o[0] for o in outs.values()], [o[2] for o in outs.values()], config),
            "scored_rows": band_metrics(scored, [data.mask[z, rows:] > 0 for z in slices], config)}


def _weighted_auc(margins: list[tuple[float, bool, int]]) -> float | None:
    """Pixel-weighted chance that a true object's margin exceeds a false one's (ties count half)."""
    t = [(m, s) for m, ok, s in margins if ok]
    f = [(m, s) for m, ok, s in margins if not ok]
    if not t or not f:
        return None
    tm, ts = np.array(t).T
    fm, fs = np.array(f).T
    wins = (ts[:, None] * fs[None, :] * ((tm[:, None] > fm[None, :]) + 0.5 * (tm[:, None] == fm[None, :]))).sum()
    return float(wins / (ts.sum() * fs.sum()))


def summarise(c: dict) -> dict:
    """Shares of the object counts: false objects' part of the pseudo-labels, and what the filter keeps."""
    total = c["true_px"] + c["false_px"]
    return {"false_px_share": c["false_px"] / max(total, 1),
            "true_kept_share": c["true_kept_px"] / max(c["true_px"], 1),
            "false_kept_share": c["false_kept_px"] / max(c["false_px"], 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pseudo_purity", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--fg", type=float, default=SelfTrainConfig.fg, help="pseudo-label threshold on p(mito)")
    p.add_argument("--bg", type=float, default=SelfTrainConfig.bg, help="... and on p(background)")
    p.add_argument("--bg-share", type=float, default=SelfTrainConfig.bg_share,
                   help="... background on only this share of the pixels predicted so, the surest")
    args = p.parse_args(argv)
    try:
        config = SelfTrainConfig(fg=args.fg, bg=args.bg, bg_share=args.bg_share)
    except ValueError as exc:
        p.exit(2, f"error: {' '.join(str(exc).split())}\n")
    run, data, device = open_or_exit(p, args)
    rows = {}
    print(f"| seed | p > {args.fg:g} on the rows trained on: precision / recall | on the rows scored | "
          "mitochondria pixels pseudo-labeled background (trained / scored rows) | false objects' share of the "
          "pseudo-labels | filter keeps: true / false objects' pixels | AUC (pixel-weighted) | references fg / bg |"
          "\n|" + "---|" * 8)
    for seed, path in run.paths.items():
        r = model_purity(load_model(path, run.proto, device), data, seed_draw(data, run.proto, seed).patches, config,
                         device)
        r.update(summarise(r["counts"]))
        rows[str(seed)] = r
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        a, b = r["trained_rows"], r["scored_rows"]
        print(f"| {seed} | {a['precision']:.3f} / {a['recall']:.3f} | {b['precision']:.3f} / {b['recall']:.3f} | "
              f"{a['mito_as_background']:.1%} / {b['mito_as_background']:.1%} | {r['false_px_share']:.0%} | "
              f"{r['true_kept_share']:.0%} / {r['false_kept_share']:.0%} | {auc} | "
              f"{r['references'][0]} / {r['references'][1]} |", flush=True)
    share = "" if args.bg_share == 1 else f"_bgshare{args.bg_share:g}"
    out = run.folder / f"pseudo_purity_steps{run.steps}{share}.json"
    out.write_text(json.dumps({"run": str(run.folder), "fg": args.fg, "bg": args.bg, "bg_share": args.bg_share,
                               "models": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

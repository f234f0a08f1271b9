"""Can inference alone rescue a bad initial model? (issue 8, initial-model sd)

Reads the initial models a quick-protocol run saved (``<run>/work/initial_seed<N>.pt``) and
prints, per seed: precision / recall / IoU on the pool half and on the test half at 0.5, the
test IoU at the threshold chosen on the protocol's validation patches, at the threshold that
makes the predicted foreground share of the pool half equal to the labeled share of the
seed's 20 patches (prior matching, needs no extra label), and with test-time augmentation
(the mean of the 8 rotations / flips, ``--tta``). Prints numbers; asserts nothing. Slices are
predicted whole (as the app segments), so test IoUs differ slightly from the protocol's, which
predicts the test half alone (0.385 against 0.390 for v13's seed 2).

    python -m bench.initial_models --run bench_out/v7_context [--tta] [--base 16]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ml.infer import predict_image
from ml.model import UNet2D

from .al_protocol import QUICK, load_data, seed_draw

VNC = "../shared/data/vnc/stack1"
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.count_nonzero(pred | truth)
    return float(np.count_nonzero(pred & truth) / union) if union else 1.0


def _pr(pred: np.ndarray, truth: np.ndarray) -> str:
    tp = np.count_nonzero(pred & truth)
    return (f"precision {tp / max(1, np.count_nonzero(pred)):.3f} recall {tp / max(1, np.count_nonzero(truth)):.3f} "
            f"IoU {_iou(pred, truth):.3f}")


def _prob(model: UNet2D, image: np.ndarray) -> np.ndarray:
    return predict_image(model, np.ascontiguousarray(image), tile=QUICK.eval_tile, batch_size=4,
                         device=torch.device("cpu"))["prob"][1]


def tta_prob(model: UNet2D, image: np.ndarray) -> np.ndarray:
    """Foreground probability averaged over the 8 rotations / flips of the slice."""
    total = np.zeros(image.shape, np.float64)
    for k in range(4):
        for flip in (False, True):
            view = np.rot90(image, k)[:, ::-1] if flip else np.rot90(image, k)
            p = _prob(model, view)
            total += np.rot90(p[:, ::-1] if flip else p, -k)
    return (total / 8).astype(np.float32)


def report_seed(data, model: UNet2D, seed: int, tta: bool = False) -> dict[str, float]:
    """One seed's numbers (see the module docstring)."""
    draw = seed_draw(data, QUICK, seed)
    val, patches = draw.val, draw.patches
    slices = sorted({p.z for p in val} | set(data.eval_z))
    prob = {z: _prob(model, data.image[z]) for z in slices}
    s = data.split_y
    crop = lambda a, p: a[p.window[1:]].ravel()  # noqa: E731   (a: one slice, so the patch's (y, x) part)
    val_p = np.concatenate([crop(prob[p.z], p) for p in val])
    val_t = np.concatenate([crop(data.mask[p.z], p) > 0 for p in val])
    pool_p = np.stack([prob[z][:s] for z in data.eval_z])
    pool_t = data.mask[data.eval_z, :s] > 0
    test_p = np.stack([prob[z][s:] for z in data.eval_z])
    test_t = data.mask[data.eval_z, s:] > 0
    labeled_share = float(np.mean([crop(data.mask[p.z], p) > 0 for p in patches]))
    t_val = float(THRESHOLDS[int(np.argmax([_iou(val_p > t, val_t) for t in THRESHOLDS]))])
    t_prior = float(np.quantile(pool_p, 1 - labeled_share))
    print(f"seed {seed}: pool half {_pr(pool_p > 0.5, pool_t)} | test half {_pr(test_p > 0.5, test_t)}")
    row = {"test@0.5": _iou(test_p > 0.5, test_t), f"test@val-best {t_val}": _iou(test_p > t_val, test_t),
           f"test@prior {t_prior:.3f}": _iou(test_p > t_prior, test_t)}
    if tta:
        row["test@0.5, TTA"] = _iou(np.stack([tta_prob(model, data.image[z])[s:] for z in data.eval_z]) > 0.5, test_t)
    print(f"  labeled share {labeled_share:.4f}, true share pool {pool_t.mean():.4f} / test {test_t.mean():.4f}; "
          + "; ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    out = {"0.5": row["test@0.5"], "val": row[f"test@val-best {t_val}"], "prior": row[f"test@prior {t_prior:.3f}"]}
    if tta:
        out["0.5 with TTA"] = row["test@0.5, TTA"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a bench.al --quick output folder (its work/ holds initial models)")
    p.add_argument("--raw", default=f"{VNC}/raw")
    p.add_argument("--labels", default=f"{VNC}/mitochondria")
    p.add_argument("--tta", action="store_true", help="also score with test-time augmentation (8x the inference)")
    p.add_argument("--base", type=int, default=QUICK.base, help="the run's model width (its bench.al --base)")
    args = p.parse_args()
    torch.set_num_threads(2)
    data = load_data(args.raw, args.labels, QUICK)
    rows = []
    for path in sorted(Path(args.run, "work").glob("initial_seed*.pt")):
        model = UNet2D(base=args.base, depth=QUICK.depth, dropout=QUICK.dropout)
        model.load_state_dict(torch.load(path, map_location="cpu"))
        rows.append(report_seed(data, model.eval(), int(path.stem.removeprefix("initial_seed")), args.tta))
    for key in rows[0]:
        v = np.array([r[key] for r in rows])
        print(f"threshold {key}: test IoU mean {v.mean():.3f} sd {v.std():.3f} ({' / '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()

"""``python -m bench.z_consensus``: what does mixing a slice's prediction with its neighbours' do to a model?

The U-Net predicts each slice alone; ``ml.z_consensus`` mixes a slice's probabilities with the slices
above and below ([w, 1 - 2w, w]) where a prediction is read. This re-scores the models a
``bench.initial_steps`` run saved (nothing is trained) over every slice of the scored rows, at each
``--weights`` value (0 = each slice alone), and prints per seed the IoU, precision and recall of
p(mito) > 0.5; the last column pair is the paired gain of each weight over 0. It also prints what the
kernel costs the truth itself: the ground truth mixed so and thresholded at 0.5, against itself.
Writes ``--run``/z_consensus_steps<N>.json (``_w<weights>`` added for other ``--weights``).

    python -m bench.z_consensus --run bench_out/v24_dev_halves_self_anchor05_inpaint_check --raw R --labels L
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from ml.metrics import count_metrics
from ml.z_consensus import check_weight, smooth_z

from .rescore import add_arguments, open_or_exit
from .saved_runs import fg_prob, load_model

WEIGHTS = (0.0, 0.15, 0.25, 1 / 3)


def weight_scores(prob: np.ndarray, truth: np.ndarray, weights) -> dict[str, dict[str, float]]:
    """IoU, precision and recall of ``prob`` (Z, H, W) mixed along z by each weight, > 0.5, against ``truth``."""
    out = {}
    for w in weights:
        pred = smooth_z(prob, w, axis=0) > 0.5
        out[f"{w:.3f}"] = count_metrics(int((pred & truth).sum()), int((pred & ~truth).sum()),
                                        int((truth & ~pred).sum()))
    return out


def _weights(text: str) -> tuple[float, ...]:
    try:
        values = tuple(check_weight(float(v)) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return (0.0, *dict.fromkeys(v for v in values if v != 0.0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.z_consensus", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--weights", type=_weights, default=WEIGHTS,
                   help="comma-separated neighbour weights in [0, 0.5) (0 is always scored)")
    args = p.parse_args(argv)
    run, data, device = open_or_exit(p, args)
    slices = range(data.image.shape[0])
    truth = np.stack([data.mask[z, data.split_y:] > 0 for z in slices])
    keys = [f"{w:.3f}" for w in args.weights]
    kernel = weight_scores(truth.astype(np.float32), truth, args.weights)
    print("the truth mixed and thresholded, IoU with itself: "
          + ", ".join(f"w {k}: {v['iou']:.3f}" for k, v in kernel.items()))
    print("| seed | " + " | ".join(f"w {k}: IoU (precision / recall)" for k in keys) + " | gain over w 0 |\n|"
          + "---|" * (len(keys) + 2))
    rows = {}
    for seed, path in run.paths.items():
        model = load_model(path, run.proto, device)
        prob = np.stack([fg_prob(model, data.scored(z), run.proto, device) for z in slices])
        r = rows[str(seed)] = weight_scores(prob, truth, args.weights)
        cells = " | ".join(f"{r[k]['iou']:.3f} ({r[k]['precision']:.3f} / {r[k]['recall']:.3f})" for k in keys)
        gains = " ".join(f"{r[k]['iou'] - r[keys[0]]['iou']:+.3f}" for k in keys[1:])
        print(f"| {seed} | {cells} | {gains} |", flush=True)
    for k in keys:
        ious = [r[k]["iou"] for r in rows.values()]
        print(f"w {k}: mean IoU {np.mean(ious):.3f}, sd {np.std(ious):.3f}")
    named = "" if tuple(args.weights) == WEIGHTS else "_w" + "-".join(f"{w:g}" for w in args.weights[1:])
    out = run.folder / f"z_consensus_steps{run.steps}{named}.json"
    out.write_text(json.dumps({"run": str(run.folder), "weights": list(args.weights), "kernel_on_truth": kernel,
                               "models": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

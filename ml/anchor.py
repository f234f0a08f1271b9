"""The pull toward where a training run started (L2-SP), and which runs get it.

A pre-trained body holds what the user's own volume taught it; a few labeled patches can carry
it far from that. ``Anchor`` holds it back each step; ``start_anchor`` is the one answer to how
strongly a new run is held, for the app's training jobs and ``python -m ml train`` alike.
"""
from __future__ import annotations

import torch
from torch import nn

#: The pull a new model gets toward the pre-trained body it starts from (``Anchor``) when it
#: self-trains: it steadied 20-patch models at no cost (BENCHMARKS v19), lifted the quick
#: protocol's first models by 0.067 with nothing lost by the AL rounds after them, and still
#: gained 0.016 at 100 patches (v20); on fresh seeds, first models 0.721 / sd 0.037 and the
#: default strategy's final model unchanged (v21).
PRETRAINED_ANCHOR = 0.5


def start_anchor(from_pretrained: bool, self_trains: bool) -> float:
    """``TrainConfig.anchor`` for a new run: pulled only from a pre-trained body, and only where it
    was measured to pay, a run with a self-training phase (patch labels, enough steps). Without one
    it cost: 0.018 at 20 patches (v18), 0.10 on the demo's first model of 9 strokes (v20). A warm
    start (a parent version) or a model from scratch is not held where it began."""
    return PRETRAINED_ANCHOR if from_pretrained and self_trains else 0.0


class Anchor:
    """L2-SP, decoupled like AdamW's decay: each step moves every body weight ``lr * strength`` of
    the way back to where the run started, so a few patches cannot carry a pre-trained body far
    from what pre-training taught it. The new head (``head.``) is not held. Off in ``TrainConfig``;
    the app and the CLI set it by ``start_anchor``."""

    def __init__(self, model: nn.Module, strength: float):
        self.strength = float(strength)
        self.pairs = [(p, p.detach().clone()) for name, p in model.named_parameters()
                      if p.requires_grad and not name.startswith("head.")]

    @torch.no_grad()
    def apply(self, lr: float) -> None:
        for p, start in self.pairs:
            p.lerp_(start, min(1.0, lr * self.strength))

"""The active-learning benchmark protocol: parameters, data split, candidate pools, evaluation.

An oracle plays the expert: the volume is split halfway along y into a pool half (patches
are "labeled" by copying the ground truth) and a test half (never used for tuning). Every
strategy of a seed starts from the same m initial patches and the same initial model, so
curves differ only by what the strategy picked. Validation (best-checkpoint keeping) uses
a few held-out pool patches that no strategy may pick.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ml.active import Patch, PatchScores, select
from ml.active.strategies import MODEL_FREE
from ml.io.normalize import normalize
from ml.slice_context import with_radius
from ml.z_consensus import WEIGHT


@dataclass(frozen=True)
class Protocol:
    """Everything that defines one benchmark run (stored in summary.json)."""

    name: str
    patch: int = 128              # labeled patch side (px)
    pool_stride: int = 64         # grid stride of candidate patches in the pool half
    pool_size: int = 1000         # candidates scored per round (fresh seeded subset of the grid)
    m: int = 20                   # initial patches
    initial: str = "random"       # how they are picked: random, or a model-free strategy on the new model's features
    k: int = 20                   # patches added per round
    rounds: int = 4
    max_overlap: float = 0.25     # candidates more than this fraction labeled are excluded
    val_patches: int = 16         # held-out pool patches: full supervision's plateau check
    init_steps: int = 1000        # initial model (shared by all strategies of a seed)
    init_train_seed: int = 0      # its training seed (head, crop order, pseudo-label windows) = the draw's seed + this
    round_steps: int = 250        # warm-start fine-tuning per round (cosine decay within)
    lr: float = 3e-3
    round_lr: float = 1.5e-3
    ema: float = 0.99             # weight averaging: the model of a round is the EMA of its steps
    init_head_steps: int = 0      # the initial model's head trained alone first (LP-FT; bench.initial_steps)
    init_anchor: float = 0.0      # pull toward the pre-trained body of a model that starts from it (L2-SP)
    zoom: float = 0.0             # crops zoomed by up to 1 + zoom either way, in every training (TrainConfig.zoom)
    balance: float = 1.0          # crop centres per class, in every training (TrainConfig.balance: 1 even, 0 by pixels)
    cpu_bf16: bool = False        # bf16 autocast in every training, on a CPU with native bf16 (TrainConfig)
    batch: int = 8
    crop: int = 128
    base: int = 8
    depth: int = 4
    dropout: float = 0.1
    z_radius: int = 0             # slices either side the model reads as input channels (ml.slice_context; 0: 2D)
    mc_passes: int = 8
    self_train: bool = False      # pseudo-labels of the pool half (ml.self_training): the initial model gets
    self_train_steps: int = 500   # ... this many more steps with them; a round mixes those of the model it starts from
    self_train_fg: float | None = None  # ... mitochondria pseudo-labeled where p > this (None: the app's SelfTrainConfig.fg)
    self_train_rounds: int = 1    # ... in this many rounds, the pool labeled again before each (SelfTrainConfig.rounds)
    self_train_bg_share: float = 1.0  # ... background on the surest share of the pixels predicted so (.bg_share)
    self_train_z: float = 0.0     # ... a window read with the slices above and below (.z_consensus)
    score_context: bool = False   # score candidates with the model's receptive radius of real image around them
    score_z: float = 0.0          # score candidates in z consensus by this weight (ml.active.consensus; 0: each alone)
    eval_slices: int = 4          # test-half slices scored (same evenly spaced subset for everyone)
    z_consensus: float = WEIGHT   # scored again as the app reads a prediction (``iou_z``): mixed with its neighbours
    eval_tile: int = 512
    full_factor: float = 1.5      # full supervision: one cosine schedule of this many times the AL steps,
    full_chunk: int = 300         # ... then chunks of extra steps while the validation IoU still improves
    full_max_factor: float = 3.0  # ... up to this many times the longest AL run's steps in all
    full_tol: float = 0.005       # plateau: best validation IoU improved by less than this ...
    full_patience: int = 2        # ... in this many chunks in a row
    pretrain: str = "heldout"     # none | heldout (stack 2 + pool half) | transductive (the whole volume)
    pretrain_steps: int = 1500    # self-supervised steps (ml.pretrain), run once, shared by every seed
    pretext: str = "inpaint"      # its task (bench.al_pretrain.PRETEXTS): inpaint (ml.pretrain's), denoise, inpaint60
    pretrain_seed: int = 0        # its seed (initial weights, crops, masks): another seed is another run of one recipe
    pretrain_bf16: bool = False   # its steps in bf16 on a CPU with native bf16 (PretrainConfig.cpu_bf16)
    full_seeds: int = 1           # seeds given a full-supervision reference (costly)
    dev: bool = False             # the dev split: the pool half alone, its last rows scored (test half unread)
    dev_train_share: float = 0.75  # of the pool half's rows, the share the dev split trains on (the rest is scored)
    rf_trees: int = 50
    rf_max_pixels: int = 60_000   # labeled pixels sampled to fit the forest
    rf_every: int = 2             # RF evaluated every this many rounds (plus mid and final)
    strategies: tuple[str, ...] = ("random", "least_confidence", "weighted_balanced")  # the app's default last
    seeds: int = 3
    first_seed: int = 0           # seeds first_seed .. first_seed + seeds - 1 (fresh seeds check a choice made on 0-2)
    workers: int = 2

    @property
    def budgets(self) -> list[int]:
        """Labeled patches after each round 0..rounds."""
        return [self.m + r * self.k for r in range(self.rounds + 1)]

    @property
    def full_steps(self) -> int:
        """Length of full supervision's first (single-schedule) phase."""
        return max(self.al_steps, int(round(self.full_factor * self.al_steps)))

    @property
    def seed_range(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    def self_train_config(self):
        """The ``ml.self_training.SelfTrainConfig`` this run pseudo-labels with."""
        from ml.self_training import SelfTrainConfig

        fg = {} if self.self_train_fg is None else {"fg": self.self_train_fg}
        return SelfTrainConfig(rounds=self.self_train_rounds, bg_share=self.self_train_bg_share,
                               z_consensus=self.self_train_z, **fg)

    @property
    def mid_round(self) -> int:
        return self.rounds // 2

    @property
    def al_steps(self) -> int:
        """Training steps behind the final model of one AL run (initial + every round)."""
        return self.init_steps + self.rounds * self.round_steps

    def rf_rounds(self) -> list[int]:
        rounds = set(range(0, self.rounds + 1, max(1, self.rf_every)))
        return sorted(rounds | {self.mid_round, self.rounds})

    def init_recipe(self) -> dict:
        """How the initial model trains, as a run's summary records it (``bench.initial_steps``) and
        ``bench.ensemble`` compares it."""
        return {"lr": self.lr, "batch": self.batch, "ema": self.ema, "head_steps": self.init_head_steps,
                "anchor": self.init_anchor, "zoom": self.zoom, "balance": self.balance,
                "cpu_bf16": self.cpu_bf16}

    def check_init_recipe(self) -> None:
        """Refuse, with ``ml.train``'s own message, an initial-model recipe its training would refuse
        (in the command's process, before any worker starts)."""
        from ml.settings import check_settings
        from ml.train import TRAIN_RANGES

        as_trained = {("batch_size" if k == "batch" else k): v for k, v in self.init_recipe().items()}
        check_settings(as_trained, TRAIN_RANGES, "training setting")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(budgets=self.budgets, mid_budget=self.budgets[self.mid_round], al_steps=self.al_steps,
                 full_steps=self.full_steps)
        return d


#: 23-30 min on 2 CPU cores for 3 seeds (measured runs: docs/BENCHMARKS.md).
QUICK = Protocol(name="quick")
#: The seed's full protocol, for a GPU.
FULL = Protocol(name="full", pool_stride=64, pool_size=2000, m=20, k=20, rounds=25, init_steps=2000,
                round_steps=200, base=16, eval_slices=0, full_seeds=3, rf_every=5,
                strategies=("random", "entropy", "least_confidence", "bald", "bald_diverse", "hybrid",
                            "coreset", "balanced", "weighted_balanced"),
                pretrain_steps=5000, seeds=3, workers=1, rf_max_pixels=200_000, rf_trees=100)
#: Seconds on CPU: the whole pipeline on a tiny synthetic volume, for tests.
TINY = Protocol(name="tiny", patch=32, pool_stride=32, pool_size=24, m=3, k=2, rounds=2, val_patches=2,
                init_steps=4, round_steps=2, batch=2, crop=32, base=4, depth=2, mc_passes=2, eval_slices=2,
                eval_tile=64, pretrain_steps=3, self_train_steps=3, full_factor=1.0, full_chunk=2, full_max_factor=1.5, rf_trees=5, rf_max_pixels=2000, rf_every=1,
                strategies=("random", "bald"), seeds=1, workers=2)
PRESETS = {"quick": QUICK, "full": FULL, "tiny": TINY}


def with_overrides(proto: Protocol, **changes: Any) -> Protocol:
    """A copy with the given fields replaced (None values ignored)."""
    return replace(proto, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class BenchData:
    """Normalised volume and 0/1 mask in memory, plus the pool/test split and the eval slices."""

    image: np.ndarray             # float32 (Z, Y, X) in [0, 1]
    mask: np.ndarray              # uint8 (Z, Y, X), 1 = mitochondria
    split_y: int                  # pool half = y < split_y, test half = y >= split_y
    eval_z: list[int] = field(default_factory=list)
    z_radius: int = 0             # slices either side a model reads (Protocol.z_radius): what ``seen`` stacks

    def seen(self, volume: Any) -> Any:
        """``volume`` as the protocol's model reads it: itself, or each slice with its neighbours."""
        return with_radius(volume, self.z_radius)

    @property
    def pool_input(self) -> Any:
        """The pool side as the model reads it (``seen(pool)``): what training and scoring crop from."""
        return self.seen(self.pool)

    @property
    def pool_shape(self) -> tuple[int, int, int]:
        z, _, x = self.image.shape
        return (z, self.split_y, x)

    @property
    def pool(self) -> np.ndarray:
        """The pool side's image (rows y < ``split_y``): all that training and picking may see."""
        return self.image[:, :self.split_y]

    def scored(self, z: int) -> np.ndarray:
        """Slice ``z``'s scored rows (y >= ``split_y``) as the model reads them: what it predicts to be scored."""
        return self.seen(self.image)[z, self.split_y:]


def load_data(raw: str, labels: str, proto: Protocol, dataset: str | None = None,
              labels_dataset: str | None = None) -> BenchData:
    """Read raw + ground truth (any ml.io format), normalise by the 1/99.5 percentiles, split.

    With ``proto.dev`` the test half is dropped and the pool half split again (rows 0..3/4 | 3/4..1 by
    default, ``dev_train_share``), so a choice can be measured with the protocol's own training without
    reading the test half.
    """
    from ml.io.readers import open_labels, open_volume

    volume = open_volume(raw, dataset=dataset)
    truth = open_labels(labels, dataset=labels_dataset)
    if tuple(truth.shape) != tuple(volume.shape):
        raise ValueError(f"labels shape {truth.shape} differs from raw shape {volume.shape}")
    lo, hi = volume.percentiles()
    zdim, h, w = volume.shape
    check_size(volume.shape, proto)
    image = np.empty(volume.shape, np.float32)
    mask = np.empty(volume.shape, np.uint8)
    for z in range(zdim):
        image[z] = normalize(volume[z], lo, hi)
        mask[z] = truth[z] != 0
    eval_z = eval_slices(zdim, proto.eval_slices)
    if proto.dev:                                     # the test half is never kept
        image, mask = image[:, :h // 2], mask[:, :h // 2]
    return BenchData(image, mask, pool_rows(h, proto), eval_z, proto.z_radius)


def eval_slices(zdim: int, n: int) -> list[int]:
    """The ``n`` evenly spaced slices scored, ends excluded (``n <= 0`` or ``>= zdim``: all).

    One subset for every run, so runs compare on the same slices."""
    n = zdim if n <= 0 else min(zdim, n)
    return sorted({int(round(v)) for v in np.linspace(0, zdim - 1, n + 2)[1:-1]}) if n < zdim else list(range(zdim))


def pool_rows(height: int, proto: Protocol) -> int:
    """Rows y < this are the pool (training) side, the rest is scored: the halves, or the dev split's."""
    return dev_split(height, proto.dev_train_share) if proto.dev else height // 2


def check_size(shape: tuple, proto: Protocol) -> None:
    """The pool side of the split must hold a patch, or there is no candidate to draw."""
    rows = pool_rows(shape[1], proto)
    if min(rows, shape[2]) < proto.patch:
        raise ValueError(f"volume {tuple(shape)} is too small for {proto.patch}px patches above row {rows}")


def dev_split(height: int, train_share: float) -> int:
    """The dev split's row: ``train_share`` of the pool half. The default 3/4 is 384 of VNC's 1024 rows
    (``bench.pretrain``'s DEV_Y); 0.5 mirrors the protocol's halves at half the size (256)."""
    if not 0 < train_share < 1:
        raise ValueError(f"the dev split's training share must lie between 0 and 1, got {train_share}")
    return int(height // 2 * train_share)


def pool_grid(data: BenchData, proto: Protocol) -> list[Patch]:
    """Every grid patch lying fully inside the pool half."""
    from ml.active import candidate_pool

    return candidate_pool(data.image.shape, size=proto.patch, stride=proto.pool_stride, y_range=(0, data.split_y))


def validation_patches(data: BenchData, grid: list[Patch], proto: Protocol, seed: int) -> list[Patch]:
    """Held-out pool patches, half of them holding foreground so validation IoU means something."""
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(grid))
    has_fg = [i for i in order if data.mask[grid[i].z, grid[i].y:grid[i].y + grid[i].size,
                                            grid[i].x:grid[i].x + grid[i].size].any()]
    chosen = has_fg[:proto.val_patches // 2]
    chosen += [i for i in order if i not in set(chosen)][:proto.val_patches - len(chosen)]
    return [grid[i] for i in sorted(chosen)]


class LabelState:
    """What the oracle has labeled so far in one AL run (a pixel mask over the pool half)."""

    def __init__(self, data: BenchData, val: list[Patch], proto: Protocol):
        self.proto = proto
        self.labeled = np.zeros(data.pool_shape, bool)
        self.blocked = np.zeros(data.pool_shape, bool)
        for p in val:
            self.blocked[p.window] = True
        self.patches: list[Patch] = []

    def available(self, p: Patch) -> bool:
        win = p.window
        return not self.blocked[win].any() and self.labeled[win].mean() <= self.proto.max_overlap

    def add(self, patches: list[Patch]) -> None:
        for p in patches:
            self.labeled[p.window] = True
            self.patches.append(p)


def candidates(grid: list[Patch], state: LabelState, proto: Protocol, seed: int, rnd: int) -> list[Patch]:
    """This round's candidates: a fresh seeded subset of the available grid patches."""
    free = [p for p in grid if state.available(p)]
    if len(free) > proto.pool_size:
        idx = np.sort(np.random.default_rng([seed, rnd, 11]).choice(len(free), proto.pool_size, replace=False))
        free = [free[i] for i in idx]
    return free


def random_picks(cands: list[Patch], n: int, seed: int, rnd: int) -> list[Patch]:
    """The random strategy's picks (needs no model, so the RF baseline can replay them)."""
    dummy = np.zeros(len(cands))
    scores = PatchScores(dummy, dummy, dummy, dummy, np.zeros((len(cands), 1)))
    idx, _ = select("random", scores, n, seed=seed * 1000 + rnd)
    return [cands[i] for i in idx]


def initial_patches(data: BenchData, grid: list[Patch], state: LabelState, proto: Protocol, seed: int,
                    embed: Callable[[list[Patch]], np.ndarray] | None = None) -> list[Patch]:
    """The m starting patches of a seed (shared by every strategy and the RF baseline).

    ``proto.initial`` other than random picks them by that model-free strategy on ``embed(candidates)``, the new
    model's (pre-trained) features, as the app does when a user asks for it by name.
    """
    cands = candidates(grid, state, proto, seed, 0)
    if proto.initial == "random":
        return random_picks(cands, proto.m, seed, 0)
    if proto.initial not in MODEL_FREE or embed is None:
        raise ValueError(f"initial={proto.initial!r} needs a model-free strategy ({', '.join(sorted(MODEL_FREE))}) "
                         "and an embed function")
    emb = np.asarray(embed(cands))
    zero = np.zeros(len(cands))
    idx, _ = select(proto.initial, PatchScores(zero, zero, zero, zero, emb), proto.m, seed=seed)
    return [cands[i] for i in idx]


@dataclass
class SeedDraw:
    """What a seed draws before any model: the candidate grid, its held-out validation patches, and the
    label state holding its m first patches (``patches``)."""

    grid: list[Patch]
    val: list[Patch]
    state: "LabelState"
    patches: list[Patch]


def seed_draw(data: BenchData, proto: Protocol, seed: int,
              embed: Callable[[list[Patch]], np.ndarray] | None = None) -> SeedDraw:
    """The seed's draw, the one way every task and re-scoring tool replays it (so they see the same patches)."""
    grid = pool_grid(data, proto)
    val = validation_patches(data, grid, proto, seed)
    state = LabelState(data, val, proto)
    patches = initial_patches(data, grid, state, proto, seed, embed)
    state.add(patches)
    return SeedDraw(grid, val, state, patches)


def random_sequence(data: BenchData, proto: Protocol, seed: int,
                    embed: Callable[[list[Patch]], np.ndarray] | None = None) -> list[list[Patch]]:
    """Patches labeled at each budget by the random strategy (round 0 = initial), replayed without a model."""
    draw = seed_draw(data, proto, seed, embed)
    grid, state = draw.grid, draw.state
    out = [list(state.patches)]
    for rnd in range(1, proto.rounds + 1):
        state.add(random_picks(candidates(grid, state, proto, seed, rnd), proto.k, seed, rnd))
        out.append(list(state.patches))
    return out

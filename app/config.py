"""App configuration from environment variables (12-factor), overridable in code and tests.

One ``Config`` object travels everywhere (services, routes, jobs); background processes
rebuild it from the environment, so every setting has an ``APP_*`` variable.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ml.z_consensus import WEIGHT, check_weight

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_BACKENDS = ("diskcache", "celery")
DEVICES = ("auto", "cpu", "cuda")
#: JSON-object settings kept in ``Config.extra``: (variable, key), each checked against its ml ranges when
#: the config is read (``_check_ml_settings``).
JSON_SETTINGS = (("APP_MODEL", "model"), ("APP_TRAIN", "train"), ("APP_PRETRAIN", "pretrain"), ("APP_LIVE", "live"),
                 ("APP_SELF_TRAIN", "self_train"))
#: U-Net arguments APP_MODEL cannot set: the data gives them (the project's classes; the input channels are the
#: slices a model reads, set by APP_MODEL's ``z_radius``)
DATA_ARCH = ("in_channels", "n_classes")
DEV_SECRET = "activeseg-dev"
MIN_SECRET = 16
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _default_roots(workspace: Path) -> list[Path]:
    roots = [workspace / "data"]
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        roots.append(shared)
    return roots


@dataclass(frozen=True)
class Config:
    workspace: Path = Path("workspace")
    data_roots: tuple[Path, ...] = ()
    job_backend: str = "diskcache"
    redis_url: str = "redis://localhost:6379/0"
    max_upload_mb: int = 2048
    secret_key: str = DEV_SECRET     # signs session cookies; shared mode refuses this default
    demo: str = "synthetic"
    device: str = "auto"
    torch_threads: int = 0            # 0 = torch default (all cores); forked jobs always use 1
    auth_enabled: bool = False       # lab-shared mode: login required (app.auth)
    secure_cookies: bool = False     # session cookie only over HTTPS (behind a TLS proxy)
    tile_cache_mb: int = 256
    png_level: int = 0               # zlib level of grey tiles: 0 = fastest (EM noise barely compresses)
    demo_shape: tuple[int, int, int] = (16, 512, 512)
    pretrain_auto: bool = True       # pre-train every new volume by itself (APP_PRETRAIN_AUTO)
    z_consensus: float = WEIGHT      # a prediction's slice mixed with its neighbours' (APP_Z_CONSENSUS; 0 = off)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        ws = Path(self.workspace).expanduser().resolve()
        object.__setattr__(self, "workspace", ws)
        roots = self.data_roots or tuple(_default_roots(ws))
        object.__setattr__(self, "data_roots", tuple(Path(r).expanduser().resolve() for r in roots))
        if self.job_backend not in JOB_BACKENDS:
            raise ValueError(f"APP_JOB_BACKEND={self.job_backend!r}; use one of {JOB_BACKENDS}")
        if self.device not in DEVICES:
            raise ValueError(f"APP_DEVICE={self.device!r}; use one of {DEVICES}")
        if not 0 <= int(self.png_level) <= 9:
            raise ValueError("APP_PNG_LEVEL must be 0..9 (zlib level)")
        try:
            object.__setattr__(self, "z_consensus", check_weight(self.z_consensus))
        except ValueError as e:
            raise ValueError(f"APP_Z_CONSENSUS: {e}") from e
        if int(self.max_upload_mb) <= 0:
            raise ValueError("APP_MAX_UPLOAD_MB must be a positive number of megabytes")
        if self.auth_enabled and (self.secret_key == DEV_SECRET or len(self.secret_key) < MIN_SECRET):
            raise ValueError(f"APP_AUTH=1 needs APP_SECRET_KEY, a random string of at least {MIN_SECRET} characters "
                             "(e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))')")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb) * 1024 * 1024

    @property
    def device_preference(self) -> str | None:
        """Argument for ``ml.device.pick_device`` (None = CUDA when present)."""
        return None if self.device == "auto" else self.device

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Config":
        """Read ``APP_*`` variables (see docs/APP.md); keyword overrides win."""
        env = dict(os.environ if env is None else env)
        kw: dict = {}
        if "APP_WORKSPACE" in env:
            kw["workspace"] = Path(env["APP_WORKSPACE"])
        if env.get("APP_DATA_ROOTS"):
            kw["data_roots"] = tuple(Path(p) for p in env["APP_DATA_ROOTS"].split(os.pathsep) if p)
        for key, name, conv in (
            ("APP_JOB_BACKEND", "job_backend", str),
            ("REDIS_URL", "redis_url", str),
            ("APP_MAX_UPLOAD_MB", "max_upload_mb", int),
            ("APP_SECRET_KEY", "secret_key", str),
            ("APP_DEMO", "demo", str),
            ("APP_DEVICE", "device", str),
            ("APP_TORCH_THREADS", "torch_threads", int),
            ("APP_TILE_CACHE_MB", "tile_cache_mb", int),
            ("APP_PNG_LEVEL", "png_level", int),
            ("APP_Z_CONSENSUS", "z_consensus", float),
        ):
            if env.get(key):
                try:
                    kw[name] = conv(env[key])
                except ValueError as e:
                    raise ValueError(f"{key}={env[key]!r} is not a valid {conv.__name__}") from e
        if env.get("APP_DEMO_SHAPE"):
            kw["demo_shape"] = _parse_shape(env["APP_DEMO_SHAPE"])
        extra = {name: _parse_json(key, env[key]) for key, name in JSON_SETTINGS if env.get(key)}
        if extra:
            _check_ml_settings(extra)
            kw["extra"] = extra
        if env.get("APP_AUTH"):
            kw["auth_enabled"] = _parse_bool("APP_AUTH", env["APP_AUTH"])
        if env.get("APP_SECURE_COOKIES"):
            kw["secure_cookies"] = _parse_bool("APP_SECURE_COOKIES", env["APP_SECURE_COOKIES"])
        if env.get("APP_PRETRAIN_AUTO"):
            kw["pretrain_auto"] = _parse_bool("APP_PRETRAIN_AUTO", env["APP_PRETRAIN_AUTO"])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(kw) - known
        if unknown:
            raise TypeError(f"unknown config keys: {sorted(unknown)}")
        return cls(**kw)

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds this config in another process (Celery worker, spawn)."""
        return {
            "APP_WORKSPACE": str(self.workspace),
            "APP_DATA_ROOTS": os.pathsep.join(str(p) for p in self.data_roots),
            "APP_JOB_BACKEND": self.job_backend,
            "REDIS_URL": self.redis_url,
            "APP_MAX_UPLOAD_MB": str(self.max_upload_mb),
            "APP_DEVICE": self.device,
            "APP_DEMO": self.demo,
            "APP_TILE_CACHE_MB": str(self.tile_cache_mb),
            "APP_PNG_LEVEL": str(self.png_level),
            "APP_TORCH_THREADS": str(self.torch_threads),
            "APP_AUTH": "1" if self.auth_enabled else "0",
            "APP_SECRET_KEY": self.secret_key,
            "APP_SECURE_COOKIES": "1" if self.secure_cookies else "0",
            "APP_DEMO_SHAPE": ",".join(str(int(n)) for n in self.demo_shape),
            "APP_PRETRAIN_AUTO": "1" if self.pretrain_auto else "0",
            "APP_Z_CONSENSUS": repr(self.z_consensus),
            **{key: json.dumps(self.extra[name]) for key, name in JSON_SETTINGS if name in self.extra},
        }

    def with_(self, **changes) -> "Config":
        return replace(self, **changes)


def _parse_shape(text: str) -> tuple[int, int, int]:
    """'Z,Y,X' -> (Z, Y, X): the synthetic demo's size, as large as ``ml.synthetic`` can fill."""
    from ml.synthetic import check_shape

    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"APP_DEMO_SHAPE={text!r}: give three integers 'Z,Y,X', e.g. 16,512,512") from None
    try:
        check_shape(shape)
    except ValueError as exc:
        raise ValueError(f"APP_DEMO_SHAPE={text!r}: {exc}; e.g. 16,512,512") from None
    return shape  # type: ignore[return-value]


def _parse_bool(key: str, text: str) -> bool:
    """1/true/yes/on or 0/false/no/off (any case)."""
    word = text.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"{key}={text!r}; use 1 or 0 (or true/false, yes/no, on/off)")
    return word in TRUE_WORDS


def _parse_json(key: str, text: str) -> dict:
    """A JSON object of model/training/pre-training/live/self-training settings (APP_MODEL, APP_TRAIN, ...)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{key} must be a JSON object, e.g. {{\"base\": 8}}: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a JSON object, got {type(value).__name__}")
    return value


def _check_ml_settings(extra: dict) -> None:
    """Check APP_MODEL / APP_TRAIN / APP_PRETRAIN / APP_LIVE / APP_SELF_TRAIN against the ml settings' names and
    ranges when the config is read, so a bad value stops the start naming the variable, not a job later."""
    from ml.live import LIVE_RANGES
    from ml.model import ARCH_RANGES
    from ml.pretrained import PRETRAIN_RANGES
    from ml.self_training import SELF_TRAIN_RANGES
    from ml.settings import check_settings
    from ml.slice_context import RADIUS_RANGE
    from ml.train import TRAIN_RANGES

    ranges = {"model": {**{k: r for k, r in ARCH_RANGES.items() if k not in DATA_ARCH}, "z_radius": RADIUS_RANGE},
              "train": TRAIN_RANGES, "pretrain": PRETRAIN_RANGES, "live": LIVE_RANGES,
              "self_train": SELF_TRAIN_RANGES}
    for key, name in JSON_SETTINGS:
        if name in extra and name in ranges:
            try:
                check_settings(extra[name], ranges[name])
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None

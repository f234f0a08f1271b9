"""Callback registration: every panel module has ``register(app)``; modules not written yet are skipped."""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

PANELS = ("page", "data", "viewer", "painting", "live", "jobs", "active", "training", "results", "export", "effort", "guide")


def register_all(app) -> list[str]:
    """Register each panel's callbacks on ``app``; returns the panels registered."""
    done = []
    for name in PANELS:
        try:
            mod = importlib.import_module(f"callbacks.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"callbacks.{name}":
                raise
            log.info("callbacks.%s not present; skipped", name)
            continue
        mod.register(app)
        done.append(name)
    return done

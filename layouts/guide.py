"""The guided path: a compact step bar that marks what is done and names the next action.

Experts can ignore it (it never blocks a panel); a newcomer reads left to right.
"""
from __future__ import annotations

from typing import Any, Mapping

from dash import html

from layouts import ids

#: the right-hand tab a step's badge opens (Data and Paint live in the left and centre columns)
TAB_OF = {"train": "training", "review": "active", "segment": "results", "export": "export"}
#: (step, label, what to do next when it is the first step not done)
STEPS = (
    ("data", "Data", "Add a volume in the Data panel (TIFF stack, folder of slices, Zarr, HDF5 or MRC)."),
    ("paint", "Paint", "Paint a few strokes of every class on the slice: on the structure and around it."),
    ("train", "Train", "Train a first model in the Training tab; its prediction then shows on the slice."),
    ("review", "Review & suggest", "Check the prediction overlay, then press “Suggest patches” (Active learning) "
                                   "to see where labels help most; label them and train again."),
    ("segment", "Segment", "Segment the volume (Results tab) to count and measure the objects."),
    ("export", "Export", "Export the segmentation or the object table (Export tab) for Fiji, napari or Slicer."),
)
ALL_DONE = "All steps done: paint where the model is wrong, retrain, segment again."


def next_step(done: Mapping[str, bool]) -> str | None:
    """The first step not done (None when all are)."""
    return next((key for key, _, _ in STEPS if not done.get(key)), None)


def steps_bar(done: Mapping[str, bool]) -> list:
    """Badges for the steps (done: green with a tick; next: highlighted) and the next action's hint."""
    nxt = next_step(done)
    badges = []
    for i, (key, label, _) in enumerate(STEPS, start=1):
        state = "done" if done.get(key) else "next" if key == nxt else "todo"
        text = f"\u2713 {label}" if state == "done" else f"{i} {label}"
        colour = {"done": "bg-success", "next": "bg-primary", "todo": "bg-light text-dark border"}[state]
        badges.append(html.Span(text, className=f"badge {colour} me-1 guide-step guide-{state}",
                                id={"type": ids.GUIDE_STEP_TYPE, "index": key}, n_clicks=0,
                                title=f"{label}: {'done' if state == 'done' else 'open its panel'}",
                                style={"cursor": "pointer"}))
        if i < len(STEPS):
            badges.append(html.Span("\u2192", className="me-1 text-muted small"))
    hint = next((h for key, _, h in STEPS if key == nxt), ALL_DONE)
    return [html.Div(badges, className="d-inline"), html.Span(hint, id=ids.GUIDE_HINT, className="ms-2 small")]


def build() -> Any:
    return html.Div(steps_bar({}), id=ids.GUIDE, className="mb-2")

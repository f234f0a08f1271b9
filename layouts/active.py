"""Active-learning queue panel: pick a strategy, ask for patches, work through the ranked list."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids_panels as ids

DEFAULT_BATCH = 8
DEFAULT_PATCH = 128
STATUS_BADGE = {"todo": ("to do", "secondary"), "labeled": ("labeled", "success"), "skipped": ("skipped", "warning")}


def _strategy_dropdown(options: Sequence[dict]) -> Any:
    opts = [{"label": o["label"], "value": o["value"]} for o in options]
    return dcc.Dropdown(id=ids.AL_STRATEGY, options=opts, value=default_strategy(options), clearable=False)


def default_strategy(options: Sequence[dict]) -> str | None:
    """The option marked ``default`` (ml.active.strategies.DEFAULT_STRATEGY), else the first."""
    return next((o["value"] for o in options if o.get("default")), options[0]["value"] if options else None)


def build(strategy_options: Sequence[dict]) -> Any:
    """The panel; ``strategy_options`` are ``{"value", "label", "description", "default"}`` dicts."""
    descriptions = {o["value"]: o.get("description", "") for o in strategy_options}
    return dbc.Card(
        [
            dbc.CardHeader("Active learning: what to label next"),
            dbc.CardBody(
                [
                    dbc.Label("Strategy", html_for=ids.AL_STRATEGY),
                    _strategy_dropdown(strategy_options),
                    html.Small(descriptions.get(default_strategy(strategy_options), ""), id=ids.AL_STRATEGY_HELP,
                               className="text-muted d-block mb-2"),
                    dbc.Row(
                        [
                            dbc.Col([dbc.Label("Patches", html_for=ids.AL_BATCH),
                                     dbc.Input(id=ids.AL_BATCH, type="number", min=1, max=64, step=1,
                                               value=DEFAULT_BATCH)]),
                            dbc.Col([dbc.Label("Patch size (px)", html_for=ids.AL_PATCH),
                                     dbc.Input(id=ids.AL_PATCH, type="number", min=32, max=512, step=16,
                                               value=DEFAULT_PATCH)]),
                        ],
                        className="mb-2",
                    ),
                    dbc.ButtonGroup(
                        [
                            dbc.Button("Suggest patches", id=ids.AL_SUGGEST, color="primary"),
                            dbc.Button("Cancel", id=ids.AL_CANCEL, color="secondary", outline=True, disabled=True),
                        ],
                        className="mb-2",
                    ),
                    dbc.Progress(id=ids.AL_PROGRESS, value=0, striped=True, className="mb-1"),
                    html.Div(id=ids.AL_STATUS, className="small mb-1"),
                    dbc.Alert(id=ids.AL_MODEL_NOTE, color="info", is_open=False, className="small py-1"),
                    html.Div(id=ids.AL_QUEUE, className="al-queue"),
                    dcc.Store(id=ids.AL_ROUND),
                    dcc.Store(id=ids.NAV_REQUEST),
                ]
            ),
        ],
        className="mb-3",
    )


EMPTY_QUEUE = {
    "no volume": "Add a volume in the Data panel first.",
    "no labels": ("No suggestions yet. First paint a few strokes of every class and train a model: "
                  "suggestions are most useful once a model can say where it is unsure."),
    "ready": "No suggestions yet: press “Suggest patches” to see which patches to label next.",
}


def score_text(row: dict) -> str:
    """What a card says of its rank: the strategy's score, or that chance drew it (a random priority means
    nothing about the patch)."""
    return "random pick" if row.get("strategy") == "random" else f"score {row['score']:.3f}"


def queue_items(rows: Sequence[dict], empty: str = "ready") -> list[Any]:
    """One card per suggestion: thumbnail (served by /thumbs/<id>.png), rank, score, status, skip;
    without any, what to do first (``empty``: a key of EMPTY_QUEUE)."""
    if not rows:
        return [html.Div(EMPTY_QUEUE[empty], className="text-muted small")]
    items = []
    for r in rows:
        text, color = STATUS_BADGE.get(r["status"], (r["status"], "light"))
        items.append(
            dbc.Card(
                dbc.Row(
                    [
                        dbc.Col(
                            html.Img(src=f"/thumbs/{r['id']}.png?v={r.get('thumb_version', 0)}",
                                     alt=f"patch {r['rank']}", width=64, height=64,
                                     id={"type": ids.AL_GOTO_TYPE, "index": r["id"]},
                                     style={"cursor": "pointer", "imageRendering": "pixelated"},
                                     n_clicks=0),
                            width="auto",
                        ),
                        dbc.Col(
                            [
                                html.Div(f"#{r['rank']}  z={r['z']}  y={r['y']}  x={r['x']}", className="small"),
                                html.Div(score_text(r), className="small text-muted"),
                                dbc.Badge(text, color=color, className="me-1"),
                                dbc.Button("Skip", id={"type": ids.AL_SKIP_TYPE, "index": r["id"]}, size="sm",
                                           color="link", disabled=r["status"] != "todo", n_clicks=0),
                            ]
                        ),
                    ],
                    className="g-2 align-items-center",
                ),
                body=True,
                className="mb-1 p-1",
            )
        )
    return items

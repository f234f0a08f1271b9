"""Export panel: choose what and in which format; the file is built in the background, then downloaded.

Small files arrive through ``dcc.Download``; every export also gets a plain link to the
``/exports/<name>`` route, which streams files of any size.
"""
from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids_panels as ids
from layouts.format import file_size

#: what -> (label, formats offered); formats: tiff | ome-zarr | nrrd | csv | zip | pt
EXPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "segmentation": ("Segmentation (binary)", ("tiff", "ome-zarr", "nrrd")),
    "instances": ("Instance labels", ("tiff", "ome-zarr", "nrrd")),
    "labels": ("Sparse labels (painted)", ("tiff", "ome-zarr", "nrrd")),
    "objects": ("Object table", ("csv",)),
    "effort": ("Effort per patch (time, strokes)", ("csv",)),
    "patches": ("Labeled patches: image + mask TIFF pairs", ("zip",)),
    "checkpoint": ("Model checkpoint (active model)", ("pt",)),
}
FORMAT_LABELS = {"tiff": "TIFF (Fiji / ImageJ)", "ome-zarr": "OME-Zarr (zipped folder)", "nrrd": "NRRD (3D Slicer)",
                 "csv": "CSV", "zip": "ZIP of TIFF pairs", "pt": "PyTorch checkpoint (.pt)"}


def format_options(what: str | None) -> list[dict]:
    """Dropdown options of the formats offered for ``what``."""
    formats = EXPORTS.get(what or "", ("",))[1] if what in EXPORTS else ()
    return [{"label": FORMAT_LABELS[f], "value": f} for f in formats]


def export_link(href: str, name: str, n_bytes: int) -> Any:
    """A link to a finished export on the ``/exports/`` route (streamed, so any size works)."""
    return html.A(f"Download {name} ({file_size(n_bytes)})", href=href, download=name, className="small")


def build() -> Any:
    """The panel."""
    return dbc.Card(
        [
            dbc.CardHeader("Export"),
            dbc.CardBody(
                [
                    dbc.Label("What", html_for=ids.EXP_WHAT),
                    dcc.Dropdown(id=ids.EXP_WHAT, value="segmentation", clearable=False,
                                 options=[{"label": v[0], "value": k} for k, v in EXPORTS.items()]),
                    dbc.Label("Format", html_for=ids.EXP_FORMAT, className="mt-2"),
                    dcc.Dropdown(id=ids.EXP_FORMAT, value="tiff", clearable=False,
                                 options=format_options("segmentation")),
                    dbc.Button("Export", id=ids.EXP_RUN, color="primary", className="my-2"),
                    dbc.Progress(id=ids.EXP_PROGRESS, value=0, striped=True, className="mb-1"),
                    html.Div(id=ids.EXP_STATUS, className="small text-break"),
                    html.Div(id=ids.EXP_LINK, className="text-break"),
                    dcc.Download(id=ids.EXP_DOWNLOAD),
                ]
            ),
        ],
        className="mb-3",
    )

"""Data panel: projects, volumes (by server path or upload), volume facts, voxel size, classes."""
from __future__ import annotations

from typing import Any, Sequence

import dash_bootstrap_components as dbc
from dash import dcc, html

from layouts import ids


def _alert(id_: str) -> Any:
    return dbc.Alert(id=id_, is_open=False, dismissable=True, color="danger", className="small py-1 mt-1")


def volume_facts(info: dict | None) -> Any:
    """Shape, dtype and voxel size of the selected volume."""
    if not info:
        return html.Div("No volume selected.", className="text-muted small")
    z, y, x = info["shape"]
    vs = info.get("voxel_size")
    rows = [("shape (z, y, x)", f"{z} x {y} x {x}"), ("dtype", info["dtype"]),
            ("voxel size (nm)", " x ".join(f"{v:g}" for v in vs) if vs else "unknown"),
            ("source", info.get("source_path") or "generated")]
    if info.get("gt_path"):
        rows.append(("ground truth", "yes (for evaluation)"))
    return html.Table(html.Tbody([html.Tr([html.Td(k, className="text-muted pe-2"), html.Td(v, className="text-break")])
                                  for k, v in rows]), className="small mb-2")


def pretrain_status(text: str, tone: str = "muted") -> Any:
    """The selected volume's pre-training line (text made by callbacks.data.pretrain_text)."""
    return html.Span(text, className=f"text-{tone}")


def class_rows(classes: Sequence[dict]) -> Any:
    """Editable name + colour per class (pattern ids, index = class index)."""
    return [dbc.InputGroup([
        dbc.InputGroupText(str(i + 1), style={"width": "2.5rem"}),
        dbc.Input(id={"type": ids.CLASS_COLOR_TYPE, "index": i}, type="color", value=c["color"],
                  style={"maxWidth": "3rem"}, className="p-1"),
        dbc.Input(id={"type": ids.CLASS_NAME_TYPE, "index": i}, value=c["name"], debounce=True),
    ], size="sm", className="mb-1") for i, c in enumerate(classes)]


def sharing_box() -> Any:
    """Shared mode: the project's owner and who else sees it; the owner shares it here (hidden otherwise)."""
    return html.Div([
        html.Div(id=ids.SHARE_INFO, className="small text-muted mt-1"),
        dbc.InputGroup([dbc.Input(id=ids.SHARE_NAME, placeholder="user name"),
                        dbc.InputGroupText(dbc.Switch(id=ids.SHARE_EDIT, label="may edit", value=False,
                                                      className="mb-0")),
                        dbc.Button("Share", id=ids.SHARE_ADD, color="secondary"),
                        dbc.Button("Stop", id=ids.SHARE_REMOVE, color="secondary", outline=True,
                                   title="stop sharing with this user")],
                       size="sm", className="mt-1"),
        _alert(ids.SHARE_ALERT),
    ], id=ids.SHARE_BOX, hidden=True)


def sharing_text(info: dict | None) -> str:
    """"owner ann · shared with bob (read), carol (edit)" for the Data panel."""
    if not info:
        return ""
    owner = f"owner {info['owner']}" if info.get("owner") else "no owner (made in single-user mode): every user sees it"
    shares = ", ".join(f"{s['name']} ({'edit' if s['edit'] else 'read'})" for s in info.get("shares", []))
    return f"{owner} · {'shared with ' + shares if shares else 'not shared'}"


def build() -> Any:
    return dbc.Card([
        dbc.CardHeader("Data"),
        dbc.CardBody([
            dbc.Label("Project", html_for=ids.PROJECT_SELECT, className="small mb-0"),
            dcc.Dropdown(id=ids.PROJECT_SELECT, options=[], placeholder="select a project", clearable=False),
            dbc.InputGroup([dbc.Input(id=ids.PROJECT_NAME, placeholder="new project name"),
                            dbc.Button("Create", id=ids.PROJECT_CREATE, color="secondary")],
                           size="sm", className="mt-1"),
            _alert(ids.PROJECT_ALERT),
            sharing_box(),
            html.Hr(className="my-2"),
            dbc.Label("Volume", html_for=ids.VOLUME_SELECT, className="small mb-0"),
            dcc.Dropdown(id=ids.VOLUME_SELECT, options=[], placeholder="select a volume", clearable=False),
            html.Div(volume_facts(None), id=ids.VOLUME_INFO, className="mt-1"),
            dbc.Label("Add a volume by server path", className="small mb-0"),
            dbc.Input(id=ids.VOLUME_PATH, placeholder="/data/stack1/raw  or  file.tif / .zarr / .h5 / .mrc",
                      size="sm", debounce=False),
            dbc.InputGroup([dbc.Input(id=ids.VOLUME_DATASET, placeholder="dataset inside HDF5/Zarr (optional)"),
                            dbc.Button("Add", id=ids.VOLUME_ADD, color="primary")], size="sm", className="mt-1"),
            html.Div(id=ids.DATA_ROOTS_NOTE, className="text-muted small mt-1"),
            dcc.Upload(id=ids.VOLUME_UPLOAD, multiple=True,
                       children=html.Div(["Drop a volume file (or 2D slices) here, or ", html.A("choose files")]),
                       className="border border-secondary-subtle rounded text-center small p-2 mt-1"),
            dcc.Loading(_alert(ids.VOLUME_ALERT), type="dot"),
            dbc.Switch(id=ids.PRETRAIN_AUTO, value=True, className="small mt-1 mb-0",
                       label="Pre-train on new volumes (self-supervised)"),
            html.Div([html.Span("Pre-training:", className="text-muted me-1"),
                      html.Span(pretrain_status("no volume selected"), id=ids.PRETRAIN_STATUS),
                      dbc.Button("Pre-train", id=ids.PRETRAIN_START, size="sm", color="secondary", outline=True,
                                 disabled=True, className="ms-2 py-0")],
                     className="small d-flex flex-wrap align-items-center"),
            html.Hr(className="my-2"),
            dbc.Label("Voxel size (nm): z, y, x", className="small mb-0"),
            dbc.InputGroup([
                dbc.Input(id=ids.VOXEL_Z, type="number", min=0, placeholder="z"),
                dbc.Input(id=ids.VOXEL_Y, type="number", min=0, placeholder="y"),
                dbc.Input(id=ids.VOXEL_X, type="number", min=0, placeholder="x"),
                dbc.Button("Save", id=ids.VOXEL_SAVE, color="secondary"),
            ], size="sm"),
            html.Hr(className="my-2"),
            dbc.Label("Classes", className="small mb-0"),
            html.Div(id=ids.CLASS_LIST),
            dbc.InputGroup([dbc.Input(id=ids.CLASS_NEW_NAME, placeholder="new class name"),
                            dbc.Button("Add class", id=ids.CLASS_ADD, color="secondary")], size="sm"),
            dbc.Button("Save class names/colours", id=ids.CLASS_SAVE, size="sm", color="secondary",
                       outline=True, className="mt-1"),
            _alert(ids.CLASS_ALERT),
        ], className="p-2"),
    ])

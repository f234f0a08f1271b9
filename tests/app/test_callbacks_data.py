"""Data panel logic: projects, adding volumes (path inside data roots / upload), voxel size, classes."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from dash import no_update

from app.services import projects
from callbacks import data as cb
from layouts import ids


def data_url(payload: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(payload).decode()


def tiff_bytes(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, imagej=True, metadata={"axes": "ZYX"})   # as Fiji writes stacks
    return buf.getvalue()


def test_create_project_selects_it_and_clears_the_box(config):
    opts, sel, msg, is_open, name = cb.projects_view(config, ids.PROJECT_CREATE, "  Mito run 1 ", None)
    assert opts == [{"label": "Mito run 1", "value": sel}] and not is_open and name == ""


def test_duplicate_or_empty_project_name_is_a_clear_alert(config, project):
    *_, msg, is_open, name = cb.projects_view(config, ids.PROJECT_CREATE, "test project", project["id"])
    assert is_open and "already exists" in msg and name is no_update
    *_, msg, is_open, _ = cb.projects_view(config, ids.PROJECT_CREATE, "   ", project["id"])
    assert is_open and "name" in msg


def test_page_load_restores_the_stored_project_or_falls_back(config, project):
    other = projects.create_project(config, "other")
    assert cb.projects_view(config, ids.URL, None, other["id"])[1] == other["id"]
    assert cb.projects_view(config, ids.URL, None, 9999)[1] == project["id"]


def test_path_outside_the_data_roots_is_refused(config, project, tmp_path):
    outside = tmp_path / "secret.tif"
    outside.write_bytes(b"x")
    for path in (str(outside), "../secret.tif", "/etc/passwd"):
        opts, sel, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_ADD, project["id"], path, None,
                                                         None, None, None)
        assert is_open and color == "danger" and "outside the allowed data folders" in msg and opts == []


def test_symlink_escaping_a_data_root_is_refused(config, project, tmp_path):
    target = tmp_path / "private"
    target.mkdir()
    (config.data_roots[0] / "link").symlink_to(target)
    with pytest.raises(projects.UserError, match="outside"):
        projects.check_data_path(config, "link")


def test_missing_path_and_empty_path_messages(config, project):
    *_, msg, is_open, _ = cb.volumes_view(config, ids.VOLUME_ADD, project["id"], "nope.tif", None, None, None, None)
    assert is_open and "does not exist" in msg
    *_, msg, is_open, _ = cb.volumes_view(config, ids.VOLUME_ADD, project["id"], "", None, None, None, None)
    assert is_open and "Type the path" in msg


def test_adding_needs_a_project(config):
    *_, msg, is_open, _ = cb.volumes_view(config, ids.VOLUME_ADD, None, "x.tif", None, None, None, None)
    assert is_open and ("project" in msg or "does not exist" in msg)


def test_add_volume_by_path_inside_a_root(config, project, raw):
    pytest.importorskip("ml.io.readers")
    import tifffile

    tifffile.imwrite(config.data_roots[0] / "stack.tif", raw, imagej=True, metadata={"axes": "ZYX"})
    opts, sel, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_ADD, project["id"], "stack.tif", None,
                                                     None, None, None)
    assert color == "success" and is_open and "(4, 48, 64)" in msg
    info = projects.volume_info(config, sel)
    assert info["stored_path"] == str((config.data_roots[0] / "stack.tif").resolve())   # read in place, no copy
    np.testing.assert_array_equal(projects.open_volume(config, sel)[1], raw[1])


def test_corrupt_file_is_a_clear_alert(config, project):
    pytest.importorskip("ml.io.readers")
    (config.data_roots[0] / "broken.tif").write_bytes(b"II*\x00garbage")
    *_, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_ADD, project["id"], "broken.tif", None,
                                              None, None, None)
    assert is_open and color == "danger" and "Traceback" not in msg and msg


def test_upload_is_stored_as_zarr_in_the_workspace(config, project, raw):
    pytest.importorskip("ml.io.readers")
    opts, sel, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_UPLOAD, project["id"], None, None,
                                                     [data_url(tiff_bytes(raw))], ["cells.tif"], None)
    assert color == "success", msg
    info = projects.volume_info(config, sel)
    assert info["stored_path"].endswith("raw.zarr") and str(config.workspace) in info["stored_path"]
    assert info["source_path"] == "cells.tif"
    np.testing.assert_array_equal(projects.open_volume(config, sel)[3], raw[3])
    assert not any(projects.Workspace(config.workspace).uploads_dir().iterdir())   # temp files removed


def test_upload_over_the_limit_is_refused_before_decoding(config, project):
    big = data_url(b"\0" * (config.max_upload_bytes + 1024))
    *_, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_UPLOAD, project["id"], None, None,
                                              [big], ["huge.tif"], None)
    assert is_open and color == "danger" and "limited to 1 MB" in msg and "huge.tif" in msg


def test_unsupported_upload_is_a_clear_alert(config, project):
    pytest.importorskip("ml.io.readers")
    *_, msg, is_open, color = cb.volumes_view(config, ids.VOLUME_UPLOAD, project["id"], None, None,
                                              [data_url(b"hello")], ["notes.txt"], None)
    assert is_open and color == "danger" and msg and "Traceback" not in msg


def test_volume_view_shows_facts_and_saves_voxel_size(config, volume):
    info, facts, z, y, x, msg, is_open = cb.volume_view(config, ids.VOLUME_SELECT, volume["id"], None, None, None)
    assert info["shape"] == [4, 48, 64] and (z, y, x) == (40, 5, 5) and not is_open
    assert (info["vmin"], info["vmax"]) == (0.0, 255.0)
    info, _, z, y, x, _, is_open = cb.volume_view(config, ids.VOXEL_SAVE, volume["id"], 50, 4, 4)
    assert info["voxel_size"] == [50, 4, 4] and not is_open
    assert projects.volume_info(config, volume["id"])["voxel_size"] == [50, 4, 4]


@pytest.mark.parametrize("bad", [(0, 4, 4), (None, 4, 4), (-1, 4, 4)])
def test_invalid_voxel_size_is_refused(config, volume, bad):
    *_, msg, is_open = cb.volume_view(config, ids.VOXEL_SAVE, volume["id"], *bad)
    assert is_open and ("positive" in msg or "three numbers" in msg)
    assert projects.volume_info(config, volume["id"])["voxel_size"] == [40, 5, 5]


def test_classes_add_rename_recolour(config, volume):
    vid = volume["id"]
    rows, classes, msg, is_open, cleared = cb.classes_view(config, ids.CLASS_ADD, vid, "membrane", None, None)
    assert [c["name"] for c in classes] == ["background", "mitochondria", "membrane"] and cleared == ""
    _, classes, _, is_open, _ = cb.classes_view(config, ids.CLASS_SAVE, vid, None, ["bg", "mito", "membrane"],
                                                ["#000000", "#FF0000", "#00ff00"])
    assert not is_open and classes[1] == {"name": "mito", "color": "#ff0000"}
    assert projects.get_classes(config, vid)[0]["name"] == "bg"


@pytest.mark.parametrize("names, colors, text", [(["a", "a"], ["#000000", "#111111"], "different"),
                                                  (["a", ""], ["#000000", "#111111"], "needs a name"),
                                                  (["a", "b"], ["#000000", "red"], "#rrggbb"),
                                                  (["only"], ["#000000"], "at least two")])
def test_bad_class_edits_are_refused(config, volume, names, colors, text):
    _, classes, msg, is_open, _ = cb.classes_view(config, ids.CLASS_SAVE, volume["id"], None, names, colors)
    assert is_open and text in msg
    assert [c["name"] for c in classes] == ["background", "mitochondria"]


def test_classes_are_shared_by_the_volumes_of_a_project(config, project, volume, raw):
    second = projects.add_volume_from_array(config, project["id"], "second", raw[:2])
    assert [c["name"] for c in projects.get_classes(config, second["id"])] == ["background", "mitochondria"]
    projects.add_class(config, volume["id"], "er")
    assert [c["name"] for c in projects.get_classes(config, second["id"])][-1] == "er"


def test_roots_note_lists_roots_and_limit(config):
    note = cb.roots_note(config)
    assert str(config.data_roots[0]) in note and "1 MB" in note

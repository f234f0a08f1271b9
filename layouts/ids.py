"""Component ids of the page shell, Data panel, Viewer, Painting and Jobs list.

Callbacks and end-to-end tests select components by these strings: keep them stable.
The Active-learning/Training/Results/Export/Effort panels keep theirs in ``layouts/ids_panels.py``.
Pattern-matching ids are dicts ``{"type": <TYPE>, "index": <n>}``.
"""
from __future__ import annotations

# --- Page shell / shared stores ------------------------------------------------------------
PAGE = "page"
URL = "url"
ALERT = "page-alert"                   # global dbc.Alert for user errors not tied to a panel
ACCOUNT = "page-account"               # shared mode: who is signed in
SIGN_OUT = "page-sign-out"
PROJECT_STORE = "project-store"        # data: selected project id (int | None)
VOLUME_STORE = "volume-store"          # data: selected volume info dict (id, shape, dtype, voxel_size, lo, hi, ...)
LABELS_REV = "labels-rev-store"        # data: int, bumps after every stroke / undo / class change
CLASSES_STORE = "classes-store"        # data: list of {"name", "color"} of the selected volume
VIEW_STATE = "view-state-store"        # data: {"vid", "plane", "index"} what the viewer shows now

# panel slots (page.py fills them with each panel's build())
SLOT_DATA = "slot-data"
SLOT_VIEWER = "slot-viewer"
SLOT_ACTIVE = "slot-active"
SLOT_TRAINING = "slot-training"
SLOT_RESULTS = "slot-results"
SLOT_EXPORT = "slot-export"
SLOT_EFFORT = "slot-effort"
SLOT_JOBS = "slot-jobs"

# page columns: the Data column can be hidden to give the viewer its width
COL_DATA = "col-data"
COL_VIEWER = "col-viewer"
COL_RIGHT = "col-right"
DATA_TOGGLE = "data-toggle-btn"        # in the viewer's header: hide / show the Data column

# --- Data panel -------------------------------------------------------------------------------
PROJECT_SELECT = "project-select"
PROJECT_NAME = "project-name-input"
PROJECT_CREATE = "project-create-btn"
PROJECT_ALERT = "project-alert"
SHARE_BOX = "share-box"                # shared mode: who sees the project, and sharing it
SHARE_INFO = "share-info"
SHARE_NAME = "share-user-input"
SHARE_EDIT = "share-edit-switch"
SHARE_ADD = "share-add-btn"
SHARE_REMOVE = "share-remove-btn"
SHARE_ALERT = "share-alert"
VOLUME_SELECT = "volume-select"
VOLUME_PATH = "volume-path-input"
VOLUME_DATASET = "volume-dataset-input"    # HDF5 dataset / Zarr array inside the file (optional)
VOLUME_ADD = "volume-add-btn"
VOLUME_UPLOAD = "volume-upload"
VOLUME_ALERT = "volume-alert"
DATA_ROOTS_NOTE = "data-roots-note"
VOLUME_INFO = "volume-info"
VOXEL_Z = "voxel-z-input"
VOXEL_Y = "voxel-y-input"
VOXEL_X = "voxel-x-input"
VOXEL_SAVE = "voxel-save-btn"
CLASS_LIST = "class-list"
CLASS_NAME_TYPE = "class-name"         # pattern id type, index = class index (0 = background)
CLASS_COLOR_TYPE = "class-color"       # pattern id type
CLASS_NEW_NAME = "class-new-name"
CLASS_ADD = "class-add-btn"
CLASS_SAVE = "class-save-btn"
CLASS_ALERT = "class-alert"
PRETRAIN_AUTO = "pretrain-auto-switch"      # pre-train every volume added from this page (default APP_PRETRAIN_AUTO)
PRETRAIN_STATUS = "pretrain-status"        # the selected volume's pre-training: none / running / partial / done
PRETRAIN_START = "pretrain-start-btn"      # start, resume or redo the selected volume's pre-training

# --- Viewer ------------------------------------------------------------------------------------
GRAPH = "viewer-graph"
OBJECT_UNDER_CURSOR = "viewer-object-under-cursor"   # filled by assets/hover.js from /objects/.../at
PLANE = "viewer-plane"                 # radio xy | xz | yz
SLICE = "viewer-slice"                 # slider, index along the plane's normal
SLICE_LABEL = "viewer-slice-label"
SLICE_PREV = "viewer-slice-prev"       # buttons; the keyboard script clicks them (left/j, right/k)
SLICE_NEXT = "viewer-slice-next"
CONTRAST = "viewer-contrast"           # range slider [lo, hi]
CONTRAST_RESET = "viewer-contrast-reset"
OVERLAY_LABELS = "overlay-labels-opacity"        # sliders 0..1 (0 = hidden)
OVERLAY_PREDICTION = "overlay-prediction-opacity"
OVERLAY_UNCERTAINTY = "overlay-uncertainty-opacity"
OVERLAY_GT = "overlay-gt-opacity"
OVERLAY_OBJECTS = "overlay-objects-opacity"    # outlines of the newest segmentation's objects
VIEWER_NOTE = "viewer-note"            # e.g. "painting only in the xy plane"
VIEWER_ALERT = "viewer-alert"
UNCERTAINTY_STRIP = "viewer-uncertainty-strip"       # graph under the slice slider: mean uncertainty per z slice
UNCERTAINTY_WORST = "viewer-uncertainty-worst-btn"   # jump to the most uncertain slice
UNCERTAINTY_CAPTION = "viewer-uncertainty-caption"
UNCERTAINTY_STORE = "viewer-uncertainty-store"       # data: {"vid", "values", "model_id", "worst"} | None

# --- Painting ------------------------------------------------------------------------------------
CLASS_BUTTONS = "paint-class-buttons"
CLASS_BUTTON_TYPE = "paint-class"      # pattern id type, index = label value (1..C)
ERASER = "paint-eraser-btn"
PAINT_VALUE = "paint-value-store"      # data: label value being painted (0 = erase)
BRUSH = "paint-brush-width"
PAINT_MODE = "paint-mode"              # radio: "stroke" (drawopenpath) | "fill" (drawclosedpath) | "pan"
UNDO = "paint-undo-btn"
REDO = "paint-redo-btn"
COUNTS = "paint-counts"
PAINT_ALERT = "paint-alert"

# --- Jobs list ----------------------------------------------------------------------------------------
JOBS_TABLE = "jobs-table"
JOBS_POLL = "jobs-poll-interval"
JOBS_REFRESH = "jobs-refresh-store"    # any panel may bump this (allow_duplicate) to refresh the list now
JOB_CANCEL_TYPE = "job-cancel"         # pattern id type, index = job id: Cancel button of an active job
PREFETCH = "viewer-prefetch-store"     # data: URLs the browser preloaded (neighbouring slices)
KEYS = "viewer-keys-store"             # data: last key step (written by the keyboard script's clicks)

# --- Live mode (viewer bar) --------------------------------------------------------------------------
LIVE_SWITCH = "live-switch"            # on: every stroke / slice / zoom change updates the draft and its view
LIVE_STATUS = "live-status"            # what the draft is and what the last update did
LIVE_KEEP = "live-keep-btn"            # the draft becomes an active model version
LIVE_DISCARD = "live-discard-btn"      # forget the draft: the active version is shown again
LIVE_PENDING = "live-pending-store"    # data: bool, something changed since the last update started
LIVE_BUSY = "live-busy-store"          # data: bool, an update is running (set by the background callback)
LIVE_GO = "live-go-store"              # data: {"n", "z", "view"} starts one update (written in the browser)
LIVE_REV = "live-rev-store"            # data: revision of the live view the overlays show (None = live off)

RIGHT_TABS = "right-tabs"                 # the learning panels' tabs (tab_id = layouts module name)

PREPARING = "preparing-demo"              # first start: the page shown while the demo is generated
PREPARING_POLL = "preparing-demo-poll"
PREPARING_RELOAD = "preparing-demo-reload"

# guided path (layouts/guide.py)
GUIDE = "guide-bar"
GUIDE_HINT = "guide-next-hint"
GUIDE_STEP_TYPE = "guide-step"            # pattern id {"type": GUIDE_STEP_TYPE, "index": step}

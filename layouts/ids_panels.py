"""Component ids of the Active-learning, Training, Results, Export and Effort panels.

Kept apart from ``layouts/ids.py`` (Data + Viewer panels) so two engineers never edit the
same module. End-to-end tests select by these strings: keep them stable.
Pattern-matching ids are dicts ``{"type": <TYPE>, "index": <row id>}``.
"""
from __future__ import annotations

# --- Active-learning queue -------------------------------------------------------------
AL_STRATEGY = "al-strategy"
AL_STRATEGY_HELP = "al-strategy-help"
AL_BATCH = "al-batch-size"
AL_PATCH = "al-patch-size"
AL_SUGGEST = "al-suggest-btn"
AL_CANCEL = "al-cancel-btn"
AL_PROGRESS = "al-progress"
AL_STATUS = "al-status"
AL_MODEL_NOTE = "al-model-note"
AL_QUEUE = "al-queue"
AL_ROUND = "al-round-store"          # data: id of the round shown in the queue
AL_GOTO_TYPE = "al-goto"             # pattern id type: click a suggestion card
AL_SKIP_TYPE = "al-skip"             # pattern id type: skip button of a suggestion

# --- Training -----------------------------------------------------------------------------
TR_MODE = "tr-mode"                  # "new" | "continue"
TR_PARENT = "tr-parent"              # dropdown of model versions
TR_EPOCHS = "tr-epochs"
TR_BUDGET = "tr-budget"              # radio: a time budget (options set from app.services.budget) or by epochs
TR_ESTIMATE = "tr-estimate"          # what the chosen budget will cost, before start
TR_LR = "tr-lr"
TR_TRAIN = "tr-train-btn"
TR_CANCEL = "tr-cancel-btn"
TR_PROGRESS = "tr-progress"
TR_STATUS = "tr-status"
TR_LIVE = "tr-live-graph"            # loss + validation IoU while training
TR_LIVE_TITLE = "tr-live-title"      # heading above it: "Training job N: status (step i/n)"
TR_POLL = "tr-poll-interval"
TR_VERSIONS = "tr-versions-table"
TR_ACTIVATE = "tr-activate-btn"
TR_EFFICIENCY = "tr-efficiency-graph"
TR_GT_NOTE = "tr-gt-note"
TR_DONE = "tr-done-store"            # bumps when a training job ends (versions, live heading refresh)
TR_LIVE_KEY = "tr-live-key-store"    # (job, status, step) last drawn, so idle polls send nothing
TR_EFFORT_NOTE = "tr-effort-note"    # effort summary beside the label-efficiency chart

# --- Segmentation and results --------------------------------------------------------------
SEG_RUN = "seg-run-btn"
SEG_CANCEL = "seg-cancel-btn"
SEG_MC = "seg-mc-dropout"
SEG_PROGRESS = "seg-progress"
SEG_STATUS = "seg-status"
SEG_DONE = "seg-done-store"          # bumps when a prediction is written (overlays refresh)
PP_THRESHOLD = "pp-threshold"
PP_MIN_SIZE = "pp-min-size"
PP_MIN_UNIT = "pp-min-unit"
PP_SPLIT = "pp-split"
PP_CORE = "pp-core"
PP_APPLY = "pp-apply-btn"
PP_STATUS = "pp-status"
OBJ_TABLE = "obj-table"
OBJ_SUMMARY = "obj-summary"
OBJ_MESH = "obj-mesh-graph"
OBJ_MESH_N = "obj-mesh-n"
OBJ_SEG = "obj-seg-store"            # data: id of the Segmentation row just made (triggers the views)
OBJ_SHOWN = "obj-shown-store"        # data: id of the Segmentation row the table/3D view show

# --- Export -------------------------------------------------------------------------------
EXP_WHAT = "exp-what"
EXP_FORMAT = "exp-format"
EXP_RUN = "exp-run-btn"
EXP_PROGRESS = "exp-progress"
EXP_STATUS = "exp-status"
EXP_DOWNLOAD = "exp-download"
EXP_LINK = "exp-link"                # link to /exports/<name> (files too large for EXP_DOWNLOAD)

# --- Effort -----------------------------------------------------------------------------------
EFF_ROUNDS = "eff-rounds-table"
EFF_PATCHES = "eff-patches-table"
EFF_GRAPH = "eff-graph"
EFF_REFRESH = "eff-refresh-btn"

# --- Cross-panel -------------------------------------------------------------------------------
NAV_REQUEST = "panels-nav-request"   # data: {"vid", "z", "y0", "y1", "x0", "x1", "outline": bool, "source", "t"}
#  the viewer (callbacks/viewer.py) listens to NAV_REQUEST and uses SEG_DONE as the prediction overlay revision

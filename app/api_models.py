"""The REST API's request and response shapes (pydantic): ``app.api`` validates with them and
spectree turns them into the OpenAPI document at ``/api/openapi.json``."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")     # service dicts carry more than the API promises


class Error(BaseModel):
    error: str = Field(description="one line saying what was wrong")


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class Project(_Out):
    id: int
    name: str


class Projects(RootModel[list[Project]]):
    pass


class Volume(_Out):
    id: int
    project_id: int
    name: str
    shape: list[int] = Field(description="(z, y, x) voxels")
    dtype: str
    voxel_size: Optional[list[float]] = Field(None, description="(z, y, x) nm")


class Volumes(RootModel[list[Volume]]):
    pass


class ClassCount(_Out):
    value: int = Field(description="label value (0 = unlabeled)")
    name: str
    color: str
    pixels: int


class ClassCounts(RootModel[list[ClassCount]]):
    pass


class StrokeIn(BaseModel):
    z: int = Field(ge=0, description="xy slice")
    path: str = Field(min_length=3, description="SVG path in pixel coordinates (x = column, y = row), e.g. 'M10,10L60,10'")
    value: int = Field(ge=0, le=255, description="class value to paint; 0 erases")
    width: float = Field(5.0, gt=0, description="brush diameter in pixels")
    fill: Optional[bool] = Field(None, description="fill the closed path (default: when it ends with 'Z')")


class Stroke(_Out):
    stroke_id: Optional[int]
    n_pixels: int
    bbox: Optional[list[int]] = Field(None, description="[y0, y1, x0, x1]")


class LabelEvent(_Out):
    id: int
    kind: str = Field(description="stroke | fill | erase | undo")
    z: Optional[int]
    value: Optional[int]
    n_pixels: int
    stroke_id: Optional[int] = Field(None, description="the label store's id of the stroke (undo refers to it)")
    bbox: Optional[list[int]] = Field(None, description="[y0, y1, x0, x1]")
    created: str


class LabelEvents(RootModel[list[LabelEvent]]):
    pass


class Suggestion(_Out):
    id: int
    rank: int
    z: int
    y: int
    x: int
    size: int
    score: float
    status: str = Field(description="todo | labeled | skipped")


class Suggestions(RootModel[list[Suggestion]]):
    pass


class ModelVersion(_Out):
    id: int
    parent_id: Optional[int]
    created: str
    active: bool
    n_labeled_pixels: int
    n_labeled_patches: int
    est_iou: Optional[float] = Field(None, description="the quality estimate's low end (see quality_text for its basis)")
    est_iou_high: Optional[float] = Field(None, description="the quality estimate's high end")
    quality_text: str
    gt_iou: Optional[float] = Field(None, description="IoU against dense ground truth, when the volume has it")
    steps: Optional[int]
    started_from: str


class ModelVersions(RootModel[list[ModelVersion]]):
    pass


class Job(_Out):
    id: int
    kind: str
    project_id: Optional[int]
    status: str = Field(description="queued | running | done | failed | cancelled")
    progress: int
    total: int
    error: Optional[str]
    result: Optional[Any] = None
    params: dict = Field(default_factory=dict)
    cancel_requested: bool
    created: Optional[str]
    finished: Optional[str]


class Jobs(RootModel[list[Job]]):
    pass


class JobsQuery(BaseModel):
    project_id: Optional[int] = None
    limit: int = Field(20, ge=1, le=200)


class SegmentIn(BaseModel):
    threshold: float = Field(0.5, gt=0, lt=1, description="foreground probability threshold")
    min_size: float = Field(0, ge=0, description="objects smaller than this are dropped (in min_size_unit)")
    min_size_unit: Literal["voxels", "um3"] = Field("voxels", description="voxels (a whole number), or µm³ at the "
                                                    "volume's voxel size (which must be set)")
    mc: bool = Field(False, description="also compute MC-dropout uncertainty")
    split: bool = Field(False, description="split touching objects (watershed)")
    core_threshold: Optional[float] = Field(None, gt=0, lt=1, description="keep only objects whose peak probability "
                                            "exceeds this (hysteresis); null, or one at or under the threshold, keeps "
                                            "every object")

    @model_validator(mode="after")
    def _whole_voxels(self) -> "SegmentIn":
        """A 422 before any job starts, as for the other fields (the job would refuse it too)."""
        if self.min_size_unit == "voxels" and not float(self.min_size).is_integer():
            raise ValueError("min_size in voxels must be a whole number")
        return self


class TrainIn(BaseModel):
    budget: Optional[Literal["quick", "refine"]] = Field("quick", description="time budget; null = use epochs")
    parent_id: Optional[int] = Field(None, description="continue from this model version (default: a new model)")
    epochs: int = Field(10, ge=1, le=1000)
    lr: Optional[float] = Field(None, gt=0, lt=1, description="learning rate; null = the default (ml.train.TrainConfig)")

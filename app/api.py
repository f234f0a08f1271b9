"""REST API for scripts and plugins: JSON under ``/api``, described at ``/api/openapi.json``.

The routes are thin: they validate with ``app.api_models`` (spectree + pydantic, which also
writes the OpenAPI document), call the same services as the page, and answer errors as
``{"error": "..."}`` (400 bad input, 403 read-only, 404 unknown or not yours). In shared mode
they sit behind the same guard as the page (``app.auth``: a session or ``Authorization: Bearer
<token>``), and ``app.access`` keeps every user inside their own projects. Jobs started here
run like the page's (``app.background``): poll ``GET /api/jobs/<id>``, cancel with
``POST /api/jobs/<id>/cancel``.
"""
from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify
from spectree import Response as Resp
from spectree import SecurityScheme, SpecTree
from spectree.models import SecuritySchemeData

from app import access, api_models as m, background, jobs
from app.config import Config
from app.errors import NotFound, UserError
from app.services import active, labels, projects, segmentation, training

ERRORS = {"HTTP_400": m.Error, "HTTP_403": m.Error, "HTTP_404": m.Error}


def make_spec() -> SpecTree:
    """Strict mode: only the routes decorated here are documented (not Dash's)."""
    return SpecTree("flask", mode="strict", path="_apispec", page_templates={}, title="ActiveSeg API", version="1",
                    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type="http", scheme="bearer"))],
                    security={"bearer": []})


def _error(exc: Exception) -> tuple[Response, int]:
    status = 403 if isinstance(exc, access.Forbidden) else 404 if isinstance(exc, NotFound) else 400
    return jsonify({"error": str(exc)}), status


def _volume(config: Config, vid: int) -> dict:
    return projects.volume_info(config, vid)


def register_api(server: Flask, config: Config) -> SpecTree:
    """Add the ``/api`` routes to ``server``; returns the spec (its ``.spec`` is the OpenAPI dict)."""
    spec = make_spec()
    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.register_error_handler(UserError, _error)
    bp.register_error_handler(ValueError, _error)

    @bp.get("/projects")
    @spec.validate(resp=Resp(HTTP_200=m.Projects), tags=["projects"])
    def list_projects():
        """The projects you may see."""
        return m.Projects([m.Project(**p) for p in projects.list_projects(config)])

    @bp.post("/projects")
    @spec.validate(json=m.ProjectIn, resp=Resp(HTTP_201=m.Project, **ERRORS), tags=["projects"])
    def create_project(json: m.ProjectIn):
        """A new project (yours, in shared mode)."""
        return m.Project(**projects.create_project(config, json.name)), 201

    @bp.get("/projects/<int:pid>/volumes")
    @spec.validate(resp=Resp(HTTP_200=m.Volumes), tags=["volumes"])
    def list_volumes(pid: int):
        """The volumes of a project."""
        return m.Volumes([m.Volume(**v) for v in projects.list_volumes(config, pid)])

    @bp.get("/volumes/<int:vid>")
    @spec.validate(resp=Resp(HTTP_200=m.Volume, **ERRORS), tags=["volumes"])
    def get_volume(vid: int):
        """One volume: shape, type, voxel size."""
        return m.Volume(**_volume(config, vid))

    @bp.get("/volumes/<int:vid>/labels")
    @spec.validate(resp=Resp(HTTP_200=m.ClassCounts, **ERRORS), tags=["labels"])
    def label_counts(vid: int):
        """Labeled pixels per class (totals over the whole volume)."""
        return m.ClassCounts([m.ClassCount(**c) for c in labels.counts(config, vid)])

    @bp.get("/volumes/<int:vid>/labels/events")
    @spec.validate(resp=Resp(HTTP_200=m.LabelEvents, **ERRORS), tags=["labels"])
    def label_events(vid: int):
        """The stroke log of a volume, oldest first."""
        _volume(config, vid)
        return m.LabelEvents([m.LabelEvent(**e) for e in labels.events(config, vid)])

    @bp.post("/volumes/<int:vid>/strokes")
    @spec.validate(json=m.StrokeIn, resp=Resp(HTTP_201=m.Stroke, **ERRORS), tags=["labels"])
    def add_stroke(vid: int, json: m.StrokeIn):
        """Paint one stroke on an xy slice (value 0 erases), saved like a stroke from the page."""
        done = labels.apply_stroke(config, vid, json.z, json.path, json.value, json.width, fill=json.fill)
        return m.Stroke(**done), 201

    @bp.get("/volumes/<int:vid>/suggestions")
    @spec.validate(resp=Resp(HTTP_200=m.Suggestions, **ERRORS), tags=["active learning"])
    def suggestions(vid: int):
        """The newest round of suggested patches, best first."""
        return m.Suggestions([m.Suggestion(**r) for r in active.latest_queue(config, vid)])

    @bp.get("/projects/<int:pid>/models")
    @spec.validate(resp=Resp(HTTP_200=m.ModelVersions), tags=["models"])
    def models(pid: int):
        """Model versions, newest first, with their quality estimate."""
        return m.ModelVersions([m.ModelVersion(**v) for v in training.list_versions(config, pid)])

    @bp.post("/projects/<int:pid>/train")
    @spec.validate(json=m.TrainIn, resp=Resp(HTTP_202=m.Job, **ERRORS), tags=["jobs"])
    def train(pid: int, json: m.TrainIn):
        """Start training a model version on all labels of the project."""
        projects.project_info(config, pid)
        job_id = background.launch(config, "train", pid, json.model_dump())
        return m.Job(**jobs.get_job(config, job_id)), 202

    @bp.post("/volumes/<int:vid>/segment")
    @spec.validate(json=m.SegmentIn, resp=Resp(HTTP_202=m.Job, **ERRORS), tags=["jobs"])
    def segment(vid: int, json: m.SegmentIn):
        """Start segmenting the whole volume with the active model, then measuring its objects."""
        volume = _volume(config, vid)
        segmentation.postprocess_settings(json.model_dump(), volume["voxel_size"])   # µm³ without a voxel size: 400
        job_id = background.launch(config, "segment", volume["project_id"], {"volume_id": vid, **json.model_dump()})
        return m.Job(**jobs.get_job(config, job_id)), 202

    @bp.get("/jobs")
    @spec.validate(query=m.JobsQuery, resp=Resp(HTTP_200=m.Jobs), tags=["jobs"])
    def list_jobs(query: m.JobsQuery):
        """Recent jobs, newest first."""
        return m.Jobs([m.Job(**j) for j in jobs.list_jobs(config, project_id=query.project_id, limit=query.limit)])

    @bp.get("/jobs/<int:job_id>")
    @spec.validate(resp=Resp(HTTP_200=m.Job, **ERRORS), tags=["jobs"])
    def get_job(job_id: int):
        """A job's state and progress (``result`` once done); a job whose worker died reads failed, with why."""
        jobs.recover_stale(config)
        job = jobs.get_job(config, job_id)
        if job is None:
            raise NotFound(f"Job {job_id} does not exist.")
        return m.Job(**job)

    @bp.post("/jobs/<int:job_id>/cancel")
    @spec.validate(resp=Resp(HTTP_200=m.Job, **ERRORS), tags=["jobs"])
    def cancel_job(job_id: int):
        """Ask a job to stop (it keeps what it has written); a finished job is left as it is."""
        if jobs.get_job(config, job_id) is None:
            raise NotFound(f"Job {job_id} does not exist.")
        jobs.request_cancel(config, job_id)
        return m.Job(**jobs.get_job(config, job_id))

    @bp.get("/volumes/<int:vid>/objects.csv")
    @spec.validate(resp=Resp("HTTP_200", **ERRORS), tags=["results"])
    def objects_csv(vid: int):
        """The newest segmentation's object table (one row per object: volume, surface, centroid...)."""
        seg_id = segmentation.latest_segmentation_id(config, _volume(config, vid)["id"])
        if seg_id is None:
            raise NotFound(f"Volume {vid} has no segmentation yet: POST /api/volumes/{vid}/segment first.")
        csv = segmentation.object_table_frame(config, seg_id).to_csv(index=False)
        return Response(csv, mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="objects_volume{vid}_seg{seg_id}.csv"'})

    @bp.get("/openapi.json")
    def openapi():
        """The OpenAPI document of these routes (generated by spectree from the decorators)."""
        return jsonify(spec.spec)

    server.register_blueprint(bp)
    return spec

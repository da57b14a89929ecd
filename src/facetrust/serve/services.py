"""What one app instance runs: the detector, explainers, the protector and the job runner.

Nothing is loaded at import or when the app is created: ``Services.start()`` runs at startup
(the app's lifespan) and loads the detector, opens the job store and starts the workers; the
explainer is built in the background right after, and on first use if that has not finished.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from facetrust import __version__
from facetrust.errors import FacetrustError, NoModelError, one_line
from facetrust.media import ImageLimits, load_image
from facetrust.media.budget import WorkBudget, use_budget
from facetrust.serve.errors import ApiError
from facetrust.serve.gate import InferenceSlots, MemoryGate, upload_cost
from facetrust.serve.jobs import JobContext, JobOutput, JobRunner, JobStore
from facetrust.serve.settings import ServeSettings

__all__ = ["ProtectorFactory", "Services", "protect_task"]

log = logging.getLogger("facetrust.serve")

#: ``factory(strength) -> protector``; a protector is called on an RGB array and returns an
#: object with ``.image`` (uint8 RGB) and ``.report`` (dict), as ``facetrust.protect.Protector``.
ProtectorFactory = Callable[[str], Any]

#: Longest side of the full-image heatmap the service composites and returns.
OVERLAY_MAX_SIDE = 2048

PROTECT_MISSING = (
    "photo protection is not available on this server: the facetrust.protect package is "
    "not installed"
)

NO_FACE_API_MESSAGE = (
    "no face found: the photo is returned unchanged (this server cloaks faces only; "
    "`facetrust protect --whole-image` on the command line cloaks a whole photo)"
)


def _import_protector_factory(device: str = "auto") -> ProtectorFactory:
    """``facetrust.protect.Protector`` (imported on first use), or ApiError 503."""
    try:
        module = importlib.import_module("facetrust.protect")
        protector_cls = module.Protector
    except ImportError as exc:
        log.warning("protect unavailable", extra={"reason": one_line(exc)})
        raise ApiError(503, PROTECT_MISSING) from None
    except AttributeError:
        raise ApiError(503, PROTECT_MISSING) from None
    kwargs: dict[str, Any] = {}
    if _accepts(protector_cls, "device"):
        from facetrust.config import resolve_device

        kwargs["device"] = resolve_device(device)
    if _accepts(protector_cls, "judge"):
        kwargs["judge"] = True  # the report says whether dlib still recognises the person
    return lambda strength: protector_cls(strength=strength, **kwargs)


def protect_task(
    get_protector: Callable[[str], Any],
    strength: str,
    limits: ImageLimits,
    gate: MemoryGate | None = None,
    budget: WorkBudget | None = None,
) -> Callable[[JobContext], JobOutput]:
    """A job task: decode the uploaded image, protect it, return ``protected.png`` + report.

    With a ``gate`` the decoding and the protection hold their share of the memory budget."""

    def task(ctx: JobContext) -> JobOutput:
        from facetrust.detect.explain import encode_png

        data = ctx.read_input()
        with ExitStack() as stack:
            if gate is not None:
                stack.enter_context(gate.hold(upload_cost(data, None, 0, limits.max_pixels)))
            stack.enter_context(use_budget(budget or WorkBudget(analysis_max_pixels=None)))
            return _protect(ctx, data, encode_png)

    def _protect(ctx: JobContext, data: bytes, encode_png: Callable) -> JobOutput:
        image = load_image(data, limits)
        ctx.progress(0.02, "loading the protector")
        protector = get_protector(strength)
        ctx.progress(0.05, "protecting")
        kwargs = {}
        if _accepts(protector, "progress"):
            kwargs["progress"] = lambda f, msg="protecting": ctx.progress(0.05 + 0.9 * f, msg)
        t0 = time.perf_counter()
        result = protector(image, **kwargs)
        out = np.asarray(result.image)
        if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
            raise TypeError(f"protector returned an image of {out.dtype} {out.shape}")
        ctx.progress(0.97, "encoding")
        rep = result.report
        report = rep.model_dump(mode="json") if hasattr(rep, "model_dump") else dict(rep or {})
        if hasattr(rep, "summary"):
            report["summary"] = rep.summary()
        if report.get("regions") == "none":  # the CLI's --whole-image is not an API option
            report["message"] = NO_FACE_API_MESSAGE
        report.setdefault("width", int(out.shape[1]))
        report.setdefault("height", int(out.shape[0]))
        report.setdefault("strength", strength)
        report.setdefault("processing_time_s", round(time.perf_counter() - t0, 3))
        return JobOutput(report=report, files={"protected.png": encode_png(out)})

    return task


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Services:
    """The models and workers of one app. Thread-safe; ``start()`` is idempotent."""

    def __init__(
        self,
        settings: ServeSettings,
        detector: Any = None,
        protector_factory: ProtectorFactory | None = None,
    ) -> None:
        self.settings = settings
        self._detector = detector
        self._model_error: FacetrustError | None = None
        self._protector_factory = protector_factory
        self._explainers: dict[str, Any] = {}
        self._explain_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._local = threading.local()
        self._started = False
        # Detections share a few slots (the face finder serialises itself); an explanation
        # hooks the model, so it runs alone.
        self.inference = InferenceSlots(settings.inference_slots)
        self.store: JobStore | None = None
        self.runner: JobRunner | None = None
        self.limits = ImageLimits(settings.max_image_pixels, settings.max_file_bytes)
        # what one upload may cost (facetrust.media.budget) and the memory gate over decoding
        self.budget = WorkBudget.from_settings(settings)
        self.protect_budget = WorkBudget.from_settings(settings, analysis_max_pixels=None)
        self.gate = MemoryGate(settings.memory_budget_mb * 1024**2)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            s = self.settings
            if self._detector is None:
                from facetrust.detect import Detector

                try:
                    self._detector = Detector(s.model, device=s.device, settings=s)
                except FacetrustError as exc:
                    self._model_error = exc
                    log.error("no detector", extra={"reason": one_line(exc)})
            self._install_batcher()
            self.store = JobStore(s.job_dir)
            interrupted = self.store.recover()
            purged = self.store.purge(s.job_ttl_hours * 3600.0)
            self.runner = JobRunner(self.store, s.workers, s.queue_size)
            self.store.start_sweeper(
                s.job_ttl_hours * 3600.0, s.job_quota_mb * 1024**2, s.job_sweep_s
            )
            self._started = True
            log.info(
                "service started",
                extra={
                    "model": getattr(self._detector, "model_name", None),
                    "device": getattr(self._detector, "device", None),
                    "runtime": getattr(self._detector, "runtime", None),
                    "micro_batch": self.batcher is not None,
                    "jobs_interrupted": interrupted,
                    "jobs_purged": purged,
                },
            )
        if self._detector is not None:
            threading.Thread(target=self._warm, name="facetrust-warm", daemon=True).start()

    def _install_batcher(self) -> None:
        """Concurrent detections share scoring batches (facetrust.serve.batcher): the
        detector's scorer is wrapped once, in place."""
        from facetrust.serve.batcher import MicroBatcher

        s, det = self.settings, self._detector
        scorer = getattr(det, "scorer", None)
        if not s.micro_batch or scorer is None or isinstance(scorer, MicroBatcher):
            return
        det.scorer = MicroBatcher(scorer, max_faces=s.batch_max_faces, max_wait_ms=s.batch_wait_ms)

    @property
    def batcher(self) -> Any:
        """The detector's :class:`~facetrust.serve.batcher.MicroBatcher`, or None."""
        from facetrust.serve.batcher import MicroBatcher

        scorer = getattr(self._detector, "scorer", None)
        return scorer if isinstance(scorer, MicroBatcher) else None

    def _warm(self) -> None:
        try:
            self.explainer(self.settings.explain_method)
        except Exception:  # warming is best effort; the first request reports real errors
            log.exception("explainer warm-up failed")

    def stop(self) -> None:
        """Stop the workers (queued jobs are reported as interrupted at the next start). The
        loaded models stay, so a later ``start()`` (another lifespan) is cheap."""
        with self._start_lock:
            if self.runner is not None:
                self.runner.shutdown(wait=False)
            if self.store is not None:
                self.store.stop_sweeper()
            self.runner = None
            self._started = False

    # ---- models ------------------------------------------------------------------------------
    @property
    def detector(self) -> Any:
        """The loaded ``Detector``; raises the load error (503) when there is none."""
        self.start()
        if self._detector is None:
            raise self._model_error or NoModelError("no detection model is loaded")
        return self._detector

    def explainer(self, method: str) -> Any:
        from facetrust.detect.explain import Explainer

        detector = self.detector
        with self._explain_lock:
            if method not in self._explainers:
                self._explainers[method] = Explainer(
                    detector,
                    method=method,  # type: ignore[arg-type]
                    max_side=OVERLAY_MAX_SIDE,
                )
            return self._explainers[method]

    def detect(
        self,
        data: bytes,
        path: str | None = None,
        threshold: float | None = None,
        frames: int | None = None,
    ) -> dict[str, Any]:
        """The ``FileResult`` dict for an image or video upload (``path``: the upload's name;
        ``threshold``, ``frames``: this request's, else the detector's)."""
        detector = self.detector
        with self.budgeted(data, exclusive=False):
            return detector(data, path, threshold=threshold, frames=frames).as_json()

    def explain(self, data: bytes, method: str) -> Any:
        """An ``Explanation`` of an image upload."""
        explainer = self.explainer(method)
        with self.budgeted(data, exclusive=True):
            return explainer(data)

    @contextmanager
    def budgeted(self, data: bytes, exclusive: bool) -> Iterator[None]:
        """Run inference on ``data`` within the request's budget: its share of the memory gate,
        then an inference slot (all of them to explain), all before the deadline
        (``DeadlineExceeded`` -> 503 + Retry-After)."""
        s = self.settings
        budget = self.budget.with_timeout(s.request_timeout_s)
        cost = upload_cost(
            data, s.analysis_max_pixels, s.max_video_decoded_bytes, s.max_image_pixels
        )
        with use_budget(budget), self.gate.hold(cost, budget.remaining()):
            slot = self.inference.exclusive if exclusive else self.inference.shared
            with slot(max(0.0, budget.remaining())):
                yield

    def provenance(self, data: bytes) -> Any:
        """The provenance of an upload (no model): its pixel decode for the watermark holds its
        share of the memory gate, within the request's deadline, like every other decode."""
        from facetrust.provenance import ProvenanceLimits, read_provenance

        s = self.settings
        limits = ProvenanceLimits()
        if s.analysis_max_pixels and s.analysis_max_pixels < limits.max_watermark_pixels:
            limits = ProvenanceLimits(max_watermark_pixels=s.analysis_max_pixels)
        budget = self.budget.with_timeout(s.request_timeout_s)
        cost = upload_cost(data, s.analysis_max_pixels, 0, s.max_image_pixels)
        with use_budget(budget), self.gate.hold(cost, budget.remaining()):
            return read_provenance(data, limits=limits)

    # ---- protection --------------------------------------------------------------------------
    def protector_factory(self) -> ProtectorFactory:
        """The protector factory; ApiError 503 when ``facetrust.protect`` is missing."""
        if self._protector_factory is None:
            self._protector_factory = _import_protector_factory(self.settings.device)
        return self._protector_factory

    def protect_available(self) -> bool:
        if self._protector_factory is not None:
            return True
        import importlib.util

        try:  # a regular package (with __init__), without importing it here
            spec = importlib.util.find_spec("facetrust.protect")
        except (ImportError, ValueError):
            return False
        return spec is not None and spec.origin is not None

    def _protector(self, strength: str) -> Any:
        """One protector per worker thread and strength (protectors need not be thread-safe)."""
        cache = getattr(self._local, "protectors", None)
        if cache is None:
            cache = self._local.protectors = {}
        if strength not in cache:
            cache[strength] = self.protector_factory()(strength)
        return cache[strength]

    def submit_protect(self, data: bytes, strength: str) -> Any:
        """Validate an image upload, then queue a protection job (``QueueFull`` when full)."""
        self.start()
        self.protector_factory()  # 503 now rather than a failed job later
        cost = upload_cost(data, None, 0, self.limits.max_pixels)
        budget = self.protect_budget.with_timeout(self.settings.request_timeout_s)
        with use_budget(budget), self.gate.hold(cost, budget.remaining()):
            image = load_image(data, self.limits)  # bad input is a 4xx now, not a failed job
            del image
        task = protect_task(self._protector, strength, self.limits, self.gate, self.protect_budget)
        assert self.runner is not None
        return self.runner.submit("protect", task, data, {"strength": strength})

    # ---- status ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        self.start()
        det = self._detector
        runner = self.runner
        counts = self.store.counts() if self.store is not None else {}
        return {
            "status": "ok" if det is not None else "no_model",
            "version": __version__,
            "model": getattr(det, "model_name", None),
            "model_loaded": det is not None,
            "device": getattr(det, "device", None),
            "explainer_ready": self.settings.explain_method in self._explainers,
            "protect_available": self.protect_available(),
            "max_upload_bytes": self.settings.max_upload_bytes,
            "jobs": {
                "workers": runner.workers if runner else 0,
                "queue_size": runner.queue_size if runner else 0,
                "pending": runner.pending if runner else 0,
                "queued": counts.get("queued", 0),
                "running": counts.get("running", 0),
            },
        }

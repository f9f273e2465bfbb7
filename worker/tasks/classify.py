"""Stage 2 (queue ``classify``): keypoint tracks → action timeline → Prediction + Segment rows."""
from __future__ import annotations

from sqlalchemy import delete

from har.config import Settings
from har.database import session_scope
from har.db import REPORTING, PoseData, Prediction, Segment
from har.jobs import set_status
from models.action.timeline import NO_PERSON, TOO_SHORT
from worker import runtime
from worker.celery_app import CLASSIFY_TASK, celery_app
from worker.engines import get_classifier


def overall(result: dict) -> tuple[str | None, float | None]:
    """The summary shown in the jobs list: the label of the person seen longest
    (ties: the more confident); ``too_short`` when people were tracked but none long enough to
    classify, else ``no_person``."""
    persons = result.get("persons") or []
    if result.get("status") == TOO_SHORT:
        return TOO_SHORT, None
    if result.get("status") == NO_PERSON or not persons:
        return NO_PERSON, None
    main = max(persons, key=lambda p: (p.get("frames") or 0, p.get("confidence") or 0.0))
    return main.get("label"), main.get("confidence")


def run_classify(settings: Settings, job_id: str, task_id: str | None) -> bool:
    return runtime.run_claimed(settings, job_id, "classify", task_id, _classify)


def _classify(settings: Settings, claim: runtime.Claim) -> bool:
    """Tracks → timeline; commits Prediction + Segment rows, the result and the move to reporting."""
    job_id = claim.job_id
    from models.action.timeline import classify_extraction
    from models.tracks import PoseExtraction

    with session_scope(settings) as s:
        job = runtime.get_job(s, job_id)
        params = runtime.job_params(job, settings)
        pose = s.get(PoseData, job_id)
        if pose is None:
            raise runtime.JobError("The pose data of this job is missing; the pose stage did not finish.")
        data = pose.data
    with runtime.Heartbeat(settings, claim):
        extraction = PoseExtraction.from_bytes(data)
        classifier = get_classifier()
        result = classify_extraction(extraction, classifier, stride=params["stride"])

    with session_scope(settings) as s:
        job = runtime.lock_own(s, settings, claim)
        if job is None:
            return False
        s.execute(delete(Segment).where(Segment.job_id == job_id))
        s.execute(delete(Prediction).where(Prediction.job_id == job_id))
        classes = list(result.get("classes") or classifier.classes)
        for p in result.get("persons") or []:
            probs = p.get("probabilities") or {}
            if isinstance(probs, list):
                probs = dict(zip(classes, probs))
            s.add(Prediction(job_id=job_id, track_id=int(p["track_id"]), label=str(p["label"])[:32],
                             confidence=float(p["confidence"]), start_s=float(p["start_s"]),
                             end_s=float(p["end_s"]), frames=int(p["frames"]),
                             probabilities={k: float(v) for k, v in probs.items()}))
            for seg in p.get("segments") or []:
                s.add(Segment(job_id=job_id, track_id=int(p["track_id"]), label=str(seg["label"])[:32],
                              start_s=float(seg["start_s"]), end_s=float(seg["end_s"]),
                              confidence=float(seg["confidence"])))
        label, confidence = overall(result)
        timings = dict(job.timings or {})
        timings["classify_s"] = runtime.stage_elapsed(claim)
        n = len(result.get("persons") or [])
        set_status(s, job, REPORTING, f"{n} person(s) classified; waiting for the report",
                   result=result, overall_label=label,
                   overall_confidence=None if confidence is None else float(confidence),
                   persons=n, action_model=f"{classifier.name} {classifier.version}"[:128],
                   timings=timings, task_id=None, worker=None, attempts=0)
    return True


@celery_app.task(name=CLASSIFY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def classify_task(self, job_id: str) -> bool:
    return runtime.run_stage(self, "classify", run_classify, job_id)

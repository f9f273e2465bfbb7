"""Celery workers: pose → classify → report (see worker.celery_app)."""

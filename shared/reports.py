"""The maintenance reports read back as models (the ``ReportStore`` port keeps them as JSON)."""

from __future__ import annotations

from shared.ports import ReportStore
from shared.report_models import CleanupRun, HealthRun, QueueHealth, Recount


def read_health(reports: ReportStore, queue_name: str) -> QueueHealth | None:
    """The queue's health as the HealthFunction last stored it (None before its first run)."""
    report = reports.get_queue_report(queue_name, "HEALTH")
    return QueueHealth.model_validate(report) if report else None


def read_recount(reports: ReportStore, queue_name: str) -> Recount | None:
    """The queue's last recount of its counters (None before the first)."""
    report = reports.get_queue_report(queue_name, "RECOUNT")
    return Recount.model_validate(report) if report else None


def read_last_health_run(reports: ReportStore) -> HealthRun | None:
    report = reports.get_run("HEALTH")
    return HealthRun.model_validate(report) if report else None


def read_last_cleanup_run(reports: ReportStore) -> CleanupRun | None:
    report = reports.get_run("CLEANUP")
    return CleanupRun.model_validate(report) if report else None


__all__ = ["read_health", "read_last_cleanup_run", "read_last_health_run", "read_recount"]

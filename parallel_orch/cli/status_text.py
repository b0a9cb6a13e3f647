"""How `status`, `watch` and `status SESSION` put the daemon's answers into words."""

from __future__ import annotations

from parallel_orch.daemon import protocol as p
from parallel_orch.report.renderers.words import eta, plural, seconds


def summary_line(summary: p.SessionSummary) -> str:
    """``session ID: running (4 tests: pending 2, running 2), ETA 2s``; how its webhook's
    delivery went, once there is one."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items())) or "no tests"
    took = summary.duration_seconds
    line = f"session {summary.session_id}: {summary.status}"
    line += f" in {seconds(took)}" if took is not None else ""
    line += f" ({plural(summary.total, 'test')}: {counts})"
    line += f", {eta(summary.eta_seconds)}" if summary.eta_seconds is not None else ""
    return line + (f"; webhook {summary.notify_status}" if summary.notify_status else "")


def daemon_lines(status: p.DaemonStatus) -> list[str]:
    """The daemon, then each busy worker and each running session, a line each (from the
    daemon's memory: a session's ETA is in its own status)."""
    busy = [w for w in status.workers if w.test_id is not None]
    lines = [
        f"daemon pid {status.pid}, {'accepting' if status.accepting else 'stopping'}, up "
        f"{status.uptime_seconds:.0f}s; workers {len(busy)}/{status.num_workers} busy, "
        f"{status.queued} queued, {plural(status.connections, 'connection')}"
    ]
    lines += [f"  worker {w.worker}: {w.test_id} ({w.session_id})" for w in busy]
    lines += [
        f"  session {s.session_id}: {s.outstanding} to go ({s.queued} queued, "
        f"{s.running} running), {s.failures} failed, priority {s.priority}"
        for s in status.sessions
    ]
    return lines

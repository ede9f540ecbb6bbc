"""Self-contained HTML report: ``nt.report.write(results, "report.html")``."""

from neurotask.report.writer import SECTIONS, write

__all__ = ["SECTIONS", "write"]

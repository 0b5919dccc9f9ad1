"""Insight into a quantized model: per-layer statistics, sensitivity, mixed precision, reports.

    analysis = intquant.analyze(model, qmodel_or_config, data)
    print(analysis_markdown(analysis))
    write_report(analysis, "out/")            # report.md + self-contained report.html
    result = intquant.search_bits(model, calib, eval_data, budget_bytes=...)

Modules depend one way: ``stats`` (measuring) ← ``report`` (rendering; matplotlib only inside
``write_report``) ← this package.
"""

from .report import analysis_markdown, write_report
from .stats import Analysis, LayerStats, analyze, sqnr_db

__all__ = ["Analysis", "LayerStats", "analysis_markdown", "analyze", "search_bits", "sqnr_db",
           "write_report"]


def __getattr__(name: str):
    # mixed (search_bits) is imported on first use: analysis alone stays light.
    if name == "search_bits":
        from .mixed import search_bits

        return search_bits
    raise AttributeError(f"module 'intquant.analysis' has no attribute {name!r}")

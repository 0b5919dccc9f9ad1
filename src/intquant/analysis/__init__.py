"""Insight into a quantized model: per-layer statistics, sensitivity, mixed precision, reports.

    analysis = intquant.analyze(model, qmodel_or_config, data)
    print(analysis.to_markdown())
    write_report(analysis, "out/")            # report.md + self-contained report.html
    result = intquant.search_bits(model, calib, eval_data, budget_bytes=...)
"""

from .stats import Analysis, LayerStats, analyze, sqnr_db

__all__ = ["Analysis", "LayerStats", "analyze", "search_bits", "sqnr_db", "write_report"]


def __getattr__(name: str):
    # report (matplotlib) and mixed are imported on first use: analysis alone stays light.
    if name == "write_report":
        from .report import write_report

        return write_report
    if name == "search_bits":
        from .mixed import search_bits

        return search_bits
    raise AttributeError(f"module 'intquant.analysis' has no attribute {name!r}")

"""Metrics: CLIP similarity, LPIPS, FID, recall@k and the statistics that turn per-example rows into tables.

Each module wraps the reference library (open_clip, lpips, torch-fidelity) rather than re-implementing
it; what gill-eval adds is batching, fixed conventions (resizes, dtypes) and provenance.
"""

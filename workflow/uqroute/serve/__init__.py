"""``uqroute serve``: the study's router as an OpenAI-compatible HTTP server.

The SLM answers every request greedily; its confidence, computed by the same
:mod:`uqroute.uq` functions the workflow scores its pass tables with, is compared
with a threshold taken from a released calibration set
(:func:`uqroute.analysis.calibration.thresholds_for_ratios`, as the generalization
rule does); below it the request goes to the LLM.

Modules: :mod:`.config` (settings, YAML + command line), :mod:`.calibration`
(threshold from a release file), :mod:`.batching` (concurrent requests into one
engine call), :mod:`.router` (the per-request decision), :mod:`.metrics`
(Prometheus and drift), :mod:`.app` (the FastAPI application).
"""

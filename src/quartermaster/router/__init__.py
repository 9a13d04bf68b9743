"""The request-time router service (``quartermaster router serve``).

An OpenAI-compatible proxy in front of the planned vLLM Services: it maps each request to its query
cluster (nearest representative embedding, or the default cluster), picks a model by the plan's weights,
clamps ``max_tokens`` to the cluster's token budget, escalates weak non-streamed answers up the
cluster's ladder, and reports metrics and per-cluster rates.

Modules: :mod:`~quartermaster.router.app` (starlette app, ``create_app``), :mod:`.config` (mounted
ConfigMap, hot reload, last good config), :mod:`.table` (compiled config), :mod:`.index` (faiss
representative index), :mod:`.embedder` (where embeddings come from), :mod:`.policy` (routing
decisions), :mod:`.escalation` (cascade + quality judges), :mod:`.upstream` (pooled client, retries,
streaming), :mod:`.openai` (request checks, refusals), :mod:`.errors` (OpenAI-style errors),
:mod:`.metrics` (Prometheus, rates, ``sum_rates``), :mod:`.sse` (usage from streams), :mod:`.stub`
(loopback OpenAI stub for tests, benchmarks and demos).
"""

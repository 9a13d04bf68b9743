"""Routing, escalation and token budgets (pure: numpy, scipy, scikit-learn, faiss; no Kubernetes).

Public entry points:

- :mod:`~quartermaster.routing.evaluation` — :func:`load_eval_table` (long-format Parquet/CSV),
  :class:`EvalTable`, :func:`assign_to_representatives` (faiss, nearest representative),
  :func:`kmeans_clusters`.
- :mod:`~quartermaster.routing.stage1` — :func:`instance_from_table` (shrunk per-cluster errors),
  :func:`pareto_front`, :func:`lower_hull`, :func:`crossovers`, :func:`regions`,
  :func:`solve(instance, budget, mix=False) <solve>` -> :class:`RoutingTable` (``lambda*``, cluster -> model
  shares, predicted accuracy/cost, escalation ladder), :func:`evaluate`.
- :mod:`~quartermaster.routing.quality` — :class:`QualityEstimator` protocol
  (``score(question, answer, tokens) -> accept probability``, cheap and thread-safe),
  :class:`HeuristicEstimator`, :class:`TrainedEstimator` (``save``/:func:`load_estimator`),
  :class:`HttpJudgeEstimator`.
- :mod:`~quartermaster.routing.cascade` — :func:`calibrate_threshold`, :func:`simulate_cascade`.
- :mod:`~quartermaster.routing.utility` / :mod:`~quartermaster.routing.budget` — CLEAR: :func:`fit_utility`,
  :func:`allocate(items, budget, policy=...) <allocate>` -> :class:`Allocation` (tokens per cluster = router
  ``maxTokens`` and planner ``f_i``).
- :mod:`~quartermaster.routing.config` — :func:`build_router_config` -> the router ConfigMap document
  (:mod:`quartermaster.api.routerconfig`).
"""

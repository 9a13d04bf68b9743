"""The planner's frozen input: classes, models, GPU tiers and every deployment option, evaluated.

:meth:`Instance.from_specs` turns the user's manifests (ModelCatalog, InferencePool, query classes) into an
:class:`Instance`: one :class:`Option` per (model, precision, node pool, TP, PP) that can exist at all, and
``(O, I)`` arrays with the M1 verdict (:class:`~quartermaster.planner.performance.Reason`), replica throughput
``mu``, predicted TTFT/TPOT and error for every (option, class) pair. Options that can never be used
(parallel degree impossible, weights never fit, no class feasible) and options *dominated* by another option
of the same model, precision and pool are left out and listed in :attr:`Instance.rejected`.

Dominance (exact, keeps the MILP optimum): option ``b`` is dominated by ``a`` when both share model, precision
and pool, ``g_b = m g_a`` for an integer ``m``, ``a`` is feasible for every class ``b`` is, and
``m mu_a >= mu_b`` for those classes: ``m`` replicas of ``a`` cost and occupy exactly what one of ``b`` does
and carry at least as much of every class at the same error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from quartermaster.api.catalog import ModelCatalogSpec, ModelSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.planner.errors import InvalidSpecError, UnknownGpuTypeError, UnknownModelError
from quartermaster.planner.gpus import GpuType, allreduce_model, gpu_type, gpu_type_names
from quartermaster.planner.performance import (
    BYTES_PER_PARAM,
    PRECISION_ERROR_FACTOR,
    REASON_TEXT,
    ClassArrays,
    OptionArrays,
    PerfParams,
    PerfTable,
    ProfileCurve,
    Reason,
    evaluate,
)

logger = logging.getLogger(__name__)

TENSOR_PARALLEL = (1, 2, 4, 8)
PIPELINE_PARALLEL = (1, 2, 4)
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class QueryClass:
    """One class of demand with its resolved SLOs."""

    name: str
    rate: float
    prompt_tokens: float
    output_tokens: float
    ttft: float
    tpot: float
    max_error: float
    penalty: float
    max_unserved: float


@dataclass(frozen=True)
class Model:
    """A catalog model as the planner sees it."""

    name: str
    spec: ModelSpec = field(repr=False, compare=False)

    @property
    def hf_id(self) -> str:
        return self.spec.hf_id


@dataclass(frozen=True)
class Tier:
    """A GPU node pool."""

    name: str
    gpu: GpuType
    gpus: int
    gpus_per_node: int
    interconnect: str
    price: float
    max_tp: int
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[tuple[tuple[str, str], ...], ...] = ()


@dataclass(frozen=True)
class Option:
    """A deployment option: one replica of ``model`` in ``precision`` on ``tp x pp`` GPUs of ``tier``."""

    index: int
    model: int
    precision: str
    tier: int
    tp: int
    pp: int
    gpus: int
    cost: float
    """USD per hour of one replica."""
    name: str

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """``(model, precision, tier, tp, pp)`` from the name (stable across instances)."""
        model, precision, tier, par = self.name.split("/")
        tp, pp = par.removeprefix("tp").split("pp")
        return model, precision, tier, int(tp), int(pp)


@dataclass(frozen=True)
class Rejected:
    """An option left out of the instance and why."""

    option: str
    constraint: str
    detail: str


def option_name(model: str, precision: str, tier: str, tp: int, pp: int) -> str:
    """Canonical option name ``model/precision/tier/tpXppY``."""
    return f"{model}/{precision}/{tier}/tp{tp}pp{pp}"


@dataclass(frozen=True, eq=False)
class Instance:
    """Frozen planning instance. ``(O, I)`` arrays are read-only."""

    classes: tuple[QueryClass, ...]
    models: tuple[Model, ...]
    tiers: tuple[Tier, ...]
    options: tuple[Option, ...]
    perf: PerfTable = field(repr=False)
    error: FloatArray = field(repr=False)
    budget: float | None
    utilization: float
    params: PerfParams
    rejected: tuple[Rejected, ...] = field(default=(), repr=False)
    candidates: tuple[Option, ...] = field(default=(), repr=False)
    """Every generated option, including the left-out ones (for explanations)."""
    candidate_perf: PerfTable | None = field(default=None, repr=False)
    candidate_error: FloatArray | None = field(default=None, repr=False)
    delay_factor: float = 1.0
    error_factor: float = 1.0

    # -- convenient views -------------------------------------------------------------------------------
    @property
    def feasible(self) -> npt.NDArray[np.bool_]:
        """``(O, I)`` M1 verdict."""
        return np.asarray(self.perf.reason == Reason.OK)

    @property
    def mu(self) -> FloatArray:
        return self.perf.mu

    @property
    def rates(self) -> FloatArray:
        return np.array([c.rate for c in self.classes], dtype=np.float64)

    @property
    def costs(self) -> FloatArray:
        return np.array([o.cost for o in self.options], dtype=np.float64)

    @property
    def option_gpus(self) -> npt.NDArray[np.int64]:
        return np.array([o.gpus for o in self.options], dtype=np.int64)

    @property
    def option_tiers(self) -> npt.NDArray[np.int64]:
        return np.array([o.tier for o in self.options], dtype=np.int64)

    @property
    def size(self) -> tuple[int, int, int]:
        """``(classes, models, tiers)``."""
        return len(self.classes), len(self.models), len(self.tiers)

    def option_by_name(self, name: str) -> Option | None:
        """The option called ``name`` or ``None`` (e.g. when it was pruned)."""
        return _name_index(self).get(name)

    def class_index(self, name: str) -> int:
        return next(i for i, c in enumerate(self.classes) if c.name == name)

    # -- derived instances ------------------------------------------------------------------------------
    def with_rates(self, rates: Mapping[str, float] | Sequence[float] | FloatArray) -> Instance:
        """The same instance with new arrival rates (by class name or in class order)."""
        if isinstance(rates, Mapping):
            unknown = set(rates) - {c.name for c in self.classes}
            if unknown:
                raise InvalidSpecError(f"rates for unknown classes {sorted(unknown)}")
            values = [float(rates.get(c.name, c.rate)) for c in self.classes]
        else:
            values = [float(r) for r in rates]
            if len(values) != len(self.classes):
                raise InvalidSpecError(f"expected {len(self.classes)} rates, got {len(values)}")
        for c, r in zip(self.classes, values, strict=True):
            if not np.isfinite(r) or r < 0:
                raise InvalidSpecError(f"class {c.name!r}: rate={r} must be a finite number >= 0")
        classes = tuple(replace(c, rate=r) for c, r in zip(self.classes, values, strict=True))
        return replace(self, classes=classes)

    def with_budget(self, budget: float | None) -> Instance:
        return replace(self, budget=budget)

    def perturbed(self, delay_factor: float = 1.0, error_factor: float = 1.0) -> Instance:
        """Same options with TTFT/TPOT scaled by ``delay_factor`` and errors by ``error_factor`` (stress)."""
        perf, error = _evaluate_options(
            self.classes, self.models, self.tiers, self.options, self.params, delay_factor, error_factor
        )
        return replace(self, perf=perf, error=error, delay_factor=delay_factor, error_factor=error_factor)

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_specs(
        cls,
        catalog: ModelCatalogSpec,
        pool: InferencePoolSpec,
        classes: Sequence[QueryClassSpec] | None = None,
        *,
        params: PerfParams | None = None,
        prune: bool = True,
        keep_infeasible: bool = False,
    ) -> Instance:
        """Build the instance from the specs users apply (see module docstring).

        ``classes`` are the QueryClusterJob's classes when ``pool.classesFrom`` is used (ignored when the
        pool declares classes inline). Raises :class:`InvalidSpecError` subclasses for inconsistent specs.
        ``prune=False`` keeps dominated options; ``keep_infeasible=True`` also keeps options no class can use
        (only for the M1 ablation benchmark).
        """
        params = params or PerfParams()
        query_classes = _resolve_classes(pool, classes)
        models = _resolve_models(catalog, pool)
        tiers = _resolve_tiers(pool)
        _check_catalog_gpus(models)
        options, rejected = _generate_options(models, tiers)
        if not options:
            raise InvalidSpecError(
                "no deployment option exists: every (model, node pool, parallel degree) combination needs "
                "more GPUs than the pools have or an impossible TP degree; add GPUs or smaller models",
                field="spec.nodePools",
            )
        perf, error = _evaluate_options(query_classes, models, tiers, options, params, 1.0, 1.0)
        keep, more = _prune(options, perf, prune and not keep_infeasible, keep_infeasible)
        rejected.extend(more)
        candidates, candidate_perf, candidate_error = tuple(options), perf, error
        options = [replace(options[o], index=n) for n, o in enumerate(keep)]
        perf = _take(perf, np.asarray(keep, dtype=np.int64))
        error = error[keep]
        error.setflags(write=False)
        logger.info(
            "instance: %d classes, %d models, %d tiers, %d options kept, %d rejected",
            len(query_classes), len(models), len(tiers), len(options), len(rejected),
        )  # fmt: skip
        return cls(
            classes=tuple(query_classes),
            models=tuple(models),
            tiers=tuple(tiers),
            options=tuple(options),
            perf=perf,
            error=error,
            budget=pool.budget_per_hour,
            utilization=pool.planner.utilization,
            params=params,
            rejected=tuple(rejected),
            candidates=candidates,
            candidate_perf=candidate_perf,
            candidate_error=candidate_error,
        )


_NAME_CACHE: dict[int, tuple[Instance, dict[str, Option]]] = {}


def _name_index(instance: Instance) -> dict[str, Option]:
    cached = _NAME_CACHE.get(id(instance))
    if cached is not None and cached[0] is instance:
        return cached[1]
    index = {o.name: o for o in instance.options}
    if len(_NAME_CACHE) > 64:
        _NAME_CACHE.clear()
    _NAME_CACHE[id(instance)] = (instance, index)
    return index


def _resolve_classes(pool: InferencePoolSpec, classes: Sequence[QueryClassSpec] | None) -> list[QueryClass]:
    specs = pool.classes if pool.classes is not None else classes
    if not specs:
        raise InvalidSpecError(
            f"spec.classesFrom={pool.classes_from!r}: no query classes given; pass the QueryClusterJob's "
            "classes (or a classes file with -f)",
            field="spec.classesFrom",
        )
    seen: set[str] = set()
    result = []
    for spec in specs:
        if spec.name in seen:
            raise InvalidSpecError(f"class {spec.name!r} appears twice; class names must be unique")
        seen.add(spec.name)
        result.append(
            QueryClass(
                name=spec.name,
                rate=spec.rate,
                prompt_tokens=spec.prompt_tokens,
                output_tokens=spec.output_tokens,
                ttft=spec.ttft_seconds if spec.ttft_seconds is not None else pool.slo.ttft_seconds,
                tpot=spec.tpot_seconds if spec.tpot_seconds is not None else pool.slo.tpot_seconds,
                max_error=spec.max_error if spec.max_error is not None else pool.slo.max_error,
                penalty=spec.penalty,
                max_unserved=spec.max_unserved_share,
            )
        )
    return result


def _resolve_models(catalog: ModelCatalogSpec, pool: InferencePoolSpec) -> list[Model]:
    names = [m.name for m in catalog.models]
    if pool.models:
        for index, name in enumerate(pool.models):
            if name not in names:
                raise UnknownModelError(
                    f"spec.models[{index}]={name!r} is not in ModelCatalog {pool.catalog_ref!r} "
                    f"(models: {', '.join(names)}); fix the name or add the model to the catalog",
                    field=f"spec.models[{index}]",
                )
        return [Model(m.name, m) for m in catalog.models if m.name in pool.models]
    return [Model(m.name, m) for m in catalog.models]


def _resolve_tiers(pool: InferencePoolSpec) -> list[Tier]:
    tiers = []
    for index, spec in enumerate(pool.node_pools):
        gpu = gpu_type(spec.gpu_type)
        if gpu is None:
            raise UnknownGpuTypeError(
                f"spec.nodePools[{index}].gpuType={spec.gpu_type!r} is not a known GPU type; use one of "
                f"{', '.join(gpu_type_names())}",
                field=f"spec.nodePools[{index}].gpuType",
            )
        max_tp = min(spec.gpus_per_node, spec.max_tensor_parallel or spec.gpus_per_node)
        tolerations = tuple(
            tuple((k, str(v)) for k, v in tol.model_dump(by_alias=True, exclude_none=True).items())
            for tol in spec.tolerations
        )
        tiers.append(
            Tier(
                name=spec.name,
                gpu=gpu,
                gpus=spec.gpus,
                gpus_per_node=spec.gpus_per_node,
                interconnect=spec.interconnect or gpu.interconnect,
                price=spec.price_per_gpu_hour if spec.price_per_gpu_hour is not None else gpu.price_per_hour,
                max_tp=max_tp,
                node_selector=tuple(sorted(spec.node_selector.items())),
                tolerations=tolerations,
            )
        )
    return tiers


def _check_catalog_gpus(models: Sequence[Model]) -> None:
    for j, model in enumerate(models):
        for n, prof in enumerate(model.spec.profiles):
            if gpu_type(prof.gpu_type) is None:
                raise UnknownGpuTypeError(
                    f"model {model.name!r}: profiles[{n}].gpuType={prof.gpu_type!r} is not a known GPU type; "
                    f"use one of {', '.join(gpu_type_names())}",
                    field=f"spec.models[{j}].profiles[{n}].gpuType",
                )
        for n, cal in enumerate(model.spec.calibrations):
            if gpu_type(cal.gpu_type) is None:
                raise UnknownGpuTypeError(
                    f"model {model.name!r}: calibrations[{n}].gpuType={cal.gpu_type!r} is not a known GPU "
                    f"type; use one of {', '.join(gpu_type_names())}",
                    field=f"spec.models[{j}].calibrations[{n}].gpuType",
                )


def _generate_options(models: Sequence[Model], tiers: Sequence[Tier]) -> tuple[list[Option], list[Rejected]]:
    options: list[Option] = []
    rejected: list[Rejected] = []
    for j, model in enumerate(models):
        heads = model.spec.heads
        for precision in model.spec.precisions:
            for k, tier in enumerate(tiers):
                for tp in TENSOR_PARALLEL:
                    for pp in PIPELINE_PARALLEL:
                        name = option_name(model.name, precision, tier.name, tp, pp)
                        if tp > tier.max_tp:
                            if pp == 1:
                                rejected.append(
                                    Rejected(name, "tp", f"TP {tp} > {tier.max_tp} GPUs per node")
                                )
                            continue
                        if heads % tp:
                            rejected.append(
                                Rejected(name, "tp", f"{heads} attention heads not divisible by TP {tp}")
                            )
                            continue
                        if tp * pp > tier.gpus:
                            rejected.append(
                                Rejected(name, "gpus", f"needs {tp * pp} GPUs, pool has {tier.gpus}")
                            )
                            continue
                        cost = tier.price * tp * pp
                        options.append(Option(len(options), j, precision, k, tp, pp, tp * pp, cost, name))
    return options, rejected


def _evaluate_options(
    classes: Sequence[QueryClass],
    models: Sequence[Model],
    tiers: Sequence[Tier],
    options: Sequence[Option],
    params: PerfParams,
    delay_factor: float,
    error_factor: float,
) -> tuple[PerfTable, FloatArray]:
    cols: dict[str, list[float]] = {name: [] for name in OptionArrays.__dataclass_fields__}
    profiles: dict[int, ProfileCurve] = {}
    for row, opt in enumerate(options):
        spec = models[opt.model].spec
        tier = tiers[opt.tier]
        gpu = tier.gpu
        cal = next((c for c in spec.calibrations if gpu_type(c.gpu_type) is gpu), None)
        ar = allreduce_model("nvlink" if tier.interconnect == "nvlink" else "pcie")
        key = min(ar.latency_s, key=lambda n: (abs(n - opt.tp), n))
        values = {
            "params_b": spec.params_b,
            "active_params_b": spec.active_params_b or spec.params_b,
            "bytes_per_param": BYTES_PER_PARAM[opt.precision],
            "layers": spec.layers,
            "hidden": spec.hidden_size,
            "attn_dim": spec.heads * spec.head_dim,
            "kv_per_token": 2 * spec.layers * spec.kv_heads * spec.head_dim,
            "max_context": spec.max_context_tokens,
            "tp": opt.tp,
            "pp": opt.pp,
            "memory_gb": gpu.memory_gb,
            "bandwidth_gbs": gpu.bandwidth_gbs,
            "tflops": gpu.tflops(opt.precision),
            "eta_bandwidth": cal.eta_bandwidth if cal and cal.eta_bandwidth else gpu.eta_bandwidth,
            "eta_compute": cal.eta_compute if cal and cal.eta_compute else gpu.eta_compute,
            "layer_overhead_s": gpu.layer_overhead_s,
            "ar_latency_s": ar.latency_s[key],
            "ar_bandwidth": ar.bandwidth_bytes_s[key],
            "tpot_scale": (cal.tpot_scale if cal else 1.0) * delay_factor,
            "ttft_scale": (cal.ttft_scale if cal else 1.0) * delay_factor,
        }
        for name, value in values.items():
            cols[name].append(float(value))
        prof = next(
            (
                p
                for p in spec.profiles
                if gpu_type(p.gpu_type) is gpu
                and p.precision == opt.precision
                and p.tensor_parallel == opt.tp
                and p.pipeline_parallel == opt.pp
            ),
            None,
        )
        if prof is not None:
            ttfts = [pt.ttft_seconds for pt in prof.points if pt.ttft_seconds is not None]
            profiles[row] = ProfileCurve(
                batch=np.array([pt.batch_size for pt in prof.points], dtype=np.float64),
                tpot=np.array([pt.tpot_seconds for pt in prof.points], dtype=np.float64),
                prefill_per_token=(float(np.median(ttfts)) / prof.prompt_tokens) if ttfts else float("nan"),
            )
    arrays = OptionArrays(**{k: np.asarray(v, dtype=np.float64) for k, v in cols.items()})
    class_arrays = ClassArrays(
        prompt=np.array([c.prompt_tokens for c in classes], dtype=np.float64),
        output=np.array([c.output_tokens for c in classes], dtype=np.float64),
        ttft_slo=np.array([c.ttft for c in classes], dtype=np.float64),
        tpot_slo=np.array([c.tpot for c in classes], dtype=np.float64),
    )
    perf = evaluate(arrays, class_arrays, params, profiles).freeze()
    error = np.empty((len(options), len(classes)), dtype=np.float64)
    for row, opt in enumerate(options):
        spec = models[opt.model].spec
        factor = spec.precision_error_factors.get(opt.precision, PRECISION_ERROR_FACTOR[opt.precision])
        error[row] = [min(1.0, spec.error_for(c.name) * factor * error_factor) for c in classes]
    error.setflags(write=False)
    return perf, error


def _prune(
    options: Sequence[Option], perf: PerfTable, prune: bool, keep_infeasible: bool
) -> tuple[list[int], list[Rejected]]:
    feasible = perf.reason == Reason.OK
    rejected: list[Rejected] = []
    alive = feasible.any(axis=1)
    if keep_infeasible:
        alive = np.asarray(perf.reason != Reason.WEIGHTS).any(axis=1)
    for o in np.flatnonzero(~alive):
        codes, counts = np.unique(perf.reason[o], return_counts=True)
        reason = Reason(int(codes[np.argmax(counts)]))
        rejected.append(
            Rejected(options[int(o)].name, reason.name.lower(), f"{REASON_TEXT[reason]} for every class")
        )
    if prune:
        groups: dict[tuple[int, str, int], list[int]] = {}
        for o in np.flatnonzero(alive):
            opt = options[int(o)]
            groups.setdefault((opt.model, opt.precision, opt.tier), []).append(int(o))
        for members in groups.values():
            for b in members:
                for a in members:
                    if a == b or not alive[a] or options[b].gpus % options[a].gpus:
                        continue
                    m = options[b].gpus // options[a].gpus
                    fb = feasible[b]
                    if not np.all(feasible[a][fb]) or not np.all(
                        m * perf.mu[a][fb] >= perf.mu[b][fb] * (1 - 1e-12)
                    ):
                        continue
                    mutual = (
                        m == 1 and np.array_equal(feasible[a], fb) and np.allclose(perf.mu[a], perf.mu[b])
                    )
                    if mutual and a > b:
                        continue
                    alive[b] = False
                    rejected.append(
                        Rejected(
                            options[b].name, "dominated", f"{m} x {options[a].name} serve more at equal cost"
                        )
                    )
                    break
    return [int(o) for o in np.flatnonzero(alive)], rejected


def _take(perf: PerfTable, rows: npt.NDArray[np.int64]) -> PerfTable:
    return PerfTable(
        reason=perf.reason[rows],
        batch=perf.batch[rows],
        b_mem=perf.b_mem[rows],
        ttft=perf.ttft[rows],
        tpot=perf.tpot[rows],
        tpot1=perf.tpot1[rows],
        prefill=perf.prefill[rows],
        mu=perf.mu[rows],
        mu_nominal=perf.mu_nominal[rows],
    ).freeze()

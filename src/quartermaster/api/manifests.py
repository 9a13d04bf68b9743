"""Load multi-document YAML manifests (``apiVersion: quartermaster.dev/v1alpha1``) into spec models.

Recognised documents:

- ``kind: ModelCatalog`` -> :class:`~quartermaster.api.catalog.ModelCatalogSpec`
- ``kind: InferencePool`` -> :class:`~quartermaster.api.pool.InferencePoolSpec`
- ``kind: QueryClusterJob`` -> its ``status.classes`` (a list of query classes), when present
- a plain document ``{classes: [...]}`` (optionally with ``name``) -> a classes file

Documents of other kinds (Deployments, ConfigMaps, ...) are skipped so that a whole ``examples/`` directory
can be passed. Every problem raises :class:`ManifestError` naming the file, the document, the field, the value
and the fix.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.classes import API_GROUP_VERSION, QueryClassList, QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec

KINDS = ("ModelCatalog", "InferencePool", "QueryClusterJob")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the document, the field, the value and the fix."""


@dataclass
class ManifestSet:
    """Everything found in a set of manifest files, keyed by ``metadata.name``."""

    catalogs: dict[str, ModelCatalogSpec] = field(default_factory=dict)
    pools: dict[str, InferencePoolSpec] = field(default_factory=dict)
    class_sets: dict[str, list[QueryClassSpec]] = field(default_factory=dict)
    """Query classes by QueryClusterJob name (or classes-file name; ``""`` when unnamed)."""
    pending_jobs: list[str] = field(default_factory=list)
    """QueryClusterJobs without ``status.classes`` yet."""

    def merge(self, other: ManifestSet) -> None:
        """Add ``other``'s documents; a name defined twice raises :class:`ManifestError`."""
        for mine, theirs, kind in (
            (self.catalogs, other.catalogs, "ModelCatalog"),
            (self.pools, other.pools, "InferencePool"),
            (self.class_sets, other.class_sets, "classes"),
        ):
            for name, value in theirs.items():
                if name in mine:
                    raise ManifestError(f"{kind} {name!r} is defined twice; keep one definition")
                mine[name] = value  # type: ignore[assignment]
        self.pending_jobs.extend(other.pending_jobs)

    def pool(self, name: str | None = None) -> tuple[str, InferencePoolSpec]:
        """The pool called ``name``, or the only pool when ``name`` is ``None``."""
        if name is not None:
            if name not in self.pools:
                raise ManifestError(f"no InferencePool named {name!r}; found {sorted(self.pools) or 'none'}")
            return name, self.pools[name]
        if len(self.pools) != 1:
            raise ManifestError(
                f"expected exactly one InferencePool, found {len(self.pools)} ({sorted(self.pools)}); "
                "pass the pool's name (--pool)"
            )
        return next(iter(self.pools.items()))

    def catalog_for(self, pool: InferencePoolSpec) -> ModelCatalogSpec:
        """The ModelCatalog named by ``pool.catalogRef``."""
        if pool.catalog_ref not in self.catalogs:
            raise ManifestError(
                f"spec.catalogRef={pool.catalog_ref!r}: no ModelCatalog of that name was given "
                f"(found {sorted(self.catalogs) or 'none'}); add its manifest with -f or fix catalogRef"
            )
        return self.catalogs[pool.catalog_ref]

    def classes_for(self, pool: InferencePoolSpec) -> list[QueryClassSpec]:
        """The pool's query classes: inline, or the classes of ``classesFrom``."""
        if pool.classes is not None:
            return list(pool.classes)
        name = pool.classes_from or ""
        if name in self.class_sets:
            return list(self.class_sets[name])
        if "" in self.class_sets and len(self.class_sets) == 1:
            return list(self.class_sets[""])
        if name in self.pending_jobs:
            raise ManifestError(
                f"spec.classesFrom={name!r}: QueryClusterJob {name!r} has no status.classes yet; wait for "
                "the job to finish or pass a classes file with -f"
            )
        raise ManifestError(
            f"spec.classesFrom={name!r}: no classes found for it; pass a classes file "
            f"(a document with 'classes: [...]') or the QueryClusterJob with its status using -f"
        )


def _format_validation(error: ValidationError, where: str, prefix: str) -> str:
    parts = []
    for item in error.errors()[:3]:
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"]).replace(".[", "[")
        value = item.get("input")
        shown = "" if isinstance(value, Mapping | list) else f" (got {value!r})"
        message = item["msg"].removeprefix("Value error, ")
        path = ".".join(p for p in (prefix, loc) if p).replace(".[", "[")
        parts.append(f"{path or 'document'}: {message}{shown}")
    more = f" (+{len(error.errors()) - 3} more)" if len(error.errors()) > 3 else ""
    return f"{where}: " + "; ".join(parts) + more


def _validate(model: type[BaseModel], data: Any, where: str, prefix: str = "spec") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_format_validation(exc, where, prefix)) from None


def parse_documents(docs: Iterable[Any], source: str = "<input>") -> ManifestSet:
    """Parse already-loaded YAML documents (dicts) into a :class:`ManifestSet`."""
    result = ManifestSet()
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        where = f"{source} document {index}"
        if not isinstance(doc, Mapping):
            raise ManifestError(f"{where}: expected a mapping, got {type(doc).__name__}")
        kind = doc.get("kind")
        if kind is None and "classes" in doc:
            name = str(doc.get("name", ""))
            classes = _validate(QueryClassList, {"classes": doc["classes"]}, f"{where} (classes file)", "")
            result.merge(ManifestSet(class_sets={name: list(classes.classes)}))
            continue
        if kind not in KINDS:
            continue
        api_version = doc.get("apiVersion")
        if api_version != API_GROUP_VERSION:
            raise ManifestError(
                f"{where} ({kind}): apiVersion={api_version!r} is not supported; use {API_GROUP_VERSION}"
            )
        metadata = doc.get("metadata") or {}
        raw_name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not raw_name:
            raise ManifestError(f"{where} ({kind}): metadata.name is missing; give the object a name")
        name = str(raw_name)
        where = f"{where} ({kind} {name!r})"
        if kind == "ModelCatalog":
            result.merge(ManifestSet(catalogs={name: _validate(ModelCatalogSpec, doc.get("spec"), where)}))
        elif kind == "InferencePool":
            result.merge(ManifestSet(pools={name: _validate(InferencePoolSpec, doc.get("spec"), where)}))
        else:
            status = doc.get("status") or {}
            raw = status.get("classes") if isinstance(status, Mapping) else None
            if raw:
                classes = _validate(QueryClassList, {"classes": raw}, where, "status")
                result.merge(ManifestSet(class_sets={name: list(classes.classes)}))
            else:
                result.pending_jobs.append(name)
    return result


def load_manifests(paths: Iterable[str | pathlib.Path]) -> ManifestSet:
    """Load every document of every file in ``paths`` (``-`` is not supported; pass files)."""
    result = ManifestSet()
    for path in paths:
        p = pathlib.Path(path)
        if not p.is_file():
            raise ManifestError(f"{p}: no such file; check the path given with -f")
        try:
            docs = list(yaml.safe_load_all(p.read_text()))
        except yaml.YAMLError as exc:
            raise ManifestError(f"{p}: not valid YAML ({exc}); fix the syntax") from None
        result.merge(parse_documents(docs, str(p)))
    return result

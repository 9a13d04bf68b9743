"""Kubernetes adapter: server-side apply under one field manager, reads, owned-object listing, deletes.

Writes are skipped when the live object already carries the desired object's applied-hash annotation, so a
reconcile that changes nothing sends no write request at all. API errors are not swallowed: transient ones
become ``kopf.TemporaryError`` in the handlers, never a logged-and-ignored failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from quartermaster.api.crdgen import GROUP

log = logging.getLogger(__name__)

FIELD_MANAGER = "quartermaster"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"


def applied_hash(obj: dict[str, Any]) -> str:
    """SHA-256 of the object's canonical JSON (without the applied-hash annotation itself)."""
    meta = dict(obj.get("metadata", {}))
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != APPLIED_HASH_ANNOTATION}
    meta["annotations"] = annotations
    canonical = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the current kubeconfig (``KUBECONFIG``)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()  # type: ignore[no-untyped-call, no-any-return]


class Kube:
    """Thin synchronous adapter over the dynamic client (kopf runs sync handlers in worker threads)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            obj = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(obj.to_dict())

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        return [dict(item.to_dict()) for item in found.items]

    def apply(self, obj: dict[str, Any], live: dict[str, Any] | None = None) -> bool:
        """Server-side apply ``obj``; returns False (and writes nothing) when it is already applied."""
        digest = applied_hash(obj)
        meta = obj["metadata"]
        if live is None:
            live = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta["namespace"])
        if live and live["metadata"].get("annotations", {}).get(APPLIED_HASH_ANNOTATION) == digest:
            return False
        body = {
            **obj,
            "metadata": {
                **meta,
                "annotations": {**meta.get("annotations", {}), APPLIED_HASH_ANNOTATION: digest},
            },
        }
        self._resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=body,
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        log.info("applied %s %s/%s", obj["kind"], meta["namespace"], meta["name"])
        return True

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        except NotFoundError:
            return

    def custom_object(self, kind_plural: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            obj = client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
                GROUP, "v1alpha1", namespace, kind_plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

"""Quartermaster: a Kubernetes operator that makes LLM serving cheap, with guarantees."""

__version__ = "0.1.0"

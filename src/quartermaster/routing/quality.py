"""Answer-quality estimators for the escalation cascade (Stage 2 of Cluster-Route-Escalate).

An estimator judges a cheap model's answer: ``score(question, answer, tokens) -> accept probability``; the
router re-sends the query to the next model of the ladder when the probability is below the cluster's
threshold. Implementations must be cheap and thread-safe (the router calls them concurrently and never
mutates them):

- :class:`HeuristicEstimator` — no training: refusal/uncertainty markers, truncation, repetition, length.
- :class:`TrainedEstimator` — scikit-learn logistic regression on a hashed n-gram embedding of the question
  and the answer plus the standardised heuristic answer features. Scoring uses only the stateless hashing
  vectoriser and the learned coefficients (read-only, about 1 ms per answer);
  :meth:`TrainedEstimator.save` / :func:`load_estimator` pickle it with a format and scikit-learn version
  check (load only artefacts you produced: unpickling runs code).
- :class:`HttpJudgeEstimator` — POSTs ``{"question", "answer", "tokens"}`` to an external judge and reads
  ``{"accept_probability": p}`` (or ``"score"``); failures are logged and answered per ``on_error``.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from quartermaster.routing.errors import EstimatorError

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "quartermaster.quality/v1"
REFUSAL = re.compile(
    r"\b(i cannot|i can't|i can not|i'm sorry|i am sorry|as an ai|i am unable|i'm unable|unable to answer|"
    r"cannot (?:help|answer|provide)|i won't|i do not know|i don't know)\b"
)
UNCERTAIN = re.compile(
    r"\b(not sure|i think|maybe|perhaps|might be|possibly|unclear|i guess|it seems|likely|probably|"
    r"approximately|roughly|i believe|could be)\b"
)
FINAL = re.compile(r"(the answer is|final answer|####|\\boxed|answer:)")
FEATURE_NAMES = (
    "log_tokens",
    "log_answer_chars",
    "log_question_chars",
    "refusals",
    "uncertainty",
    "empty",
    "truncated",
    "repetition",
    "digit_ratio",
    "final_answer_marker",
    "question_marks",
)


@runtime_checkable
class QualityEstimator(Protocol):
    """Judges an answer: the probability that it is acceptable (cheap, thread-safe, never raises on text)."""

    def score(self, question: str, answer: str, tokens: int) -> float: ...


def answer_features(question: str, answer: str, tokens: int, max_tokens: int | None = None) -> list[float]:
    """The hand-made features named by :data:`FEATURE_NAMES` (lower-cased matching, O(len(answer)))."""
    text = answer.lower()
    words = text.split()
    repetition = 1.0 - len(set(words)) / len(words) if len(words) >= 8 else 0.0
    digits = sum(ch.isdigit() for ch in answer) / max(len(answer), 1)
    truncated = float(max_tokens is not None and tokens >= max_tokens)
    return [
        math.log1p(max(tokens, 0)),
        math.log1p(len(answer)),
        math.log1p(len(question)),
        float(len(REFUSAL.findall(text))),
        float(len(UNCERTAIN.findall(text))),
        float(not answer.strip()),
        truncated,
        repetition,
        digits,
        float(bool(FINAL.search(text))),
        float(answer.count("?")),
    ]


class HeuristicEstimator:
    """A logistic score of refusal, uncertainty, emptiness, truncation and repetition (no training)."""

    def __init__(
        self,
        max_tokens: int | None = None,
        bias: float = 1.5,
        refusal_weight: float = 3.0,
        uncertainty_weight: float = 0.6,
        truncation_weight: float = 2.5,
        repetition_weight: float = 4.0,
        final_answer_weight: float = 0.5,
    ) -> None:
        self.max_tokens = max_tokens
        self.bias = bias
        self.refusal_weight = refusal_weight
        self.uncertainty_weight = uncertainty_weight
        self.truncation_weight = truncation_weight
        self.repetition_weight = repetition_weight
        self.final_answer_weight = final_answer_weight

    def score(self, question: str, answer: str, tokens: int) -> float:
        f = dict(zip(FEATURE_NAMES, answer_features(question, answer, tokens, self.max_tokens), strict=True))
        if f["empty"]:
            return 0.0
        z = (
            self.bias
            - self.refusal_weight * min(f["refusals"], 2.0)
            - self.uncertainty_weight * min(f["uncertainty"], 4.0)
            - self.truncation_weight * f["truncated"]
            - self.repetition_weight * max(f["repetition"] - 0.5, 0.0)
            + self.final_answer_weight * f["final_answer_marker"]
        )
        return 1.0 / (1.0 + math.exp(-z))


def _as_rows(questions: Sequence[str], answers: Sequence[str], tokens: Sequence[int] | npt.ArrayLike) -> Any:
    t = np.asarray(tokens, dtype=np.float64)
    if not (len(questions) == len(answers) == len(t)):
        raise EstimatorError(
            f"questions ({len(questions)}), answers ({len(answers)}) and tokens ({len(t)}) differ in length"
        )
    rows = np.empty((len(t), 3), dtype=object)
    rows[:, 0] = [str(q) for q in questions]
    rows[:, 1] = [str(a) for a in answers]
    rows[:, 2] = t
    return rows


class TrainedEstimator:
    """Logistic regression on hashed question/answer n-grams and standardised answer features."""

    def __init__(
        self,
        C: float = 1.0,
        n_features: int = 2**14,
        use_answer_text: bool = True,
        max_tokens: int | None = None,
        class_weight: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.n_features = n_features
        self.use_answer_text = use_answer_text
        self.max_tokens = max_tokens
        self.class_weight = class_weight
        self.random_state = random_state

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=self.n_features, ngram_range=(1, 2), alternate_sign=False)

    def _design(self, rows: Any, *, fit: bool) -> Any:
        import scipy.sparse as sp

        feats = np.array(
            [answer_features(str(q), str(a), int(t), self.max_tokens) for q, a, t in rows], dtype=np.float64
        )
        if fit:
            self.feature_mean_ = feats.mean(axis=0) if len(feats) else np.zeros(len(FEATURE_NAMES))
            self.feature_scale_ = np.where(feats.std(axis=0) > 0, feats.std(axis=0), 1.0)
        blocks = [self.vectorizer_.transform(rows[:, 0].tolist())]
        if self.use_answer_text:
            blocks.append(self.vectorizer_.transform(rows[:, 1].tolist()))
        blocks.append(sp.csr_matrix((feats - self.feature_mean_) / self.feature_scale_))
        return sp.hstack(blocks, format="csr")

    def fit(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        tokens: Sequence[int] | npt.ArrayLike,
        correct: npt.ArrayLike,
    ) -> TrainedEstimator:
        """Train on answers labelled correct (1) or not (0)."""
        if self.C <= 0 or self.n_features < 16:
            raise EstimatorError(f"C={self.C} must be > 0 and n_features={self.n_features} >= 16")
        rows = _as_rows(questions, answers, tokens)
        y = np.asarray(correct, dtype=np.float64)
        if y.shape != (rows.shape[0],):
            raise EstimatorError(f"correct has {y.shape} labels, expected {rows.shape[0]}")
        if not np.all((y == 0) | (y == 1)):
            raise EstimatorError("correct labels must be 0/1; binarise them first")
        if len(np.unique(y)) < 2:
            raise EstimatorError(
                f"all {len(y)} training answers are labelled {int(y[0]) if len(y) else '?'}; "
                "an estimator needs both correct and incorrect answers"
            )
        from sklearn.linear_model import LogisticRegression

        self.vectorizer_ = self._vectorizer()
        X = self._design(rows, fit=True)
        clf = LogisticRegression(
            C=self.C, max_iter=2000, class_weight=self.class_weight, random_state=self.random_state
        )
        clf.fit(X, y.astype(np.int64))
        self.coef_ = np.asarray(clf.coef_[0], dtype=np.float64)
        self.intercept_ = float(clf.intercept_[0])
        self.n_train_ = len(y)
        return self

    def score_many(
        self, questions: Sequence[str], answers: Sequence[str], tokens: Sequence[int] | npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Accept probabilities for many answers at once."""
        if not hasattr(self, "coef_"):
            raise EstimatorError("the estimator is not trained; call fit() or load_estimator()")
        z = self._design(_as_rows(questions, answers, tokens), fit=False) @ self.coef_ + self.intercept_
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))), dtype=np.float64)

    def score(self, question: str, answer: str, tokens: int) -> float:
        return float(self.score_many([question], [answer], [tokens])[0])

    def save(self, path: str | Path) -> None:
        """Pickle with the artefact format and scikit-learn version (checked by :func:`load_estimator`)."""
        import sklearn

        if not hasattr(self, "coef_"):
            raise EstimatorError("train the estimator before saving it")
        payload = {"format": ARTIFACT_FORMAT, "sklearn": sklearn.__version__, "estimator": self}
        Path(path).write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def load_estimator(path: str | Path) -> TrainedEstimator:
    """Load a :class:`TrainedEstimator` saved by :meth:`TrainedEstimator.save` (trusted files only)."""
    import sklearn

    p = Path(path)
    if not p.exists():
        raise EstimatorError(f"estimator artefact {p} does not exist")
    try:
        payload = pickle.loads(p.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise EstimatorError(f"{p} is not a quality-estimator artefact ({exc}); re-train it") from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise EstimatorError(f"{p}: format is not {ARTIFACT_FORMAT}; re-train with this Quartermaster")
    if payload.get("sklearn") != sklearn.__version__:
        raise EstimatorError(
            f"{p} was trained with scikit-learn {payload.get('sklearn')}, this is {sklearn.__version__}; "
            "re-train it or install the matching scikit-learn"
        )
    est = payload["estimator"]
    if not isinstance(est, TrainedEstimator):
        raise EstimatorError(f"{p} does not hold a TrainedEstimator")
    return est


class HttpJudgeEstimator:
    """An external judge over HTTP (httpx; one pooled, thread-safe client)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        on_error: Literal["accept", "escalate"] = "accept",
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise EstimatorError(f"judge url={url!r} must be an http(s) URL")
        if timeout <= 0:
            raise EstimatorError(f"judge timeout={timeout} must be > 0 seconds")
        self.url = url
        self.timeout = timeout
        self.on_error = on_error
        self._client = httpx.Client(timeout=timeout, transport=transport, headers=headers)

    def score(self, question: str, answer: str, tokens: int) -> float:
        fallback = 1.0 if self.on_error == "accept" else 0.0
        try:
            resp = self._client.post(
                self.url, json={"question": question, "answer": answer, "tokens": tokens}
            )
            resp.raise_for_status()
            body = resp.json()
            p = float(body["accept_probability"] if "accept_probability" in body else body["score"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("quality judge %s failed (%s); on_error=%s", self.url, exc, self.on_error)
            return fallback
        if not 0.0 <= p <= 1.0:
            log.warning(
                "quality judge %s returned %r, not a probability; on_error=%s", self.url, p, self.on_error
            )
            return fallback
        return p

    def close(self) -> None:
        self._client.close()


def score_all(
    estimator: QualityEstimator,
    questions: Sequence[str],
    answers: Sequence[str],
    tokens: Sequence[int] | npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Scores for many answers (vectorised when the estimator has ``score_many``)."""
    many = getattr(estimator, "score_many", None)
    if callable(many):
        return np.asarray(many(questions, answers, tokens), dtype=np.float64)
    t = np.asarray(tokens)
    return np.array([estimator.score(q, a, int(k)) for q, a, k in zip(questions, answers, t, strict=True)])

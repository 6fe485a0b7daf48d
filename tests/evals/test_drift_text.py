"""Text and embedding drift: Evidently's domain classifiers, MMD, profiles, hostile input,
and embeddings computed through an OpenAI-compatible /v1/embeddings on loopback."""

from __future__ import annotations

import http.server
import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from lockgate.evals.drift import (
    DriftError,
    DriftInputInvalid,
    DriftOptions,
    EmbeddingProfile,
    Profile,
    ProfileBuilder,
    TextProfile,
    build_profile,
    check_drift,
    get_test,
)
from lockgate.evals.drift.embed import embed_column
from lockgate.evals.drift.embeddings import embedding_profile, mmd_test
from lockgate.evals.drift.text import random_aucs, text_classifier, text_profile

BILLING = [
    "invoice",
    "refund",
    "charge",
    "payment",
    "card",
    "billing",
    "receipt",
    "subscription",
    "price",
    "discount",
]
SHIPPING = [
    "parcel",
    "courier",
    "delivery",
    "tracking",
    "warehouse",
    "shipment",
    "package",
    "address",
    "label",
    "truck",
]
COMMON = [
    "please",
    "help",
    "my",
    "order",
    "account",
    "today",
    "thanks",
    "question",
    "issue",
    "again",
]


def _texts(rng: np.random.Generator, n: int, topic: list[str], share: float = 1.0) -> list[str]:
    """Short requests: common words plus topic words (``share`` of rows from ``topic``,
    the rest from BILLING)."""
    out = []
    for _ in range(n):
        words = list(rng.choice(COMMON, 4))
        source = topic if rng.random() < share else BILLING
        words += list(rng.choice(source, 3))
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def _vectors(rng: np.random.Generator, n: int, dim: int = 8, shift: float = 0.0) -> np.ndarray:
    data = rng.normal(0.0, 1.0, (n, dim))
    data[:, :2] += shift
    return data


# -- the text domain classifier is Evidently's --------------------------------------------


def test_text_classifier_equals_evidentlys_pipeline_and_random_aucs_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _texts(rng, 120, BILLING), _texts(rng, 90, SHIPPING, share=0.3)
    outcome = text_classifier(ref, cur, seed=42)
    # Evidently's calculate_text_drift_score, spelled out with sklearn
    data = pd.concat(
        [pd.DataFrame({"text": ref, "target": 0}), pd.DataFrame({"text": cur, "target": 1})]
    )
    x_train, x_test, y_train, y_test = train_test_split(
        data["text"], data["target"], test_size=0.5, random_state=42, shuffle=True
    )
    pipeline = Pipeline(
        [
            ("v", TfidfVectorizer(sublinear_tf=True, max_df=0.5, stop_words="english")),
            (
                "c",
                SGDClassifier(
                    alpha=0.0001, max_iter=50, penalty="l1", loss="modified_huber", random_state=42
                ),
            ),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=50
        pipeline.fit(x_train, y_train)
    expected = roc_auc_score(y_test, pipeline.predict_proba(x_test)[:, 1])
    assert outcome.auc == pytest.approx(expected, abs=1e-12)
    assert np.array_equal(outcome.y_test, y_test.to_numpy())
    assert set(outcome.words_current) <= set(SHIPPING) | set(COMMON)
    assert outcome.words_current and set(outcome.words_current) & set(SHIPPING)
    # the rank form of the random-classifier AUCs equals roc_auc_score
    labels = outcome.y_test
    for seed, auc in zip(range(5), random_aucs(labels, range(5)), strict=True):
        scores = np.random.RandomState(seed).rand(labels.size)
        assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(("n", "test"), [(400, "perc_text_content_drift"),
                                         (1001, "abs_text_content_drift")])  # fmt: skip
def test_planted_topic_shift_is_detected_and_unshifted_text_is_not(n: int, test: str) -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"request": _texts(rng, n, BILLING)})
    same = pd.DataFrame({"request": _texts(rng, 300, BILLING)})
    shifted = pd.DataFrame({"request": _texts(rng, 300, SHIPPING, share=0.5)})
    report = check_drift(ref, shifted)  # detected as text: unique strings with blanks
    column = report.column("request")
    assert (column.kind, column.test) == ("text", test)
    assert column.drifted and report.drifted
    typical = set(column.words_current)
    assert len(typical & set(SHIPPING)) >= len(typical) / 2 and typical & set(SHIPPING)
    calm = check_drift(ref, same).column("request")
    assert not calm.drifted
    if test == "perc_text_content_drift":
        assert calm.threshold == 0.95 and calm.cutoff is not None and 0.5 < calm.cutoff < 0.65
        assert column.score > column.cutoff  # type: ignore[operator]
    else:
        assert (calm.threshold, calm.cutoff) == (0.55, None)
    assert column.to_dict()["words_current"] == list(column.words_current)
    # deterministic: the same data and seed give the same AUC; another seed another split
    assert check_drift(ref, shifted).column("request").score == column.score
    other = check_drift(ref, shifted, DriftOptions(seed=7)).column("request")
    assert other.drifted and other.score != column.score


def test_text_percentile_path_false_positive_rate_is_near_nominal() -> None:
    hits, sims = 0, 100
    for seed in range(sims):
        rng = np.random.default_rng(1000 + seed)
        ref, cur = _texts(rng, 80, BILLING), _texts(rng, 80, BILLING)
        column = check_drift({"t": ref}, {"t": cur}, DriftOptions(seed=seed)).column("t")
        assert column.test == "perc_text_content_drift"
        hits += column.drifted
    assert hits / sims <= 0.10  # nominal 0.05; ties between texts make it conservative


# -- embeddings ------------------------------------------------------------------------------


def test_embedding_shift_is_detected_by_classifier_and_mmd() -> None:
    rng = np.random.default_rng(3)
    ref = {"emb": list(_vectors(rng, 300))}
    same = {"emb": list(_vectors(rng, 300))}
    shifted = {"emb": list(_vectors(rng, 300, shift=0.6))}
    report = check_drift(ref, shifted)
    column = report.column("emb")
    assert (column.kind, column.test) == ("embedding", "perc_embedding_classifier")
    assert column.drifted and column.cutoff is not None
    assert not check_drift(ref, same).column("emb").drifted
    mmd = DriftOptions(per_column_method={"emb": "mmd"})
    shifted_mmd = check_drift(ref, shifted, mmd).column("emb")
    assert (shifted_mmd.test, shifted_mmd.drifted) == ("mmd", True)
    assert shifted_mmd.p_value == pytest.approx(1 / 501)
    assert shifted_mmd.details["permutations"] == 500 and shifted_mmd.details["bandwidth"] > 0
    calm = check_drift(ref, same, mmd).column("emb")
    assert not calm.drifted and calm.p_value is not None and calm.p_value > 0.05
    # the large-reference branch: AUC > 0.55
    big = {"emb": list(_vectors(rng, 1000))}
    assert check_drift(big, shifted).column("emb").test == "abs_embedding_classifier"
    assert check_drift(big, shifted).column("emb").drifted


def test_mmd_statistic_equals_the_direct_formula() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(0, 1, (30, 3)), rng.normal(0.3, 1, (25, 3))
    outcome = mmd_test(x, y, permutations=50)
    z = np.concatenate((x, y))
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    sigma = np.median(d[np.triu_indices(55, 1)])
    k = np.exp(-(d**2) / sigma**2)
    m, n = 30, 25
    kxx = (k[:m, :m].sum() - m) / (m * (m - 1))
    kyy = (k[m:, m:].sum() - n) / (n * (n - 1))
    expected = kxx + kyy - 2 * k[:m, m:].mean()
    assert outcome.mmd2 == pytest.approx(expected, rel=1e-9)
    assert outcome.bandwidth == pytest.approx(sigma)
    # a permutation's statistic is the same formula on shuffled rows
    assert mmd_test(x, y, permutations=50).p_value == outcome.p_value  # seeded
    equal = np.ones((10, 4))
    assert (mmd_test(equal, equal).mmd2, mmd_test(equal, equal).p_value) == (0.0, 1.0)


def test_mmd_p_values_are_uniform_without_drift_and_small_with_it() -> None:
    p_null, p_shift = [], []
    for seed in range(200):
        rng = np.random.default_rng(2000 + seed)
        x, y = rng.normal(0, 1, (40, 5)), rng.normal(0, 1, (40, 5))
        p_null.append(mmd_test(x, y, permutations=199, seed=seed).p_value)
        if seed < 30:
            p_shift.append(mmd_test(x, y + 0.8, permutations=199, seed=seed).p_value)
    p = np.array(p_null)
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    assert 0.4 <= np.mean(p) <= 0.6
    assert 0.05 <= np.mean(p < 0.25) / 1 <= 0.35  # about a quarter below 0.25
    assert np.mean(np.array(p_shift) < 0.05) >= 0.9


def test_embedding_percentile_path_false_positive_rate_is_near_nominal() -> None:
    hits, sims = 0, 100
    for seed in range(sims):
        rng = np.random.default_rng(3000 + seed)
        ref, cur = {"e": list(_vectors(rng, 100))}, {"e": list(_vectors(rng, 100))}
        hits += check_drift(ref, cur, DriftOptions(seed=seed)).column("e").drifted
    assert hits / sims <= 0.11


# -- kinds, options, profiles -----------------------------------------------------------------


def test_column_kinds_are_detected_or_named() -> None:
    rng = np.random.default_rng(5)
    n = 200
    frame = pd.DataFrame(
        {
            "text": _texts(rng, n, BILLING),
            "ids": [f"user-{i}" for i in range(n)],  # unique, no blanks: identifiers
            "emb": list(_vectors(rng, n)),
            "x": rng.normal(size=n),
        }
    )
    profile = build_profile(frame)
    assert isinstance(profile["text"], TextProfile)
    assert isinstance(profile["emb"], EmbeddingProfile) and profile["emb"].dim == 8
    assert "ids" in profile.skipped and "text_columns" in profile.skipped["ids"]
    named = build_profile(frame, kinds={"ids": "text"})
    assert isinstance(named["ids"], TextProfile)
    report = check_drift(frame, frame, DriftOptions(text_columns=["ids"]))
    assert report.column("ids").kind == "text" and not report.skipped
    # a 2-D array in a mapping is an embedding column too
    matrix = _vectors(rng, 50)
    assert check_drift({"m": matrix}, {"m": matrix}).column("m").kind == "embedding"
    with pytest.raises(DriftInputInvalid, match="'x'"):
        check_drift(frame, frame, DriftOptions(embedding_columns=["x"]))


def test_methods_and_thresholds_are_selectable_for_text_and_embeddings() -> None:
    rng = np.random.default_rng(6)
    ref = {"t": _texts(rng, 300, BILLING), "e": list(_vectors(rng, 300))}
    cur = {"t": _texts(rng, 300, BILLING), "e": list(_vectors(rng, 300))}
    options = DriftOptions(
        text_method="abs_text_content_drift",
        text_threshold=0.0,
        embedding_method="mmd",
        per_column_threshold={"e": 1.0},
        method="psi",  # applies to tabular columns only: psi does not take text
    )
    report = check_drift(ref, cur, options)
    assert (report.column("t").test, report.column("t").threshold) == (
        "abs_text_content_drift",
        0.0,
    )
    assert report.column("t").drifted  # AUC > 0
    assert (report.column("e").test, report.column("e").drifted) == ("mmd", True)  # p < 1
    with pytest.raises(DriftInputInvalid, match="does not apply"):
        check_drift(ref, cur, DriftOptions(per_column_method={"t": "mmd"}))
    with pytest.raises(DriftInputInvalid, match="does not apply"):
        check_drift(ref, cur, DriftOptions(per_column_method={"e": "ks"}))
    assert get_test("mmd").kinds == frozenset({"embedding"})


def test_profiles_keep_a_bounded_seeded_sample_that_round_trips() -> None:
    rng = np.random.default_rng(7)
    n = 2500
    frame = pd.DataFrame({"t": _texts(rng, n, BILLING), "e": list(_vectors(rng, n, dim=4))})
    frame.loc[3, "t"] = None
    frame.loc[5, "e"] = None
    profile = build_profile(frame, sample_size=1000)
    text, emb = profile["t"], profile["e"]
    assert isinstance(text, TextProfile) and isinstance(emb, EmbeddingProfile)
    assert (text.n, text.n_dropped, len(text.sample)) == (n - 1, 1, 1000)
    assert (emb.n, emb.n_dropped, emb.sample.shape) == (n - 1, 1, (1000, 4))
    assert build_profile(frame, sample_size=1000)["t"] == text  # seeded: the same sample
    assert set(text.sample) <= set(frame.t.dropna())
    again = Profile.from_bytes(profile.to_bytes())
    assert again.to_bytes() == profile.to_bytes()
    assert Profile.from_dict(profile.to_dict()).to_bytes() == profile.to_bytes()
    cur = pd.DataFrame({"t": _texts(rng, 400, SHIPPING), "e": list(_vectors(rng, 400, 4, 1.0))})
    first = check_drift(profile, cur)
    assert first == check_drift(again, cur)
    assert first.column("t").drifted and first.column("e").drifted
    assert not first.column("t").exact  # the reference was sampled
    assert first.column("t").details["rows_used"] == [1000, 400]
    # batches and merged partitions equal the whole while everything fits in the sample
    small = frame.iloc[:600]
    builder = ProfileBuilder(sample_size=1000)
    for start in range(0, 600, 250):
        builder.add(small.iloc[start : start + 250])
    whole = build_profile(small, sample_size=1000)
    assert builder.build()["t"] == whole["t"]
    assert np.array_equal(builder.build()["e"].sample, whole["e"].sample)  # type: ignore[union-attr]
    halves = (small.iloc[:300], small.iloc[300:])
    merged = build_profile(halves[0], sample_size=1000).merge(
        build_profile(halves[1], sample_size=1000)
    )
    assert merged["t"] == whole["t"]
    # beyond the sample size, batches still give a bounded sample of the union
    builder = ProfileBuilder(sample_size=500)
    for start in range(0, n, 700):
        builder.add(frame.iloc[start : start + 700])
    batched = builder.build()["t"]
    assert isinstance(batched, TextProfile) and len(batched.sample) == 500
    assert batched.n == n - 1


# -- hostile input ------------------------------------------------------------------------------


def test_hostile_input_gives_clear_errors_naming_the_column() -> None:
    rng = np.random.default_rng(8)
    good = list(_vectors(rng, 20, dim=3))
    ragged = [*good[:10], np.zeros(2), *good[11:]]
    with pytest.raises(DriftInputInvalid, match=r"'vec' is ragged: row 10 holds 2 numbers"):
        check_drift({"vec": good}, {"vec": ragged})
    nan_vector = [*good[:4], np.array([0.0, np.nan, 1.0]), *good[5:]]
    with pytest.raises(DriftInputInvalid, match=r"'vec': row 4 holds NaN"):
        check_drift({"vec": nan_vector}, {"vec": good})
    with pytest.raises(DriftInputInvalid, match=r"'vec'.*3 numbers.*4"):
        check_drift({"vec": good}, {"vec": list(_vectors(rng, 20, dim=4))})
    with pytest.raises(DriftInputInvalid, match=r"'vec'.*not a vector"):
        check_drift({"vec": good}, {"vec": [*good[:5], ["a", "b", "c"], *good[6:]]})
    with pytest.raises(DriftInputInvalid, match=r"'vec'.*empty vector"):
        embedding_profile([[]] * 3, name="vec")
    texts = _texts(rng, 30, BILLING)
    huge = [*texts[:7], "word " * 40000, *texts[8:]]
    with pytest.raises(DriftInputInvalid, match=r"'body'.*200,000 characters.*max_text_chars"):
        check_drift({"body": texts}, {"body": huge}, DriftOptions(text_columns=["body"]))
    mixed = [*texts[:3], 12345, *texts[4:]]
    with pytest.raises(DriftInputInvalid, match=r"'body' holds a int"):
        text_profile(mixed, name="body")
    with pytest.raises(DriftInputInvalid, match=r"'body'.*at least 5 rows"):
        check_drift({"body": texts}, {"body": texts[:3]}, DriftOptions(text_columns=["body"]))
    with pytest.raises(DriftInputInvalid, match="'body'"):
        check_drift({"body": texts}, {"body": texts}, DriftOptions(embedding_columns=["body"]))


# -- embeddings through an OpenAI-compatible /v1/embeddings on loopback -----------------------


class EmbeddingsServer:
    """A real HTTP server answering ``POST /v1/embeddings``: a text's vector counts its topic
    words (billing, shipping, common) and has a length feature; answers come in reversed
    index order. ``fault``: answer the next request with this (status, body) instead."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fault: tuple[int, dict[str, Any]] | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.requests.append({"auth": self.headers.get("authorization"), **body})
                status, answer = server.answer(self.path, body, self.headers)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: dict[str, Any], headers: Any) -> tuple[int, Any]:
        if path != "/v1/embeddings":
            return 404, {"error": {"message": "not found"}}
        if headers.get("authorization") != "Bearer sk-embed":
            return 401, {"error": {"message": "invalid api key"}}
        if self.fault is not None:
            fault, self.fault = self.fault, None
            return fault
        data = [
            {"object": "embedding", "index": i, "embedding": _embed(text)}
            for i, text in enumerate(body["input"])
        ]
        return 200, {"object": "list", "data": data[::-1], "model": body["model"],
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}  # fmt: skip

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _embed(text: str) -> list[float]:
    words = text.split()
    return [
        float(sum(w in BILLING for w in words)),
        float(sum(w in SHIPPING for w in words)),
        float(sum(w in COMMON for w in words)),
        len(text) / 50.0,
    ]


@pytest.fixture
def embeddings_server() -> Iterator[EmbeddingsServer]:
    server = EmbeddingsServer()
    yield server
    server.close()


def test_embed_column_batches_through_v1_embeddings_and_feeds_a_drift_check(
    embeddings_server: EmbeddingsServer,
) -> None:
    rng = np.random.default_rng(9)
    ref_texts = _texts(rng, 150, BILLING)
    vectors = embed_column(
        pd.Series(ref_texts), base_url=embeddings_server.url, api_key="sk-embed",
        model="embed-small", batch_size=64,
    )  # fmt: skip
    assert vectors.shape == (150, 4)
    assert [len(r["input"]) for r in embeddings_server.requests] == [64, 64, 22]
    assert {r["auth"] for r in embeddings_server.requests} == {"Bearer sk-embed"}
    assert {r["model"] for r in embeddings_server.requests} == {"embed-small"}
    assert vectors[0].tolist() == _embed(ref_texts[0])  # back in the texts' order
    assert vectors[149].tolist() == _embed(ref_texts[149])

    def embedded(texts: list[str]) -> list[np.ndarray]:
        return list(embed_column(texts, base_url=embeddings_server.url, api_key="sk-embed",
                                 model="embed-small"))  # fmt: skip

    reference = {"q": list(vectors)}
    shifted = {"q": embedded(_texts(rng, 150, SHIPPING, share=0.5))}
    calm = {"q": embedded(_texts(rng, 150, BILLING))}
    assert check_drift(reference, shifted).column("q").drifted
    assert not check_drift(reference, calm).column("q").drifted
    mmd = DriftOptions(embedding_method="mmd")
    assert check_drift(reference, shifted, mmd).column("q").drifted


def test_embed_column_reports_http_errors_and_bad_answers(
    embeddings_server: EmbeddingsServer,
) -> None:
    def call(texts: list[Any], key: str = "sk-embed") -> Any:
        return embed_column(texts, base_url=embeddings_server.url, api_key=key,
                            model="m", max_retries=0)  # fmt: skip

    with pytest.raises(DriftError, match=r"HTTP 401.*invalid api key"):
        call(["a b"], key="sk-wrong")
    embeddings_server.fault = (200, {"object": "list", "data": [], "model": "m"})
    with pytest.raises(DriftError, match="answered 0 vectors for 2 texts"):
        call(["a b", "c d"])
    ragged = [{"object": "embedding", "index": 0, "embedding": [1.0, 2.0]},
              {"object": "embedding", "index": 1, "embedding": [1.0]}]  # fmt: skip
    embeddings_server.fault = (200, {"object": "list", "data": ragged, "model": "m"})
    with pytest.raises(DriftError, match="vectors of 1 numbers"):
        call(["a b", "c d"])
    twice = [{"object": "embedding", "index": 0, "embedding": [1.0]}] * 2
    embeddings_server.fault = (200, {"object": "list", "data": twice, "model": "m"})
    with pytest.raises(DriftError, match="bad index 0"):
        call(["a b", "c d"])
    with pytest.raises(DriftInputInvalid, match="text 1 is a NoneType"):
        call(["a b", None])

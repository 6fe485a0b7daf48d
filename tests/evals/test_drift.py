"""Drift statistics: equal to scipy's, Evidently's default rules, profiles, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from lockgate.evals.drift import (
    DriftInputInvalid,
    DriftOptions,
    NumericProfile,
    Profile,
    ProfileBuilder,
    ProfileInvalid,
    _views,
    build_profile,
    check_drift,
    get_test,
    profile_column,
)


def _frames(n: int, seed: int, shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cats = np.array(["a", "b", "c", "d"], dtype=object)

    def frame(loc: float, probs: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(loc, 2.0, n),
                "y": rng.exponential(1.0 + loc, n),
                "cat": rng.choice(cats, n, p=probs),
                "flag": rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.6, 0.4]),
            }
        )

    shifted_probs = [0.4 - shift / 4, 0.3, 0.2, 0.1 + shift / 4]
    return frame(0.0, [0.4, 0.3, 0.2, 0.1]), frame(shift, shifted_probs)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_small_reference_statistics_equal_scipy(shift: float) -> None:
    ref, cur = _frames(600, 1, shift)
    report = check_drift(ref, cur)
    ks = sps.ks_2samp(ref.x, cur.x)
    assert report.column("x").test == "ks"
    assert report.column("x").statistic == pytest.approx(ks.statistic)
    assert report.column("x").p_value == pytest.approx(ks.pvalue)
    assert report.column("x").drifted == (ks.pvalue <= 0.05)
    # chisquare: current counts against reference proportions (Evidently's form)
    keys = sorted(set(ref.cat) | set(cur.cat))
    r = ref.cat.value_counts().reindex(keys, fill_value=0).to_numpy()
    c = cur.cat.value_counts().reindex(keys, fill_value=0).to_numpy()
    expected = sps.chisquare(c, r * len(cur) / len(ref))
    assert report.column("cat").test == "chisquare"
    assert report.column("cat").p_value == pytest.approx(expected.pvalue)
    # the homogeneity variant is chi2_contingency of the 2 x k table
    homog = get_test("chi2_homogeneity").compute(
        profile_column(ref.cat, "categorical"), profile_column(cur.cat, "categorical")
    )
    assert homog.p_value == pytest.approx(
        sps.chi2_contingency(np.vstack((r, c)), correction=False).pvalue
    )
    # two categories: the pooled two-proportion z-test
    assert report.column("flag").test == "z"
    p1, p2 = np.mean(ref.flag != "no"), np.mean(cur.flag != "no")
    pooled = (p1 + p2) / 2
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (2 / len(ref)))
    assert report.column("flag").p_value == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert report.drifted == (report.share_drifted >= 0.5)


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_large_reference_statistics_equal_scipy(shift: float) -> None:
    ref, cur = _frames(5000, 2, shift)
    cur = cur.iloc[:4000]
    report = check_drift(ref, cur)
    w = sps.wasserstein_distance(ref.x, cur.x) / np.std(ref.x)
    assert report.column("x").test == "wasserstein"
    assert report.column("x").score == pytest.approx(w, rel=1e-12)
    assert report.column("x").drifted == (w >= 0.1)
    keys = sorted(set(ref.cat) | set(cur.cat))
    r = ref.cat.value_counts().reindex(keys, fill_value=0).to_numpy() / len(ref)
    c = cur.cat.value_counts().reindex(keys, fill_value=0).to_numpy() / len(cur)
    assert report.column("cat").test == "jensenshannon"
    assert report.column("cat").score == pytest.approx(distance.jensenshannon(r, c))


def test_numeric_histogram_tests_use_sturges_bins_over_both_sides() -> None:
    ref, cur = _frames(3000, 3, 0.4)
    both = np.concatenate((ref.y, cur.y))
    edges = np.histogram_bin_edges(both, bins="sturges")
    assert np.array_equal(_views.sturges_edges(both.min(), both.max(), both.size), edges)
    r = np.histogram(ref.y, edges)[0] / len(ref)
    c = np.histogram(cur.y, edges)[0] / len(cur)
    options = DriftOptions(per_column_method={"y": "jensenshannon"}, columns=["y"])
    report = check_drift(ref, cur, options)
    assert report.column("y").score == pytest.approx(distance.jensenshannon(r, c))
    kl = check_drift(ref, cur, DriftOptions(columns=["y"], num_method="kl_div"))

    def filled(shares: np.ndarray) -> np.ndarray:  # Evidently fills empty bins for KL/PSI
        low = shares[shares > 0].min()
        return np.where(shares == 0, low / 1e6 if low <= 1e-4 else 1e-4, shares)

    assert kl.column("y").score == pytest.approx(sps.entropy(filled(r), filled(c)))
    ints = np.arange(0, 21)
    assert np.array_equal(
        _views.sturges_edges(0, 20, 2_000_000, integer=True),
        np.histogram_bin_edges(np.resize(ints, 2_000_000), bins="sturges"),
    )


def test_default_test_follows_the_n_1000_boundary_and_the_five_values_rule() -> None:
    rng = np.random.default_rng(4)

    def chosen(n: int, values: np.ndarray) -> str:
        ref = {"v": rng.choice(values, n)}
        cur = {"v": rng.choice(values, 300)}
        return check_drift(ref, cur).column("v").test

    six, five, two = np.arange(6.0) + 0.5, np.arange(5.0) + 0.5, np.array([0.5, 1.5])
    assert [chosen(1000, six), chosen(1001, six)] == ["ks", "wasserstein"]
    assert [chosen(1000, five), chosen(1001, five)] == ["chisquare", "jensenshannon"]
    assert chosen(1000, two) == "z"
    # distinct values are counted over both sides together
    ref = {"v": rng.choice(five, 500)}
    cur = {"v": rng.choice(np.arange(7.0) + 0.5, 500)}
    assert check_drift(ref, cur).column("v").test == "ks"
    # integers of at most 10 values are categories (Evidently's integer rule)
    codes = {"v": rng.integers(0, 10, 2000)}
    assert check_drift(codes, codes).column("v").kind == "categorical"


def test_nan_and_inf_are_dropped_first() -> None:
    rng = np.random.default_rng(5)
    clean_ref, clean_cur = rng.normal(0, 1, 400), rng.normal(0.2, 1, 300)
    ref = np.concatenate((clean_ref, [np.nan, np.inf, -np.inf]))
    cur = np.concatenate((clean_cur, [np.nan] * 5))
    column = check_drift({"v": ref}, {"v": cur}).column("v")
    assert (column.n_reference, column.n_current) == (400, 300)
    assert column.p_value == pytest.approx(sps.ks_2samp(clean_ref, clean_cur).pvalue)
    cats = {"c": np.array(["a", None, "b", np.nan, "a"] * 4, dtype=object)}
    assert check_drift(cats, cats).column("c").n_reference == 12
    # strings, more than half of them distinct: text, left out until text tests exist
    text = {"c": np.array(["a", None, "b"], dtype=object)}
    assert "c" in check_drift(text, text).skipped
    with pytest.raises(DriftInputInvalid, match="empty in the current"):
        check_drift({"v": ref}, {"v": np.array([np.nan, np.inf])})


def test_thresholds_and_methods_are_selectable_per_column() -> None:
    ref, cur = _frames(2000, 6, 0.2)
    options = DriftOptions(
        per_column_method={"x": "psi", "cat": "hellinger"},
        per_column_threshold={"x": 0.0},
        num_threshold=10.0,
    )
    report = check_drift(ref, cur, options)
    assert (report.column("x").test, report.column("x").threshold) == ("psi", 0.0)
    assert report.column("x").drifted  # psi >= 0
    assert (report.column("y").test, report.column("y").threshold) == ("wasserstein", 10.0)
    assert report.column("cat").test == "hellinger"
    with pytest.raises(DriftInputInvalid, match="does not apply"):
        check_drift(ref, cur, DriftOptions(per_column_method={"cat": "ks"}))
    assert report.to_dict()["columns"][0]["column"] == "x"


def test_profile_round_trips_through_bytes_and_json() -> None:
    ref, cur = _frames(1500, 7, 0.3)
    ref["codes"] = np.arange(1500) % 7
    cur["codes"] = np.arange(1500) % 8
    profile = build_profile(ref)
    again = Profile.from_bytes(profile.to_bytes())
    assert Profile.from_dict(profile.to_dict()).to_bytes() == profile.to_bytes()
    assert again.to_bytes() == profile.to_bytes()
    assert check_drift(again, cur) == check_drift(ref, cur)
    with pytest.raises(ProfileInvalid):
        Profile.from_bytes(b"not a profile")
    bad = profile.to_dict() | {"format_version": 99}
    with pytest.raises(ProfileInvalid, match="version 99"):
        Profile.from_dict(bad)


def test_batched_and_merged_profiles_equal_the_whole_while_exact() -> None:
    ref, cur = _frames(3000, 8, 0.3)
    builder = ProfileBuilder()
    for start in range(0, 3000, 700):
        builder.add(ref.iloc[start : start + 700])
    batched = builder.build()
    whole = build_profile(ref)
    left, right = build_profile(ref.iloc[:1200]), build_profile(ref.iloc[1200:])
    merged = left.merge(right)
    expected = check_drift(whole, cur).columns
    for profile in (batched, merged):
        got = check_drift(profile, cur).columns
        assert [(c.test, c.drifted) for c in got] == [(c.test, c.drifted) for c in expected]
        # the same sorted values; the std differs only by the rounding of Chan's merge
        assert [c.score for c in got] == pytest.approx([c.score for c in expected], rel=1e-9)
        assert profile["x"].std == pytest.approx(whole["x"].std)  # type: ignore[union-attr]


def test_sketched_reference_is_close_to_exact() -> None:
    rng = np.random.default_rng(9)
    ref = rng.lognormal(0, 1, 200_000)
    cur = rng.lognormal(0.05, 1, 50_000)
    exact = NumericProfile.from_values(ref)
    builder = ProfileBuilder(exact_limit=10_000, sketch_size=2048)
    for part in np.array_split(ref, 40):
        builder.add({"v": part})
    sketched = builder.build()["v"]
    assert isinstance(sketched, NumericProfile) and sketched.sketch is not None
    current = NumericProfile.from_values(cur)
    w_exact = _views.wasserstein(exact, current) / exact.std
    w_sketch = _views.wasserstein(sketched, current) / sketched.std
    assert abs(w_sketch - w_exact) < 0.005
    d_exact = _views.ks_statistic(exact, current)
    bound = sketched.sketch.cdf_error_bound
    assert abs(_views.ks_statistic(sketched, current) - d_exact) <= bound
    assert sketched.std == pytest.approx(exact.std, rel=1e-9)


def test_false_positive_rate_is_near_nominal_for_p_value_tests() -> None:
    rng = np.random.default_rng(10)
    sims, n = 400, 200
    hits = {"ks": 0, "z": 0, "chi2_homogeneity": 0, "chisquare": 0}
    probs = [0.5, 0.3, 0.2]
    for _ in range(sims):
        num_ref, num_cur = (NumericProfile.from_values(rng.normal(0, 1, n)) for _ in "ab")
        bin_ref, bin_cur = (profile_column(rng.random(n) < 0.3, "categorical") for _ in "ab")
        cat_ref, cat_cur = (profile_column(rng.choice(3, n, p=probs), "categorical") for _ in "ab")
        for name, ref, cur in (
            ("ks", num_ref, num_cur),
            ("z", bin_ref, bin_cur),
            ("chi2_homogeneity", cat_ref, cat_cur),
            ("chisquare", cat_ref, cat_cur),
        ):
            test = get_test(name)
            hits[name] += test.drifted(test.compute(ref, cur), 0.05)
    rates = {name: count / sims for name, count in hits.items()}
    assert 0.01 <= rates["ks"] <= 0.08  # exact KS is a little conservative
    assert 0.02 <= rates["z"] <= 0.09
    assert 0.02 <= rates["chi2_homogeneity"] <= 0.09
    # Evidently's chisquare takes the reference proportions as known: with m = n its statistic
    # is about twice the homogeneity one, so P(chi2_2 > 5.99 / 2) = exp(-1.5) = 0.22
    assert 0.16 <= rates["chisquare"] <= 0.29

"""`banditlab.stats`' aggregates across methods (IQM, probability of improvement, performance profiles, the
stratified bootstrap) on tiny matrices computed by hand, in rliable's (runs × tasks) layout."""

import numpy as np
import pytest

from banditlab.stats import iqm, performance_profile, probability_of_improvement, stratified_bootstrap_ci


def test_iqm_of_a_4x2_array_is_the_mean_of_its_middle_four():
    # 8 scores sorted: 1 2 3 4 5 6 7 100; k = 8 // 4 = 2 dropped at each end; (3 + 4 + 5 + 6) / 4 = 4.5.
    scores = np.array([[1.0, 100.0], [3.0, 2.0], [5.0, 6.0], [7.0, 4.0]])
    assert iqm(scores) == 4.5
    assert np.mean(scores) == 16.0  # the outlier moves the mean, not the IQM


def test_iqm_of_one_task_is_the_same_as_its_column():
    # 5 scores: k = 1, the middle three 2, 3, 10 → 5.
    assert iqm([10.0, 2.0, 3.0, -50.0, 60.0]) == 5.0


def test_probability_of_improvement_counts_pairs_and_ties_per_task():
    # Task 1: x = {1, 3}, y = {2, 3}: pairs (1,2) 0, (1,3) 0, (3,2) 1, (3,3) ½ → 1.5 / 4 = 0.375.
    # Task 2: every x above every y → 1. Mean over the two tasks: 0.6875.
    x = np.array([[1.0, 5.0], [3.0, 6.0]])
    y = np.array([[2.0, 0.0], [3.0, 1.0]])
    assert probability_of_improvement(x, y) == 0.6875
    assert probability_of_improvement(y, x) == 1 - 0.6875
    assert probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_needs_the_same_tasks():
    with pytest.raises(ValueError, match="tasks"):
        probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 3)))


def test_performance_profile_is_the_share_above_each_threshold_averaged_over_tasks():
    # Task 1 {0.1, 0.3}: above τ = 0, 0.2, 0.5, 1: 1, ½, 0, 0. Task 2 {0.5, 0.9}: 1, 1, ½ (0.5 is not above 0.5), 0.
    scores = np.array([[0.1, 0.5], [0.3, 0.9]])
    np.testing.assert_array_equal(performance_profile(scores, [0.0, 0.2, 0.5, 1.0]), [1.0, 0.75, 0.25, 0.0])


def test_stratified_bootstrap_keeps_every_task_weight():
    # Task 1 all 0, task 2 all 1: a resample within each task keeps 4 zeros and 4 ones, so the mean is 0.5 in
    # every resample. Resampling the 8 runs together would give means from 0 to 1.
    scores = np.array([[0.0, 1.0]] * 4)
    assert stratified_bootstrap_ci(np.mean, scores, n_boot=500) == (0.5, 0.5, 0.5)


def test_stratified_bootstrap_matches_the_exact_resampling_distribution_of_one_task():
    # x = [0, 0, 3]: a resample's mean is the number of 3s drawn, K ~ Binomial(3, 1/3): P(K = 0) = 8/27 > 0.025
    # and P(K ≤ 2) = 26/27 < 0.975, so the 95 % interval is (0, 3); at 90 % the 95 % quantile is 2 (P(K ≤ 1)
    # = 20/27 < 0.95 ≤ 26/27).
    assert stratified_bootstrap_ci(np.mean, [0.0, 0.0, 3.0], n_boot=20000) == (1.0, 0.0, 3.0)
    assert stratified_bootstrap_ci(np.mean, [0.0, 0.0, 3.0], level=0.90, n_boot=20000) == (1.0, 0.0, 2.0)


def test_stratified_bootstrap_resamples_each_array_on_its_own():
    # x = {1} is fixed; y = {0, 2} resampled: {0, 0} (¼) gives P(X > Y) = 1, {2, 2} (¼) gives 0, mixed (½) ½.
    # Both ends have probability ¼ > 2.5 %, so the 95 % interval is (0, 1); at 40 % it is (½, ½).
    assert stratified_bootstrap_ci(probability_of_improvement, [1.0], [0.0, 2.0], n_boot=4000) == (0.5, 0.0, 1.0)
    assert stratified_bootstrap_ci(probability_of_improvement, [1.0], [0.0, 2.0], level=0.4,
                                   n_boot=4000) == (0.5, 0.5, 0.5)


def test_stratified_bootstrap_of_a_curve_returns_one_interval_per_point():
    scores = np.array([[0.1, 0.5], [0.3, 0.9]])
    value, lo, hi = stratified_bootstrap_ci(lambda s: performance_profile(s, [0.0, 0.2, 1.0]), scores, n_boot=500)
    np.testing.assert_array_equal(value, [1.0, 0.75, 0.0])
    np.testing.assert_array_equal(lo[[0, 2]], [1.0, 0.0])  # every run is above 0 and none above 1 in any resample
    assert lo[1] == 0.5 and hi[1] == 1.0  # task 1 gives 0, ½ or 1 runs above 0.2; task 2 always 1


def test_compare_methods_tabulates_each_aggregate_against_the_reference():
    from banditlab.stats import compare_methods

    scores = {"a": np.array([[0.0], [1.0], [2.0], [3.0]]), "b": np.array([[5.0], [6.0], [7.0], [8.0]])}
    table, profile = compare_methods(scores, "a", taus=[0.5, 6.5], n_boot=200)
    a, b = table.set_index("method").loc["a"], table.set_index("method").loc["b"]
    assert (a.iqm, b.iqm) == (1.5, 6.5)  # the middle two of four
    assert a.p_improve == 0.5 and a.p_low < 0.5 < a.p_high  # against itself; its two resamples differ
    assert (b.p_improve, b.p_low, b.p_high) == (1.0, 1.0, 1.0)  # every run of b above every run of a
    np.testing.assert_array_equal(profile[profile.method == "a"].share, [0.75, 0.0])
    np.testing.assert_array_equal(profile[profile.method == "b"].share, [1.0, 0.5])


def test_iqm_is_scipys_quarter_trimmed_mean():
    from scipy.stats import trim_mean

    rng = np.random.default_rng(0)
    for shape in [(8, 1), (8, 10), (7, 3), (5,)]:
        x = rng.normal(size=shape)
        assert iqm(x) == pytest.approx(trim_mean(x, 0.25, axis=None), abs=1e-12)

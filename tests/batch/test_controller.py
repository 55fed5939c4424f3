"""The retrain decision, one test per trigger, plus debounce."""

from velox.batch.controller import Observed, Triggers, drift, should_retrain
from velox.model.prequential import window_rmse
from velox.schemas.error_window import ErrorWindow
from velox.schemas.retrain_request import RetrainRequest

NOW = 10_000.0


def seen(**changes: object) -> Observed:
    base = dict(now=NOW, last_run=None, active_since=NOW - 600, new_observations=0, validation_rmse=0.9, windows=[])
    return Observed(**{**base, **changes})  # type: ignore[arg-type]


def windows(rmse: float, start: float, end: float, step: float = 5.0) -> list[ErrorWindow]:
    out, t = [], start
    while t < end:
        out += [ErrorWindow("v1", p, t, t + step, 100, rmse, rmse * 0.8) for p in (0, 1)]
        t += step
    return out


def test_schedule_trigger_fires_when_the_interval_has_passed() -> None:
    triggers = Triggers(every=60, debounce=0)
    assert should_retrain(seen(active_since=NOW - 30), triggers) is None
    assert should_retrain(seen(active_since=NOW - 61), triggers) == "schedule: every 60 s"
    assert should_retrain(seen(last_run=NOW - 10, active_since=NOW - 600), triggers) is None


def test_count_trigger_fires_after_n_new_observations() -> None:
    triggers = Triggers(after=1000, debounce=0)
    assert should_retrain(seen(new_observations=999), triggers) is None
    assert should_retrain(seen(new_observations=1000), triggers) == "1000 new observations (threshold 1000)"


def test_drift_trigger_needs_the_error_above_tolerance_for_the_whole_window() -> None:
    triggers = Triggers(drift=0.1, window=60, debounce=0)
    assert should_retrain(seen(windows=windows(1.05, NOW - 61, NOW)), triggers).startswith("drift: online RMSE 1.05")
    # within tolerance (0.9 * 1.1 = 0.99)
    assert should_retrain(seen(windows=windows(0.98, NOW - 61, NOW)), triggers) is None
    # above, but only for the last 30 s
    assert should_retrain(seen(windows=windows(1.05, NOW - 30, NOW)), triggers) is None
    # one drain back under the limit breaks "sustained"
    dip = windows(1.05, NOW - 61, NOW - 20) + windows(0.5, NOW - 20, NOW - 15) + windows(1.05, NOW - 15, NOW)
    assert should_retrain(seen(windows=dip), triggers) is None


def test_drift_window_starts_again_at_each_activation_and_each_run() -> None:
    """A rollback's version is judged on its own windows since the rollback: not on the error measured
    before it (on the version rolled back from, or on this one when it was active before), nor again
    on the windows that already started a run (which a pin kept from activating)."""
    triggers = Triggers(drift=0.1, window=60, debounce=0)
    drifting = windows(1.05, NOW - 300, NOW)
    assert should_retrain(seen(windows=drifting), triggers) is not None
    assert should_retrain(seen(windows=drifting, active_since=NOW - 30), triggers) is None
    assert should_retrain(seen(windows=drifting, active_since=NOW - 61), triggers) is not None
    assert should_retrain(seen(windows=drifting, last_run=NOW - 30), triggers) is None


def test_drift_trigger_says_its_state_in_words() -> None:
    triggers = Triggers(drift=0.1, window=60, debounce=0)
    assert drift(seen(), Triggers()) == (None, "off")
    assert drift(seen(validation_rmse=None), triggers)[1] == "waiting for an active version with a validation RMSE"
    assert drift(seen(), triggers)[1].startswith("no online error measured yet")
    assert drift(seen(windows=windows(1.05, NOW - 30, NOW)), triggers) == (
        None, "online RMSE 1.0500 above 0.9900 for 30 of 60 s")
    assert drift(seen(windows=windows(0.5, NOW - 61, NOW)), triggers) == (
        None, "online RMSE 0.5000, not above 0.9900 throughout the last 61 s")
    assert drift(seen(windows=windows(1.05, NOW - 61, NOW)), triggers)[1] == "fired"


def test_drift_trigger_waits_for_a_validation_rmse() -> None:
    triggers = Triggers(drift=0.1, window=60, debounce=0)
    assert should_retrain(seen(validation_rmse=None, windows=windows(5.0, NOW - 61, NOW)), triggers) is None


def test_debounce_holds_every_trigger_after_a_run() -> None:
    triggers = Triggers(every=1, after=1, debounce=30)
    assert should_retrain(seen(last_run=NOW - 29, new_observations=10**6), triggers) is None
    assert should_retrain(seen(last_run=NOW - 31, new_observations=10**6), triggers) is not None


def test_a_request_through_the_edge_runs_at_once_even_within_the_debounce() -> None:
    triggers = Triggers(every=3600, debounce=30)
    asked = [RetrainRequest("a", "default", "new catalog", NOW - 1), RetrainRequest("b", "default", "new catalog", NOW)]
    assert should_retrain(seen(last_run=NOW - 1), triggers) is None
    assert should_retrain(seen(last_run=NOW - 1, requests=asked), triggers) == "requested: new catalog"


def test_window_rmse_weights_by_count() -> None:
    parts = [ErrorWindow("v", 0, 0, 1, 3, 1.0, 1.0), ErrorWindow("v", 1, 0, 1, 1, 3.0, 3.0)]
    assert window_rmse(parts) == (12 / 4) ** 0.5

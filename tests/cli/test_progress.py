"""The progress bar's round count, from the steps a run has logged."""

from zerosum.cli.progress import latest_round


class LoggedSteps:
    """A TrackedRun stand-in: the newest logged step of each metric (-1: never logged)."""

    def __init__(self, steps: dict[str, int]):
        self.steps = steps

    def last_metric_step(self, key: str) -> int:
        return self.steps.get(key, -1)

    def latest_metrics(self) -> dict[str, float]:
        return {}


def test_a_method_without_a_critic_counts_rounds_by_g():
    # GMMN logs loss/g only; the bar used to stay at 0 for its whole run.
    assert latest_round(LoggedSteps({"loss/g": 120}))[0] == 120


def test_the_round_is_the_newest_of_either_player():
    assert latest_round(LoggedSteps({"loss/d": 50, "loss/g": 49}))[0] == 50


def test_nothing_logged_yet_is_round_0():
    assert latest_round(LoggedSteps({}))[0] == 0

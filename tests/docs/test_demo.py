"""The README's main job really runs tasks and a scheduled job."""

from __future__ import annotations

import re

import pytest

from examples import demo


def test_demo_on_the_emulator_runs_every_task_and_the_scheduled_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demo.main([]) == 0

    out = capsys.readouterr().out
    assert "POST /trigger/order/42 -> 409" in out
    assert "every task and the scheduled job ran on the emulator" in out
    assert "emulator stopped after 8 deliveries" in out
    assert re.search(r"the emulator's dashboard: http://127\.0\.0\.1:\d+/$", out, re.M)


def test_demo_in_process_runs_every_task_and_the_scheduled_job(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert demo.main(["--in-process"]) == 0

    out = capsys.readouterr().out
    assert "POST /trigger/order/42 -> 409" in out
    assert "0 task(s) left" in out
    logs = caplog.text  # the app's own log lines, written during the deliveries
    assert "fail_twice succeeded on attempt 3 (previous response 503)" in logs
    assert "make_dinner ran at Taj with Pav, Bhaji" in logs
    assert "home_cook (test-home-cook-at-7AM-IST) ran for the 2026-03-08T07:00:00+05:30" in logs

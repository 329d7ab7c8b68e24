"""The launch's progress display: states, each running trial's step/loss/speed from its progress
file, and an ETA from measured per-trial rates (trials of different speeds, per-trial overhead,
the slots of the cluster), shown live in a terminal and as one line per change in a log."""

import io
import json
from pathlib import Path

from analysis.mlflow_schema import PROGRESS_FILE
from orchestration.execution.progress import Progress, ProgressTrial, read_progress


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def write_progress(directory: Path, step: int, steps: int, time: float, loss: float = 3.5) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    record = {"step": step, "steps": steps, "train_loss": loss, "images_per_second": 80.0, "time": time}
    (directory / PROGRESS_FILE).write_text(json.dumps(record))


def study(tmp_path, stream=None, concurrency=2):
    # two speeds: d1 trials cost 1 MFLOP, d2 trials 8 MFLOP; 100 steps each
    trials = [
        ProgressTrial(key, flops, 100, group, str(tmp_path / key))
        for key, flops, group in (("a", 1e6, "d1"), ("b", 8e6, "d2"), ("c", 1e6, "d1"), ("d", 8e6, "d2"))
    ]
    clock = Clock()
    return Progress("study", trials, stream or io.StringIO(), concurrency, clock), clock


def test_eta_from_measured_rates_of_trials_with_different_speeds(tmp_path):
    progress, clock = study(tmp_path)
    progress.set("a", "running")
    progress.set("b", "running")
    assert progress.eta_seconds() is None  # no rate measured yet: '?' rather than a guess
    write_progress(tmp_path / "a", 10, 100, time=5.0)
    write_progress(tmp_path / "b", 10, 100, time=5.0)
    progress.poll()
    clock.now += 10
    write_progress(tmp_path / "a", 50, 100, time=9.0)  # 0.1 s per step: 5 s left
    write_progress(tmp_path / "b", 20, 100, time=15.0)  # 1 s per step: 80 s left
    progress.poll()
    assert abs(progress.remaining_seconds("a") - 5.0) < 1e-9 and abs(progress.remaining_seconds("b") - 80.0) < 1e-9
    # pending trials run at their group's speed: c (d1) 10 s, d (d2) 100 s. Costliest first, each
    # on the slot that frees first: d after a (5 + 100), c after b (80 + 10) -> 105 s.
    assert abs(progress.eta_seconds() - 105.0) < 1e-9
    # time proportional to FLOPs (the old ETA) would have made this about half: 8 + 1 + 8x.
    clock.now += 3
    assert abs(progress.remaining_seconds("a") - 2.0) < 1e-9  # the clock runs between reads


def test_a_finished_trial_gives_the_per_trial_overhead(tmp_path):
    progress, clock = study(tmp_path, concurrency=1)
    progress.set("a", "running")
    write_progress(tmp_path / "a", 10, 100, time=0.0)
    progress.poll()
    write_progress(tmp_path / "a", 100, 100, time=9.0)  # 0.1 s per step: 10 s of steps
    clock.now += 30.0  # but 30 s from start to end: 20 s of start-up and evaluation
    progress.set("a", "completed")
    assert abs(progress.overhead_seconds() - 20.0) < 1e-9
    assert abs(progress.remaining_seconds("c") - 30.0) < 1e-9  # same speed, same overhead
    # d (another depth) has no rate of its own: the measured one, per FLOP, and the overhead
    assert abs(progress.remaining_seconds("d") - (20.0 + 80.0)) < 1e-9


def test_without_progress_files_finished_trials_give_the_rate(tmp_path):
    progress, clock = study(tmp_path, concurrency=1)
    progress.set("a", "running")
    clock.now += 4.0
    progress.set("a", "completed")  # 4 s for 1 MFLOP, overhead included
    progress.skip("b", "completed")  # an earlier launch's: never in a rate
    assert progress.counts() == {"done": 2, "running": 0, "failed": 0, "pending": 2}
    assert abs(progress.eta_seconds() - (4.0 + 32.0)) < 1e-9


def test_a_missing_or_half_written_file_is_no_data(tmp_path):
    assert read_progress(str(tmp_path)) is None
    (tmp_path / PROGRESS_FILE).write_text('{"step": 3, "ste')
    assert read_progress(str(tmp_path)) is None


def test_a_log_gets_one_line_per_change_and_each_trial_its_progress(tmp_path):
    progress, clock = study(tmp_path)
    progress.show(force=True)
    progress.show()  # nothing changed: no line
    progress.set("a", "running")
    write_progress(tmp_path / "a", 10, 100, time=0.0, loss=3.25)
    progress.show()
    clock.now += 1.0
    write_progress(tmp_path / "a", 20, 100, time=1.0)
    progress.show()  # a's step changed, but its last line is under 30 s old
    lines = progress.stream.getvalue().splitlines()
    assert lines[0].startswith("[study] done 0/4  running 0  failed 0  pending 4")
    assert lines[1].startswith("[study] done 0/4  running 1  failed 0  pending 3")
    assert lines[2].startswith("  a  step 10/100  train loss 3.2500  80.0 images/s  left ")
    assert len(lines) == 3


def test_a_terminal_gets_a_live_table_of_running_trials(tmp_path):
    progress, _ = study(tmp_path, stream=Terminal())
    progress.set("a", "running")
    progress.set("b", "running")
    write_progress(tmp_path / "a", 40, 100, time=0.0, loss=2.5)
    progress.show()
    progress.close()
    shown = progress.stream.getvalue()
    assert "running 2" in shown and "40/100" in shown and "2.5000" in shown and "starting" in shown


def test_one_read_gives_a_rate_from_the_measured_images_per_second(tmp_path):
    trial = ProgressTrial("a", 1e6, 100, "d1", str(tmp_path / "a"), batch_size=8)
    progress = Progress("study", [trial], io.StringIO(), 1, Clock())
    progress.set("a", "running")
    write_progress(tmp_path / "a", 10, 100, time=0.0)  # 80 images/s at 8 images per step: 0.1 s per step
    progress.poll()
    assert abs(progress.remaining_seconds("a") - 9.0) < 1e-9


def test_the_first_wave_s_worker_starts_do_not_set_the_overhead(tmp_path):
    progress, clock = study(tmp_path, concurrency=1)
    for key, seconds in (("a", 60.0), ("b", 5.0)):  # a started a fresh worker; b reused it
        progress.set(key, "running")
        write_progress(tmp_path / key, 10, 100, time=0.0)
        progress.poll()
        write_progress(tmp_path / key, 100, 100, time=0.9)  # 0.01 s per step: 1 s of steps
        clock.now += seconds
        progress.set(key, "completed")
    assert abs(progress.overhead_seconds() - 4.0) < 1e-9  # b's, not the median with a's 59 s


def test_when_trials_end_slower_than_the_slots_allow_the_recent_rate_sets_the_eta(tmp_path):
    # Trials of 3 s each, ending one at a time although 2 slots were there (the store or the
    # driver is the limit): 2 left -> 6 s, not the schedule's 3 s (both slots at once).
    trials = [ProgressTrial(f"t{index}", 1e6, 10, "d1", str(tmp_path / f"t{index}")) for index in range(8)]
    clock = Clock()
    progress = Progress("study", trials, io.StringIO(), 2, clock)
    for index in range(6):
        progress.set(f"t{index}", "running")
        clock.now += 3.0
        progress.set(f"t{index}", "completed")
    assert progress._recent_seconds_per_end() == 3.0
    assert abs(progress.eta_seconds() - 6.0) < 1e-9


def test_costliest_first_ends_on_busy_slots_do_not_inflate_the_eta(tmp_path):
    # Two slots, always busy, the costliest trial first (the launch's order): a big trial holds one
    # slot for 90 s while small ones (1 s each) pass through the other. Ends come at 1, 2, ... 29
    # s and then 90 s, so the recent seconds per end are large; the 10 small trials left take the
    # two free slots about 5 s, which is the ETA to give, not seconds per end x trials left.
    big = ProgressTrial("big", 9e7, 100, "d4", str(tmp_path / "big"))
    small = [ProgressTrial(f"small{index}", 1e6, 100, "d1", str(tmp_path / f"small{index}")) for index in range(40)]
    clock = Clock(0.0)
    progress = Progress("study", [big, *small], io.StringIO(), 2, clock)

    def run(key: str, start: float, seconds: float) -> None:
        clock.now = start
        progress.set(key, "running")
        write_progress(tmp_path / key, 10, 100, time=start)
        progress.poll()
        write_progress(tmp_path / key, 100, 100, time=start + 0.9 * seconds)
        clock.now = start + seconds
        progress.set(key, "completed")

    progress.set("big", "running")
    write_progress(tmp_path / "big", 10, 100, time=0.0)
    progress.poll()
    for index in range(29):
        run(f"small{index}", float(index), 1.0)
    write_progress(tmp_path / "big", 100, 100, time=81.0)
    clock.now = 90.0
    progress.set("big", "completed")
    progress.set("small29", "running")
    assert progress._recent_seconds_per_end() > 10.0  # (90 - 25) s over 4 ends
    assert progress._recent_busy_fraction() < 0.9  # big ran alone from 29 s to 90 s: one idle slot
    idle_eta = progress.eta_seconds()
    assert idle_eta > 100.0  # slots stood idle: the rate of ends is the bound

    # Both slots busy, costliest first, as in the demo: a big trial (100 s) on one slot, two
    # medium ones (50 s, 30 s) and a third running on the other. Ends at 50, 80 and 100 s are 25 s
    # apart; counting ends would say 25 s x 11 left = 275 s (the demo's jump to 6m43s). The 10
    # small trials (2 s each) take the two slots about 10 s after the running one.
    trials = [
        ProgressTrial("big", 100e6, 100, "d4", str(tmp_path / "b2")),
        ProgressTrial("medium1", 50e6, 100, "d3", str(tmp_path / "m1")),
        ProgressTrial("medium2", 30e6, 100, "d3", str(tmp_path / "m2")),
        ProgressTrial("medium3", 30e6, 100, "d3", str(tmp_path / "m3")),
        *[ProgressTrial(f"tiny{index}", 2e6, 100, "d1", str(tmp_path / f"t{index}")) for index in range(10)],
    ]
    clock = Clock(0.0)
    progress = Progress("study", trials, io.StringIO(), 2, clock)
    directories = {trial.key: Path(trial.directory) for trial in trials}

    def start(key: str, at: float) -> None:
        clock.now = at
        progress.set(key, "running")
        write_progress(directories[key], 0, 100, time=at)
        progress.poll()

    def finish(key: str, at: float) -> None:
        write_progress(directories[key], 100, 100, time=at)
        clock.now = at
        progress.poll()
        progress.set(key, "completed")

    start("big", 0.0)
    start("medium1", 0.0)
    finish("medium1", 50.0)
    start("medium2", 50.0)
    finish("medium2", 80.0)
    start("medium3", 80.0)
    write_progress(directories["medium3"], 50, 100, time=95.0)  # half way, 0.3 s per step
    progress.poll()
    finish("big", 100.0)
    assert progress._recent_seconds_per_end() == 25.0
    assert progress._recent_busy_fraction() > 0.9
    eta = progress.eta_seconds()
    assert eta is not None and eta < 30.0, eta  # about 10 s left of medium3, then 10 x 2 s on 2 slots

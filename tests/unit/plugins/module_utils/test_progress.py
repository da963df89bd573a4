"""The progress file of a pull and the lines made from it, with a clock the test moves."""
import json
import os
import stat

from ansible_collections.llmops.ollama.plugins.module_utils._progress import (
    ProgressFile,
    done_line,
    duration,
    human_bytes,
    progress_line,
    waiting_line,
)

MB = 1000 * 1000


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def read(path):
    with open(path) as f:
        return json.load(f)


def test_state_counts_layers_already_there_as_done_and_rates_only_what_is_fetched(tmp_path):
    clock, path = Clock(), str(tmp_path / "p.json")
    progress = ProgressFile(path, clock)
    progress.start("lab/big", 1, 1, 100 * MB)
    assert read(path)["total"] == 100 * MB and read(path)["completed"] == 0
    progress({"status": "pulling manifest"})
    # a layer the server already has: done at once, not downloaded
    progress({"status": "pulling aaa", "digest": "sha256:aaa", "total": 20 * MB, "completed": 20 * MB})
    progress({"status": "pulling bbb", "digest": "sha256:bbb", "total": 80 * MB, "completed": 0})
    for second in range(1, 5):
        clock.now += 1
        progress({"status": "pulling bbb", "digest": "sha256:bbb", "total": 80 * MB, "completed": second * 10 * MB})
    state = read(path)
    assert state["completed"] == 60 * MB and state["total"] == 100 * MB
    assert state["rate"] == 10 * MB  # 40 MB in 4 s; the 20 MB that were there do not count
    assert state["model"] == "lab/big" and state["pid"] == os.getpid()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert progress_line("lab1", state) == "lab1: pulling lab/big 60% 60.0 MB/100.0 MB 10.0 MB/s ETA 0:04"
    progress.close()
    assert not os.path.exists(path)
    assert os.listdir(str(tmp_path)) == []  # no temporary file left either


def test_the_rate_is_over_the_last_seconds(tmp_path):
    clock, path = Clock(), str(tmp_path / "p.json")
    progress = ProgressFile(path, clock)
    progress.start("m", 1, 1, 1000 * MB)
    done = 0
    for second in range(1, 21):
        clock.now += 1
        done += 50 * MB if second <= 10 else 5 * MB  # fast, then slow
        progress({"digest": "sha256:x", "total": 1000 * MB, "completed": done})
    assert 5 * MB <= read(path)["rate"] <= 6 * MB  # the slow rate of the last seconds, not the mean


def test_writes_about_once_a_second(tmp_path):
    clock, path = Clock(), str(tmp_path / "p.json")
    progress = ProgressFile(path, clock)
    progress.start("m", 1, 1, 100)
    for completed in range(1, 50):
        clock.now += 0.1
        progress({"digest": "sha256:x", "total": 100, "completed": completed})
    assert read(path)["completed"] == 40  # the last write was at 4.0 s


def test_an_unwritable_place_does_not_fail_the_pull(tmp_path):
    progress = ProgressFile(str(tmp_path / "missing" / "p.json"), Clock())
    progress.start("m", 1, 1, 100)
    progress({"digest": "sha256:x", "total": 100, "completed": 50})
    progress.close()
    assert "No such file" in progress.error


def test_a_file_already_there_is_neither_replaced_nor_removed(tmp_path):
    """The action plugin's _progress_file is a new name each run; one given by hand may name any file."""
    path = tmp_path / "someone-elses.txt"
    path.write_text("keep")
    progress = ProgressFile(str(path), Clock())
    progress.start("m", 1, 1, 100)
    progress({"digest": "sha256:x", "total": 100, "completed": 50})
    progress.close()
    assert path.read_text() == "keep" and os.listdir(str(tmp_path)) == ["someone-elses.txt"]
    assert progress.error == "the file exists already, and is left as it is (a progress file is always a new one)"


def test_nothing_written_nothing_removed(tmp_path):
    """In check mode nothing is pulled, so nothing is written, and close() removes nothing either."""
    path = str(tmp_path / "p.json")
    progress = ProgressFile(path, Clock())
    open(path, "w").close()  # made by someone else after the module started
    progress.close()
    assert os.path.exists(path) and progress.error is None


def test_lines():
    assert human_bytes(512) == "512 B" and human_bytes(1234567) == "1.2 MB" and human_bytes(2.7e9) == "2.7 GB"
    assert duration(31) == "0:31" and duration(725) == "12:05" and duration(3723) == "1:02:03"
    state = dict(model="llama3.2:3b", index=2, count=3, completed=1.2e9, total=2.7e9, rate=48.3e6, time=5, started=0)
    assert progress_line("lab1", state) == "lab1: pulling llama3.2:3b (2/3) 44% 1.2 GB/2.7 GB 48.3 MB/s ETA 0:31"
    assert progress_line("lab1", dict(state, rate=0, count=1)).endswith("0 B/s ETA -:--")
    assert progress_line("lab1", dict(state, completed=2.7e9, count=1)).endswith(
        "100% 2.7 GB/2.7 GB 48.3 MB/s ETA 0:00")
    assert progress_line("lab1", dict(state, total=0, count=1, status="pulling manifest")) == \
        "lab1: pulling llama3.2:3b: pulling manifest (0:05)"
    assert waiting_line("lab1", ["a", "b"], 3) == "lab1: pulling a, b: starting (0:03)"
    assert done_line("lab1", dict(name="m", action="pulled", size=2.7e9, seconds=56, rate=48.1e6)) == \
        "lab1: pulled m 100% 2.7 GB in 0:56, 48.1 MB/s"

"""The daemon's log (swift-log, Sources/Chimaera/Support/Log.swift): a line per event with its
level and subsystem, the level filter, and size-based rotation of the --log-file."""

import os
import re
import sys

from conftest import REPO, STAGE, require_staged

sys.path.insert(0, str(REPO / "bindings" / "python"))
os.environ["CHIMAERA_LIB"] = str(STAGE / "lib" / "libchimaera.so.1")
import chimaera  # noqa: E402

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} chimaera\[\d+\] (debug|info|warn|error): [a-z]+[ :]")


def test_the_log_file_rotates_by_size_and_keeps_n(daemons):
    require_staged()
    d = daemons.start(config={"runtime": {"shm_size": "256M", "log_level": "debug",
                                          "log_max_bytes": "64K", "log_keep": 2}})
    for _ in range(900):  # each attach and detach logs a debug line under "clients"
        chimaera.Client(segment=d.segment, mode="attach").close()
    log = d.log_file
    rotated = [log.with_name(log.name + f".{i}") for i in (1, 2, 3)]
    assert rotated[0].exists() and rotated[1].exists(), sorted(p.name for p in log.parent.iterdir())
    assert not rotated[2].exists(), "log_keep 2 kept a third file"
    for f in [log] + rotated[:2]:
        text = f.read_text()
        assert len(text) <= 64 * 1024 + 512, (f, len(text))
        lines = [l for l in text.splitlines() if l.startswith(tuple("0123456789"))]
        assert lines and all(LINE.match(l) for l in lines), lines[:3]
    assert "debug: clients: client" in rotated[0].read_text()


def test_the_level_filters_lines(daemons):
    require_staged()
    d = daemons.start(config={"runtime": {"shm_size": "256M", "log_level": "warn"}})
    for _ in range(5):
        chimaera.Client(segment=d.segment, mode="attach").close()
    text = d.log()
    assert "debug:" not in text and " info: " not in text, text

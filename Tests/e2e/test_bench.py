"""`chimaera bench`: each case starts and stops its own runtime and prints one JSON object
with the fixed keys scripts read. Figures are not judged here (machines are noisy); only that
they are present, plausible and consistent with each other."""

import json
from pathlib import Path

from conftest import STAGE, require_staged, run


def bench(*args, timeout=300):
    require_staged()
    status, out = run([STAGE / "bin" / "chimaera", "bench", *args, "--json"], timeout=timeout)
    assert status == 0, out
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def test_small_message_reports_latency_throughput_and_its_baseline():
    fig = bench("small-message", "--sync", "5000", "--async", "50000", "--threads", "1,4")
    for key in ("sync_rtt_ns_p50", "sync_rtt_ns_p99", "sync_rtt_ns_p999", "baseline_pingpong_ns_p50",
                "ratio_p50", "async_tasks_per_s_1t", "async_tasks_per_s_4t", "baseline_ring_msgs_per_s"):
        assert key in fig, key
        assert fig[key] > 0, key
    assert fig["sync_rtt_ns_p50"] <= fig["sync_rtt_ns_p99"] <= fig["sync_rtt_ns_p999"]
    ratio = fig["sync_rtt_ns_p50"] / fig["baseline_pingpong_ns_p50"]
    assert abs(fig["ratio_p50"] - ratio) < 0.01 * ratio + 0.01


def test_idle_reports_cpu_wake_and_startup_and_leaves_nothing_behind():
    before = {p.name for p in Path("/dev/shm").glob("chimaera_bench_*")}
    fig = bench("idle", "--seconds", "2")
    for key in ("idle_cpu_pct", "wake_rtt_us", "startup_ms"):
        assert key in fig, key
    assert 0 <= fig["idle_cpu_pct"] < 100
    assert fig["wake_rtt_us"] > 0 and fig["startup_ms"] > 0
    after = {p.name for p in Path("/dev/shm").glob("chimaera_bench_*")}
    assert after <= before


def test_unknown_case_is_an_error_that_names_the_cases():
    require_staged()
    status, out = run([STAGE / "bin" / "chimaera", "bench", "no-such-case"], timeout=60)
    assert status != 0
    assert "small-message" in out


def test_python_case_measures_the_ctypes_binding():
    fig = bench("python")
    assert fig["python_sync_rtt_ns_p50"] > 0
    assert fig["python_sync_rtt_ns_p50"] <= fig["python_sync_rtt_ns_p99"]


def test_remote_case_runs_a_local_cluster_and_reports_every_key():
    before = {p.name for p in Path("/dev/shm").glob("chimaera_bench_remote_*")}
    fig = bench("remote", "--iters", "500", "--seconds", "0.3", timeout=600)
    for key in ("remote_rtt_ns_p50", "remote_rtt_ns_p99", "baseline_tcp_pingpong_ns_p50",
                "ratio_p50", "remote_async_tasks_per_s", "bcast_us_p50_n1", "bcast_us_p50_n2",
                "bcast_us_p50_n3", "bcast_us_p50_n4", "baseline_tcp_busy_ns_p50", "ratio_busy_p50",
                "remote_rtt_ns_p50_plaintext", "remote_async_tasks_per_s_plaintext",
                "ratio_busy_p50_plaintext", "remote_bulk_mbps", "remote_bulk_write_mbps",
                "remote_bulk_read_mbps", "remote_bulk_mbps_plaintext", "baseline_tcp_stream_mbps"):
        assert key in fig and fig[key] > 0, (key, fig)
    bulk = fig["remote_bulk_mbps"] / fig["baseline_tcp_stream_mbps"]
    assert abs(fig["bulk_stream_ratio"] - bulk) < 0.01 * bulk + 0.01, fig
    assert fig["remote_rtt_ns_p50"] <= fig["remote_rtt_ns_p99"]
    ratio = fig["remote_rtt_ns_p50"] / fig["baseline_tcp_pingpong_ns_p50"]
    assert abs(fig["ratio_p50"] - ratio) < 0.01 * ratio + 0.01
    busy = fig["remote_rtt_ns_p50"] / fig["baseline_tcp_busy_ns_p50"]
    assert abs(fig["ratio_busy_p50"] - busy) < 0.01 * busy + 0.01
    # Broadcasting to more nodes never gets cheaper than to one.
    assert fig["bcast_us_p50_n4"] >= fig["bcast_us_p50_n1"]
    after = {p.name for p in Path("/dev/shm").glob("chimaera_bench_remote_*")}
    assert after <= before, "the bench left runtimes or segments behind"

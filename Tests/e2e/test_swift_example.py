"""The Swift example (examples/swift, `import Chimaera`) builds with SwiftPM against this
package and runs against a real daemon."""

import shutil

import pytest

from conftest import LATENCY_RE, REPO, run


def test_swift_example_builds_and_runs_against_a_daemon(daemon):
    if shutil.which("swift") is None:
        pytest.skip("no Swift toolchain")
    pkg = REPO / "examples" / "swift"
    scratch = REPO / ".build-examples"
    rc, out = run(["swift", "build", "--package-path", pkg, "--scratch-path", scratch,
                   "--product", "SwiftClientExample"], timeout=900)
    assert rc == 0, out
    rc, out = run([scratch / "debug" / "SwiftClientExample"], env=daemon.env, timeout=120)
    assert rc == 0, out
    assert "OPS: 256" in out and LATENCY_RE.search(out), out
    assert "Async latency: 256 ops" in out, out

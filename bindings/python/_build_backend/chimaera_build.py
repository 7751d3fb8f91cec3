"""PEP 517 backend of the chimaera package: setuptools when it can build wheels, else a
minimal pure-Python wheel writer.

Why: `pip install --no-build-isolation` (an offline install) uses the virtualenv's own
setuptools, and a fresh one cannot build wheels: Python 3.11's bundled setuptools 65 needs the
separate `wheel` package for bdist_wheel, and 3.12+ virtualenvs have no setuptools at all.
The package is pure Python with no dependencies, so a wheel is a zip of chimaera/*.py plus
metadata. This file can go once every supported Python bundles setuptools >= 70.1.
"""

import base64
import contextlib
import hashlib
import os
import re
import shutil
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools():
    """setuptools.build_meta if it can build a wheel here, else None."""
    try:
        from setuptools import build_meta
    except ImportError:
        return None
    try:
        import setuptools.command.bdist_wheel  # noqa: F401 (setuptools >= 70.1)
    except ImportError:
        try:
            import wheel.bdist_wheel  # noqa: F401
        except ImportError:
            return None
    return build_meta


def _project():
    """name, version, description and requires-python from pyproject.toml's [project]."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]
    out = {}
    for key in ("name", "version", "description", "requires-python"):
        m = re.search(rf'^{key}\s*=\s*"([^"]*)"', section, re.M)
        if m:
            out[key] = m.group(1)
    return out


def _files():
    pkg = ROOT / "chimaera"
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and (p.suffix == ".py" or p.name.startswith("libchimaera.so")
                            or p.parent.name == "chimaera" and p.suffix == ".so"):
            if "__pycache__" not in p.parts:
                yield p, p.relative_to(ROOT).as_posix()


def _record_line(arc, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arc},sha256={digest},{len(data)}"


def _metadata(meta):
    lines = ["Metadata-Version: 2.1", f"Name: {meta['name']}", f"Version: {meta['version']}"]
    if "description" in meta:
        lines.append(f"Summary: {meta['description']}")
    if "requires-python" in meta:
        lines.append(f"Requires-Python: {meta['requires-python']}")
    readme = ROOT / "README.md"
    body = readme.read_text() if readme.exists() else ""
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _build_wheel_fallback(wheel_directory):
    meta = _project()
    name, version = meta["name"], meta["version"]
    dist_info = f"{name}-{version}.dist-info"
    wheel_name = f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         zipfile.ZIP_DEFLATED) as z:
        def add(arc, data):
            z.writestr(arc, data)
            record.append(_record_line(arc, data))
        for path, arc in _files():
            add(arc, path.read_bytes())
        add(f"{dist_info}/METADATA", _metadata(meta).encode())
        add(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: chimaera_build\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        add(f"{dist_info}/top_level.txt", b"chimaera\n")
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel_name


def _stage():
    """The staged Chimaera prefix to bundle: $CHI_STAGE, else the repository's build/ when the
    package is built from its place in the source tree (bindings/python); None if neither has
    the library."""
    for d in (os.environ.get("CHI_STAGE"), ROOT.parents[1] / "build"):
        if d and (Path(d) / "lib" / "libchimaera.so.1").is_file():
            return Path(d)
    return None


@contextlib.contextmanager
def _bundled():
    """Copies the library and its built-in modules into the package for the build (found there
    first at import: no CHIMAERA_LIB, no library path), and removes the copies afterwards. A
    library already beside the package (copied by hand) is used as it is."""
    pkg = ROOT / "chimaera"
    stage = _stage()
    if stage is None or any(pkg.glob("libchimaera.so*")) or (pkg / "lib").exists():
        yield
        return
    lib = pkg / "lib"
    try:
        (lib / "chimaera").mkdir(parents=True)
        shutil.copy2(stage / "lib" / "libchimaera.so.1", lib / "libchimaera.so.1")
        for m in sorted((stage / "lib" / "chimaera").glob("*.so")):
            shutil.copy2(m, lib / "chimaera" / m.name)
        yield
    finally:
        shutil.rmtree(lib, ignore_errors=True)


# ---- PEP 517 hooks -------------------------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    st = _setuptools()
    return st.get_requires_for_build_wheel(config_settings) if st else []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    st = _setuptools()
    with _bundled():
        if st:
            return st.build_wheel(wheel_directory, config_settings, metadata_directory)
        return _build_wheel_fallback(wheel_directory)


def get_requires_for_build_sdist(config_settings=None):
    st = _setuptools()
    return st.get_requires_for_build_sdist(config_settings) if st else ["setuptools>=61"]


def build_sdist(sdist_directory, config_settings=None):
    from setuptools import build_meta  # an sdist needs setuptools; no fallback
    return build_meta.build_sdist(sdist_directory, config_settings)

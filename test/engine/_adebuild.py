"""Minimal, stdlib-only PEP 517 / PEP 660 build backend.

It exists so the test packages install offline into a fresh virtual
environment that has neither ``wheel`` nor network access, with or
without build isolation. It packs one pure-Python import package into a
``py3-none-any`` wheel.

Conventions:
- metadata comes from the ``[project]`` table of ``pyproject.toml``
  (``name``, ``version``, ``description``, ``requires-python``,
  ``dependencies``);
- the import package is the directory named after the distribution with
  ``-`` and ``.`` turned into ``_`` (``ade-engine`` -> ``ade_engine``);
- editable installs add a ``.pth`` file pointing at the project folder.

There is one copy: test/config/_adebuild.py is a symbolic link to
test/engine/_adebuild.py (a PEP 517 backend-path must lie inside the
package's own folder, and `supervisor enqueue configuration` copies the
file the link names).
"""

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import time
import zipfile

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

ROOT = os.path.dirname(os.path.abspath(__file__))
BACKEND_FILE = os.path.basename(os.path.abspath(__file__))
WHEEL_TAG = "py3-none-any"
SKIP_DIRS = {"__pycache__", "build", "dist"}
SKIP_SUFFIXES = (".pyc", ".pyo")


# ---------------------------------------------------------------------------
# Project metadata
# ---------------------------------------------------------------------------


def _read_pyproject():
    path = os.path.join(ROOT, "pyproject.toml")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.9/3.10
        return _parse_simple_toml(raw.decode("utf-8"))
    return tomllib.loads(raw.decode("utf-8"))


def _parse_simple_toml(text):
    """Parse the small TOML subset our pyproject files use.

    Tables (``[a.b]``) and ``key = value`` lines whose value is a
    double-quoted string, a one-line array of such strings, or a bool.
    """
    data = {}
    table = data
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            table = data
            for part in line[1:-1].strip().split("."):
                table = table.setdefault(part.strip().strip('"'), {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if value in ("true", "false"):
            table[key.strip()] = value == "true"
        else:
            table[key.strip()] = json.loads(value)
    return data


class _Project:
    def __init__(self):
        project = _read_pyproject().get("project", {})
        self.name = project["name"]
        self.version = project["version"]
        self.summary = project.get("description", "")
        self.requires_python = project.get("requires-python")
        self.dependencies = list(project.get("dependencies", []))
        # Wheel/dist-info names use the normalized distribution name.
        self.dist = re.sub(r"[-_.]+", "_", self.name).lower()
        self.package = re.sub(r"[-.]+", "_", self.name)
        self.dist_info = "%s-%s.dist-info" % (self.dist, self.version)
        self.wheel_name = "%s-%s-%s.whl" % (self.dist, self.version, WHEEL_TAG)
        self.sdist_base = "%s-%s" % (self.dist, self.version)

    def metadata(self):
        lines = [
            "Metadata-Version: 2.1",
            "Name: %s" % self.name,
            "Version: %s" % self.version,
        ]
        if self.summary:
            lines.append("Summary: %s" % self.summary)
        if self.requires_python:
            lines.append("Requires-Python: %s" % self.requires_python)
        lines.extend("Requires-Dist: %s" % dep for dep in self.dependencies)
        return "\n".join(lines) + "\n"

    def wheel(self):
        return (
            "Wheel-Version: 1.0\n"
            "Generator: adebuild\n"
            "Root-Is-Purelib: true\n"
            "Tag: %s\n" % WHEEL_TAG
        )

    def package_files(self):
        """(archive path, absolute path) for every file of the package."""
        package_dir = os.path.join(ROOT, self.package)
        if not os.path.isfile(os.path.join(package_dir, "__init__.py")):
            raise RuntimeError("package folder %r with __init__.py not found" % package_dir)
        found = []
        for folder, dirs, files in os.walk(package_dir):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, ROOT).replace(os.sep, "/"), path))
        return found


# ---------------------------------------------------------------------------
# Archive helpers
# ---------------------------------------------------------------------------


def _timestamp():
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01
    return max(epoch, 315532800)


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _write_wheel(directory, project, entries):
    """Write a wheel holding ``entries`` (archive path -> bytes) plus dist-info."""
    entries = dict(entries)
    entries[project.dist_info + "/METADATA"] = project.metadata().encode("utf-8")
    entries[project.dist_info + "/WHEEL"] = project.wheel().encode("utf-8")
    record_path = project.dist_info + "/RECORD"
    record = io.StringIO()
    for name, data in entries.items():
        record.write("%s,%s,%d\n" % (name, _record_hash(data), len(data)))
    record.write("%s,,\n" % record_path)
    entries[record_path] = record.getvalue().encode("utf-8")

    date_time = time.gmtime(_timestamp())[:6]
    target = os.path.join(directory, project.wheel_name)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return project.wheel_name


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _write_metadata_dir(metadata_directory, project):
    target = os.path.join(metadata_directory, project.dist_info)
    os.makedirs(target, exist_ok=True)
    for name, text in (("METADATA", project.metadata()), ("WHEEL", project.wheel())):
        with open(os.path.join(target, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return project.dist_info


# ---------------------------------------------------------------------------
# PEP 517 hooks
# ---------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory, _Project())


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory, _Project())


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _Project()
    entries = {name: _read(path) for name, path in project.package_files()}
    return _write_wheel(wheel_directory, project, entries)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    project = _Project()
    project.package_files()  # fail early when the package folder is missing
    pth = "__editable__.%s-%s.pth" % (project.dist, project.version)
    return _write_wheel(wheel_directory, project, {pth: (ROOT + "\n").encode("utf-8")})


def build_sdist(sdist_directory, config_settings=None):
    project = _Project()
    files = [(name, path) for name, path in project.package_files()]
    for extra in ("pyproject.toml", BACKEND_FILE, "README.md"):
        path = os.path.join(ROOT, extra)
        if os.path.isfile(path):
            files.append((extra, path))
    files.append(("PKG-INFO", None))

    name = project.sdist_base + ".tar.gz"
    mtime = _timestamp()
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for arcname, path in sorted(files):
            data = project.metadata().encode("utf-8") if path is None else _read(path)
            info = tarfile.TarInfo("%s/%s" % (project.sdist_base, arcname))
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return name

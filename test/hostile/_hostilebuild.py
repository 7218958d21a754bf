"""PEP 517 backend of the hostile package: before building, the package's
install code attacks (see ade_config/attacks.py) and writes what happened to
hostile-build-report.json in the environment being built, then builds like
the sample package."""

import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)

import _adebuild  # noqa: E402  the stdlib backend the sample package uses


def _attack():
    report = os.path.join(sys.prefix, "hostile-build-report.json")
    if os.path.exists(report):
        return
    spec = importlib.util.spec_from_file_location("hostile_attacks", os.path.join(_here, "ade_config", "attacks.py"))
    attacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(attacks)
    attacks.build_attacks(_here, report)


def get_requires_for_build_wheel(config_settings=None):
    _attack()
    return _adebuild.get_requires_for_build_wheel(config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _attack()
    return _adebuild.build_wheel(wheel_directory, config_settings, metadata_directory)


def __getattr__(name):
    return getattr(_adebuild, name)

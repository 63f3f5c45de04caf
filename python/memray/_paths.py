"""The payload and the memray command this copy of the package uses: $MEMRAY_PAYLOAD /
$MEMRAY_EXECUTABLE when set, else the build tree's while it exists, else the installed ones."""

import os

from . import _config


def _pick(env, build, installed):
    override = os.environ.get(env)
    if override:
        return override
    if build and os.path.exists(build):
        return build
    return installed


def payload_path():
    return _pick("MEMRAY_PAYLOAD", _config.PAYLOAD_BUILD, _config.PAYLOAD_INSTALLED)


def memray_executable():
    return _pick("MEMRAY_EXECUTABLE", _config.MEMRAY_BUILD, _config.MEMRAY_INSTALLED)

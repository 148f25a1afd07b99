"""The official AsyncAPI 3.0.0 JSON Schema, from the `@asyncapi/specs` npm package.

`npm pack` fetches the package's tarball (npm checks it against the registry's
integrity hash) into a cache directory; the schema is read from the tarball.
Its `schemas/3.0.0.json` is the bundled form: every definition it uses sits
under `definitions`, keyed and identified by its `$id`, so a validator that
honours embedded `$id`s (python-jsonschema's `referencing`) resolves every
`$ref` without going to the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

SPECS_PACKAGE = "@asyncapi/specs"
# Pinned: a new release of the schema is taken on purpose, not by surprise.
SPECS_VERSION = "6.11.1"
SCHEMA_MEMBER = "package/schemas/3.0.0.json"


def official_schema(cache_dir: Path) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 JSON Schema (draft 7), fetched once into `cache_dir`.

    Without npm the test is skipped, unless DASHBOARD_REQUIRE_BROWSER says this
    is CI, where a missing tool must fail the run rather than hide the check.
    """
    tarball = cache_dir / f"asyncapi-specs-{SPECS_VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            message = f"npm is needed to fetch {SPECS_PACKAGE}@{SPECS_VERSION}"
            if os.environ.get("DASHBOARD_REQUIRE_BROWSER"):
                pytest.fail(message)
            pytest.skip(message)
        cache_dir.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            [npm, "pack", f"{SPECS_PACKAGE}@{SPECS_VERSION}", "--pack-destination", str(cache_dir)],
            cwd=cache_dir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if packed.returncode != 0 or not tarball.exists():
            pytest.fail(f"npm pack {SPECS_PACKAGE}@{SPECS_VERSION} failed: {packed.stderr[-2000:]}")
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(SCHEMA_MEMBER)
        if member is None:
            pytest.fail(f"{SCHEMA_MEMBER} missing from {tarball}")
        return json.load(member)

"""qstash_local through the official TypeScript SDK (tests/ts_sdk/check.mjs, issue 11)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import qstash_local
from tests.needs import missing
from tests.qstash_support import FAST

PROJECT = Path(__file__).resolve().parent.parent / "ts_sdk"
FILES = ("package.json", "package-lock.json", "check.mjs")


async def _run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(240):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


async def _project(tmp_path: Path) -> Path:
    """tests/ts_sdk if its packages are installed, else a copy installed with ``npm ci``."""
    if (PROJECT / "node_modules" / "@upstash" / "qstash").is_dir():
        return PROJECT
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed (needed once to install @upstash/qstash)")
    for name in FILES:
        shutil.copy(PROJECT / name, tmp_path / name)
    rc, output = await _run(npm, "ci", "--no-audit", "--no-fund", cwd=tmp_path)
    if rc != 0:
        missing(f"npm ci could not install @upstash/qstash: {output.strip()[-300:]}")
    return tmp_path


async def test_typescript_sdk_sees_the_qstash_it_was_written_for(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    project = await _project(tmp_path)
    async with qstash_local.serve(FAST, host="127.0.0.1", port=0) as server:
        env = {"PATH": str(Path(node).parent), "QSTASH_URL": server.url, "QSTASH_TOKEN": FAST.token}
        rc, output = await _run(node, "check.mjs", cwd=project, env=env)
    assert (rc, output.strip().splitlines()[-1:]) == (0, ["ok"]), output

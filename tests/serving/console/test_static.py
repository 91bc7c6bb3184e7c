"""The console's static files: vendored as recorded, and the only files its pages load.

``static/vendor.toml`` lists every third-party file with its version and sha256; the pages
may load nothing from another host (no CDN) and, under the console's CSP
(``script-src 'self'``), no inline script or event handler.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest

import shipyard.serving.console

CONSOLE = Path(shipyard.serving.console.__file__).parent
STATIC = CONSOLE / "static"
TEMPLATES = CONSOLE / "templates"

#: ``src=``, ``href=``, ``action=`` and friends with an absolute URL or a protocol-relative one.
_FOREIGN = re.compile(
    r"""\b(?:src|href|action|formaction|poster|data|srcset)\s*=\s*["']?\s*(?:https?:)?//""",
    re.IGNORECASE,
)
_CSS_FOREIGN = re.compile(r"""(?:url\(\s*["']?|@import\s+["']?)\s*(?:https?:)?//""", re.IGNORECASE)
#: Where a page names one of our static files: ``url('/static/NAME')``.
_STATIC_REF = re.compile(r"""url\(\s*["']/static/([^"'?#]+)["']""")
_SCRIPT = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_HANDLER = re.compile(r"""<[^>]*\son[a-z]+\s*=""", re.IGNORECASE)
_JAVASCRIPT_URL = re.compile(r"""=\s*["']?\s*javascript:""", re.IGNORECASE)


def _vendored() -> list[dict[str, str]]:
    with (STATIC / "vendor.toml").open("rb") as handle:
        files: list[dict[str, str]] = tomllib.load(handle)["file"]
    return files


def _templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("entry", _vendored(), ids=lambda entry: entry["path"])
def test_every_vendored_file_matches_its_checksum(entry: dict[str, str]) -> None:
    path = STATIC / entry["path"]
    assert path.is_file(), f"{entry['path']} is listed in vendor.toml but missing from static/"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == entry["sha256"], f"{entry['path']}: sha256 {digest} != vendor.toml's"
    for field in ("package", "version", "source", "license"):
        assert entry.get(field), f"{entry['path']}: vendor.toml lacks its {field}"
    license_file = re.search(r"\((licenses/[^)]+)\)", entry["license"])
    assert license_file is not None, f"{entry['path']}: name the license file in vendor.toml"
    assert (STATIC / license_file.group(1)).is_file(), f"missing {license_file.group(1)}"


def test_static_folder_holds_only_listed_or_own_files() -> None:
    listed = {entry["path"] for entry in _vendored()}
    for path in STATIC.rglob("*"):
        if path.is_dir() or path.parent.name == "licenses" or path.name == "vendor.toml":
            continue
        name = path.relative_to(STATIC).as_posix()
        # our own files are plain text written here (console.css, console*.js), never minified
        assert name in listed or not name.endswith((".min.js", ".min.css")), (
            f"static/{name} looks vendored: add it to vendor.toml with its version and sha256"
        )


def test_pages_load_nothing_from_other_hosts() -> None:
    templates = _templates()
    assert templates, "no console templates found"
    for path in templates:
        text = path.read_text(encoding="utf-8")
        found = _FOREIGN.search(text)
        assert found is None, f"{path.name} refers to another host: {found.group(0)!r}"
        assert _CSS_FOREIGN.search(text) is None, f"{path.name}: CSS loads from another host"
    for path in STATIC.glob("*.css"):
        found = _CSS_FOREIGN.search(path.read_text(encoding="utf-8"))
        assert found is None, f"static/{path.name} loads from another host: {found.group(0)!r}"


def test_pages_name_only_existing_static_files() -> None:
    for path in _templates():
        for name in _STATIC_REF.findall(path.read_text(encoding="utf-8")):
            assert (STATIC / name).is_file(), f"{path.name} loads /static/{name}: no such file"


def test_pages_have_no_inline_script_under_the_csp() -> None:
    for path in _templates():
        text = path.read_text(encoding="utf-8")
        for attributes in _SCRIPT.findall(text):
            data_only = re.search(r"""type\s*=\s*["']application/json["']""", attributes)
            assert "src=" in attributes or data_only, (
                f"{path.name}: inline <script{attributes}> is blocked by the CSP "
                "(script-src 'self'): move it to a static file or make it type=application/json"
            )
        handler = _HANDLER.search(text)
        assert handler is None, f"{path.name}: inline event handler {handler.group(0)!r}"
        assert _JAVASCRIPT_URL.search(text) is None, f"{path.name}: a javascript: URL"

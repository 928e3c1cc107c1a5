"""Every MUST of docs/protocol.md has a check, and every check names a real requirement.

The protocol document tags each MUST with an identifier in bold brackets; tests declare what
they verify with the ``spec`` marker, naming the identifiers. A requirement without a test is a promise
nobody checks; a test citing an unknown identifier checks a promise nobody made.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "docs" / "protocol.md"
REQUIREMENT = re.compile(r"\*\*\[([A-Z]+-\d+)\]\*\*")
TAGGED = re.compile(r"pytest\.mark\.spec\(([^)]*)\)")
KEYWORD = re.compile(r"\b(MUST|MUST NOT|SHOULD|SHOULD NOT|MAY)\b")


def requirements() -> dict[str, str]:
    found: dict[str, str] = {}
    for m in REQUIREMENT.finditer(SPEC.read_text()):
        assert m.group(1) not in found, f"{m.group(1)} is defined twice in {SPEC.name}"
        found[m.group(1)] = m.group(0)
    return found


def checks() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("*.py"):
        for m in TAGGED.finditer(path.read_text()):
            for ident in re.findall(r"[\"']([A-Z]+-\d+)[\"']", m.group(1)):
                cited.setdefault(ident, []).append(str(path.relative_to(REPO)))
    return cited


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items: a MUST and its identifier share one."""
    out, current = [], []
    for line in text.splitlines():
        starts = line.lstrip().startswith(("- ", "| ")) or not line.strip() or line.startswith("#")
        if starts and current:
            out.append("\n".join(current))
            current = []
        if line.strip():
            current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def test_every_must_carries_an_identifier():
    body = SPEC.read_text().split("## 0a.", 1)[1]  # §0 defines the keywords themselves
    untagged = [b for b in _blocks(body) if "MUST" in KEYWORD.findall(b)
                if not REQUIREMENT.search(b)]
    assert not untagged, "MUST without an identifier:\n\n" + "\n\n".join(untagged)


def test_every_requirement_has_a_check():
    missing = sorted(set(requirements()) - set(checks()))
    assert not missing, f"requirements of docs/protocol.md that no test checks: {missing}"


def test_every_check_names_a_requirement():
    unknown = {k: v for k, v in checks().items() if k not in requirements()}
    assert not unknown, f"tests cite requirements docs/protocol.md does not define: {unknown}"


def test_device_requirements_are_checked_by_the_conformance_suite():
    """A board is judged by tests/conformance alone; HOST-… requirements by the host's tests."""
    outside = {k: v for k, v in checks().items() if not k.startswith("HOST-")
               and not any(p.startswith("tests/conformance/") for p in v)}
    assert not outside, f"device requirements checked only outside tests/conformance: {outside}"

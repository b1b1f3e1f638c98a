"""Every document the project cites is in the repository: each ``docs/<name>.md`` (with its
``§N`` or ``§N.M`` sections) named in code, params, the Makefile or the docs exists with those
numbered headings, every relative link of the markdown files resolves, and nothing cites a file
outside the repository (the method spec and the AVSBench notes the project was started from)."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".cfg", ".txt", ""}
#: a citation: docs/<file>.md, then any sections, e.g. "docs/method.md §1, §3, §4", "§1-§3"
CITATION = re.compile(r"docs/([\w.-]+\.md)((?:\s*(?:,|-|and)?\s*§\d+(?:\.\d+)?)*)")
#: names of files that live outside the repository
OUTSIDE = re.compile(r"\bMETHOD\.md\b|\bMETHOD §|\bAVSBENCH\.md\b|/work/shared|shared/reference")


def _files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in listed if (ROOT / f).is_file() and Path(f).suffix in SUFFIXES
            and not f.startswith(("data/", "tests/test_docs.py")) and (ROOT / f).stat().st_size
            < 2_000_000]


def _sections(doc: Path) -> set[str]:
    """Numbers of the headings ``## N. title`` and ``### N.M title``."""
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", doc.read_text(), flags=re.M))


def _citations() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in _files():
        text = path.read_text(errors="replace")
        for m in CITATION.finditer(text):
            out.append((str(path.relative_to(ROOT)), m.group(1), re.findall(r"§(\d+(?:\.\d+)?)",
                                                                            m.group(2))))
    return out


def test_the_code_cites_the_docs():
    cited = {(where, doc) for where, doc, _ in _citations()}
    assert len(cited) > 50  # the method's formulas cite docs/method.md throughout pcas_core
    assert any(where.startswith("pcas_core/method/") and doc == "method.md"
               for where, doc in cited)


def test_every_cited_doc_and_section_exists():
    missing = []
    for where, doc, sections in _citations():
        path = ROOT / "docs" / doc
        if not path.is_file():
            missing.append(f"{where}: docs/{doc} does not exist")
            continue
        have = _sections(path)
        missing += [f"{where}: docs/{doc} has no section {s}" for s in sections if s not in have]
    assert not missing, "\n".join(sorted(set(missing)))


def test_nothing_cites_a_file_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in _files()
             for m in OUTSIDE.finditer(p.read_text(errors="replace"))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("doc", ["README.md", "DEVELOPERS.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(doc):
    text = (ROOT / doc).read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    broken = [link for link in links if not link.startswith(("http://", "https://"))
              and not ((ROOT / doc).parent / link).exists()]
    assert not broken, f"{doc}: {broken}"


def test_the_readme_is_the_entrance():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 250
    for doc in ("method", "avsbench", "datasets", "experiments", "results", "distributed",
                "resuming", "predict"):
        assert any(f"docs/{doc}.md" in line for line in readme), doc

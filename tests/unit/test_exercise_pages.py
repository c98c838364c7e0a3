"""The exercise pages cannot rot without a test failing: every `lisp-lab` command they show
parses with the real command line and names files that exist, every command typed at the
CLI's prompt is one of its commands or a node of the lab, every promised check line names a
requirement of the exercise, and the README of lab/exercises lists every page."""
import pytest

from tests.exercise_pages import EXERCISES, ROOT, commands, pages, promised_file, promises, shell_lines
from lab.check import find_exercise, load_exercise
from lab.cli import build_parser
from lab.shell import LISP_COMMANDS
from topologies.model import load

MININET = {"py", "sh", "net", "nodes", "links", "dump", "help"}


def test_there_are_six_pages():
    assert [p.name[:2] for p in pages()] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_command_of_the_page_parses_and_its_files_exist(page):
    cmds = commands(page)
    assert any(c[:1] == ["check"] for c in cmds), f"{page.name} shows no `lisp-lab check`"
    for argv in cmds:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}: `lisp-lab {' '.join(argv)}` does not parse")
        for attr in ("file", "files"):
            for f in ([getattr(args, attr)] if attr == "file" else getattr(args, attr, [])) \
                    if hasattr(args, attr) else []:
                if f and f != "mine.yaml":
                    assert (ROOT / f).exists(), f"{page.name}: {f} does not exist"
                    load(ROOT / f)                  # and it is a valid lab file
        if args.command == "check":
            find_exercise(args.exercise)
            assert find_exercise(args.exercise).name.startswith(page.name[:2])


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_what_the_page_types_at_the_prompt_is_a_command_or_a_node(page):
    cli = [c for c in commands(page) if c[:1] == ["cli"]]
    nodes = set()
    for c in cli:
        m = load(ROOT / c[1])
        nodes |= set(m.node_names()) | set(m.hosts)
    for line in shell_lines(page):
        word = line.split()[0]
        assert word in LISP_COMMANDS or word in nodes or word in MININET, \
            f"{page.name}: `{line}` is neither a CLI command nor a node"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_promised_lines_name_requirements_of_the_exercise(page):
    ex = load_exercise(find_exercise(page.name[:2]))
    ids = {r.id for r in ex.requirements}
    found = promises(page)
    assert found, f"{page.name} promises no check output"
    kinds = {which for which, _ in found}
    if ex.answer:
        assert {"starter", "answer"} <= kinds, page.name
        assert any(v == "FAIL" for w, lines in found if w == "starter" for v, _, _ in lines)
    for which, lines in found:
        assert promised_file(ex, which).exists(), (page.name, which)
        assert lines, (page.name, which)
        for verdict, rid, _ in lines:
            assert rid in ids, f"{page.name}: promises {rid}, not a requirement of {ex.name}"
        if which in ("answer", "scenario"):
            assert {rid for _, rid, _ in lines} == ids and \
                all(v == "PASS" for v, _, _ in lines), f"{page.name}: {which} must pass all"


def test_the_readme_lists_every_page_and_every_page_has_answers():
    text = (EXERCISES / "README.md").read_text()
    for p in pages():
        assert p.name in text
    for p in pages():
        ans = EXERCISES / "answers" / p.name
        assert ans.exists(), f"no answers/{p.name}"

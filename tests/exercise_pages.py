"""Reading the exercise pages (lab/exercises/NN-name.md) for the tests: the commands they
show and the `lisp-lab check` lines they promise.

    <!-- check: starter -->          (or: answer, scenario, or a file of the repository)
    ```text
    FAIL  moved  the timeline moves the VM to DC2: the timeline moved no vm (to dc2)
    ```

A promised line is a verdict, a requirement id and text that the real line ("says: detail")
must hold; "…" stands for what varies between runs (counts, times).
"""
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "lab" / "exercises"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_PROMISE = re.compile(r"<!-- check: (\S+) -->\n```text\n(.*?)^```", re.M | re.S)
_LINE = re.compile(r"^(PASS|FAIL)\s+(\S+)\s*(.*)$")


def pages():
    return sorted(EXERCISES.glob("[0-9][0-9]-*.md"))


def blocks(page, lang):
    """The text of the page's fenced blocks of one language."""
    return [m.group(2) for m in _FENCE.finditer(Path(page).read_text()) if m.group(1) == lang]


def commands(page):
    """argv after `lisp-lab` of every shell line of the page that runs it."""
    out = []
    for block in blocks(page, "sh"):
        for line in block.splitlines():
            words = shlex.split(line.split(" #")[0])
            for i, w in enumerate(words):
                if w == "lisp-lab" or w.endswith("/lisp-lab"):
                    out.append(words[i + 1:])
                    break
    return out


def shell_lines(page):
    """What the page types at the `lisp-lab>` prompt."""
    return [line[len("lisp-lab> "):].split(" #")[0].strip()
            for block in blocks(page, "text") for line in block.splitlines()
            if line.startswith("lisp-lab> ")]


def promises(page):
    """[(which file: starter/answer/scenario/path, [(verdict, id, fragments)])]."""
    out = []
    for m in _PROMISE.finditer(Path(page).read_text()):
        lines = []
        for line in m.group(2).splitlines():
            got = _LINE.match(line.strip())
            if got:
                verdict, rid, text = got.groups()
                lines.append((verdict, rid, [t.strip() for t in text.split("…") if t.strip()]))
        out.append((m.group(1), lines))
    return out


def promised_file(exercise, which):
    """The file a promise block is about."""
    if which in ("starter", "scenario"):
        return exercise.scenario
    if which == "answer":
        return exercise.answer
    return ROOT / which

"""`lisp-lab check EXERCISE [FILE]`: an exercise's requirements, judged on a played run.

An exercise (lab/exercises/NN-name.md) has a scenario the student starts from (NN-name.yaml)
and a list of requirements (NN-name.check.yaml). `check` plays the student's file (default:
the exercise's own scenario) with lab/scenario.py, analyses the captures, and judges every
requirement from what the run measured, never from the file's text: the analysis' values
(report.json), the scenario's own checks, the moves the timeline made, the daemons' event
logs and the captures (tshark display filters, the ones the page tells the student to type
in Wireshark). One line per requirement, PASS or FAIL with the measured value, and a JSON
summary an instructor can collect.

A requirement is one mapping of the .check.yaml, with `id`, `says` (what must hold, in the
student's words), optionally `hint` (printed when it fails), and one of these kinds:

    report: KEY            a value of the analysis (dotted path: convergence_budget.floor_ms.smr)
                           with equals / min / max / contains / excludes / not_null
    check: KIND            the scenario's checks of that kind ran (at least `min`, default 1)
                           and all passed
    moved: HOST            the timeline moved HOST (`to: SITE`)
    events: NAME           events NAME in `node`'s event log, `match`ing fields (eid: HOST,
                           from: NODE, rlocs: NODE, or text), `after: move`; min / max;
                           `explain: OTHER` adds OTHER events' reasons to a failure
    capture: LINK          frames of LINK's capture that match `filter` (a display filter),
                           `after: move`; min / max

The judging (`judge`, `judge_all`) takes a `Measured` run and is pure, so the unit tests
feed it synthetic runs; `play_and_judge` is what needs root.
"""
import ipaddress
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from topologies.labfile import LabFileError, Map, Seq, check_keys, read

ROOT = Path(__file__).resolve().parent.parent
EXERCISES_DIR = ROOT / "lab" / "exercises"
KINDS = ("report", "check", "moved", "events", "capture")
COMMON = ("id", "says", "hint")
KEYS = {"report": ("equals", "min", "max", "contains", "excludes", "not_null"),
        "check": ("min",),
        "moved": ("to",),
        "events": ("node", "match", "after", "min", "max", "explain"),
        "capture": ("filter", "after", "min", "max")}
_CHECK_KIND = re.compile(r"^t=\S+ check (\S+)")


@dataclass
class Requirement:
    id: str
    says: str
    kind: str
    spec: dict
    where: tuple                  # (file, line)
    hint: str = ""

    def error(self, message):
        return LabFileError(self.where[0], self.where[1], f"requirement {self.id}: {message}")


@dataclass
class Exercise:
    name: str                     # "06-securing"
    title: str
    file: Path                    # the .check.yaml
    scenario: Path                # what the student starts from
    answer: Path | None           # the answer key's solution (None: nothing to change)
    page: Path
    requirements: list = field(default_factory=list)


@dataclass
class Measured:
    """What one played run measured: the analysis' result, the timeline's moves, the
    daemons' events ({node: [event dict]}), and the frame times matching a display filter
    on a link's capture (`frames(link, filter)` -> [epoch seconds]; raises ValueError with
    tshark's own words for a filter it rejects)."""
    result: dict
    moves: list
    events: dict
    frames: object = None
    hosts: dict = field(default_factory=dict)    # host -> [addresses]
    rlocs: dict = field(default_factory=dict)    # node -> [RLOC addresses]


# --- reading an exercise -----------------------------------------------------------------

def exercises():
    """Every exercise of lab/exercises/, in order."""
    return [load_exercise(p) for p in sorted(EXERCISES_DIR.glob("[0-9][0-9]-*.check.yaml"))]


def find_exercise(name):
    """The .check.yaml of "6", "06", "06-securing" or a path; LabFileError if none."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    stem = name.zfill(2) if name.isdigit() else name
    found = sorted(EXERCISES_DIR.glob(f"{stem}.check.yaml")) or \
        sorted(EXERCISES_DIR.glob(f"{stem}-*.check.yaml"))
    if len(found) != 1:
        known = ", ".join(p.name[:-len(".check.yaml")] for p in
                          sorted(EXERCISES_DIR.glob("[0-9][0-9]-*.check.yaml")))
        raise LabFileError(name, 0, f"no exercise {name!r} (exercises: {known})")
    return found[0]


def load_exercise(path):
    """An Exercise from its .check.yaml; LabFileError (file:line) for a bad one."""
    path = Path(path).resolve()
    data = read(path)
    check_keys(data, ("title", "requirements"), ("title", "requirements"), "the exercise")
    name = path.name[:-len(".check.yaml")] if path.name.endswith(".check.yaml") else path.stem
    answer = path.parent / "answers" / f"{name}.yaml"
    ex = Exercise(name, str(data["title"]), path, path.parent / f"{name}.yaml",
                  answer if answer.exists() else None, path.parent / f"{name}.md")
    reqs = data["requirements"]
    if not isinstance(reqs, Seq) or not reqs:
        raise data.error("requirements", "requirements: a list of mappings")
    seen = set()
    for i, r in enumerate(reqs):
        if not isinstance(r, Map):
            raise reqs.error(i, "a requirement is a mapping (id:, says:, and its kind)")
        kinds = [k for k in KINDS if k in r]
        if len(kinds) != 1:
            raise r.error(None, f"a requirement has exactly one of {', '.join(KINDS)}")
        kind = kinds[0]
        check_keys(r, COMMON + (kind,) + KEYS[kind], ("id", "says"), f"requirement {kind}")
        if r["id"] in seen:
            raise r.error("id", f"requirement id {r['id']!r} twice")
        seen.add(r["id"])
        if kind in ("events", "capture") and r.get("after", "move") != "move":
            raise r.error("after", "after: move is the one choice")
        if kind == "events" and "node" not in r:
            raise r.error(None, "an events requirement needs node:")
        if kind == "capture" and "filter" not in r:
            raise r.error(None, "a capture requirement needs filter:")
        ex.requirements.append(Requirement(str(r["id"]), str(r["says"]), kind, dict(r),
                                           r.at(None), str(r.get("hint", ""))))
    return ex


def check_names(ex, model):
    """The nodes, hosts and links the requirements name exist in the played model."""
    nodes, hosts = set(model.node_names()), set(model.hosts)
    for r in ex.requirements:
        s = r.spec
        if r.kind == "events" and s["node"] not in nodes:
            raise r.error(f"no node {s['node']!r} in {model.file}")
        if r.kind == "moved" and s["moved"] not in hosts:
            raise r.error(f"no host {s['moved']!r} in {model.file}")
        if r.kind == "capture" and s["capture"] not in model.captures():
            raise r.error(f"no captured link {s['capture']!r} in {model.file} "
                          f"(links: {', '.join(sorted(model.captures()))})")
        for k, v in (s.get("match") or {}).items():
            if k == "eid" and v not in hosts:
                raise r.error(f"match eid: {v!r} is not a host of {model.file}")
            if k in ("from", "rlocs") and v not in nodes:
                raise r.error(f"match {k}: {v!r} is not a node of {model.file}")


# --- judging -----------------------------------------------------------------------------

def _value(result, key):
    cur = result
    for part in str(key).split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", part) \
                and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(key)
    return cur


def _bounds(n, spec, what):
    """(ok, text) of a count or value against min/max."""
    lo, hi = spec.get("min"), spec.get("max")
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    want = (f"at least {lo:g}" if hi is None else f"at most {hi:g}" if lo is None
            else f"{lo:g} to {hi:g}")
    return ok, f"{what} (wanted {want})"


def _judge_report(s, run):
    key = s["report"]
    try:
        v = _value(run.result, key)
    except KeyError:
        return False, f"the run measured no {key}"
    shown = json.dumps(v) if not isinstance(v, str) else v
    if "equals" in s:
        return v == s["equals"], f"{key} = {shown} (wanted {json.dumps(s['equals'])})"
    if s.get("not_null") and v is None:
        return False, f"{key} is null: not measured in this run"
    if "min" in s or "max" in s:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return False, f"{key} = {shown}: no number was measured"
        return _bounds(v, s, f"{key} = {shown}")
    if "contains" in s or "excludes" in s:
        items = v if isinstance(v, list) else []
        if "contains" in s and s["contains"] not in items:
            return False, f"{key} = {shown}: no {s['contains']}"
        if "excludes" in s and s["excludes"] in items:
            return False, f"{key} = {shown}: has {s['excludes']}"
        return True, f"{key} = {shown}"
    return v is not None, f"{key} = {shown}"


def _judge_check(s, run):
    kind = s["check"]
    mine = [c for c in run.result.get("checks") or []
            if (_CHECK_KIND.match(c.get("step", "")) or [None, None])[1] == kind]
    need = int(s.get("min", 1))
    if len(mine) < need:
        return False, (f"the run had {len(mine)} {kind} check(s) (wanted at least {need}): "
                       f"add a `check: {kind}` step to the timeline")
    bad = [c for c in mine if not c["ok"]]
    if bad:
        c = bad[0]
        return False, (f"{len(bad)} of {len(mine)} {kind} check(s) failed; "
                       f"{Path(c['file']).name}:{c['line']}: {c['detail']}")
    return True, f"{len(mine)} {kind} check(s) passed: {mine[-1]['detail']}"


def _judge_moved(s, run):
    host, to = s["moved"], s.get("to")
    moves = [m for m in run.moves if m["host"] == host]
    if not moves:
        return False, f"the timeline moved no {host}" + (f" (to {to})" if to else "")
    if to and not any(m["to"] == to for m in moves):
        return False, f"{host} moved to {', '.join(m['to'] for m in moves)}, never to {to}"
    m = next(m for m in moves if not to or m["to"] == to)
    return True, f"{host} moved to {m['to']}" + (f" (cold, {m['cold_s']:g} s)"
                                                 if m.get("cold_s") else " (live)")


def _eid_network(text):
    """The prefix in an event's eid field: "[0]10.10.0.5/32", "10.10.0.5" -> network."""
    text = re.sub(r"^\[\d+\]", "", str(text))
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _matches(ev, match, run):
    for k, want in match.items():
        got = ev.get(k)
        if k == "eid":
            # the event's prefix covers the host (a /32, or a site's prefix)
            net = _eid_network(got)
            if net is None or not any(ipaddress.ip_address(a) in net
                                      for a in run.hosts.get(want, [])):
                return False
        elif k == "from":
            if str(got) not in run.rlocs.get(want, []):
                return False
        elif k == "rlocs":
            if not set(run.rlocs.get(want, [])) & set(got or []):
                return False
        elif str(want) not in str(got):
            return False
    return True


def _after_move(s, run):
    """The time events or frames must come after (None: any), or a failure text."""
    if s.get("after") != "move":
        return None, None
    if not run.moves:
        return None, "the timeline has no move (it asks for what happened after one)"
    return float(run.moves[0]["time"]), None


def _match_text(s):
    bits = [f"{k} {v}" for k, v in (s.get("match") or {}).items()]
    return (" with " + ", ".join(bits) if bits else "") + \
        (" after the move" if s.get("after") == "move" else "")


def _judge_events(s, run):
    since, problem = _after_move(s, run)
    if problem:
        return False, problem
    node, name = s["node"], s["events"]
    evs = [e for e in run.events.get(node, []) if e.get("event") == name
           and _matches(e, s.get("match") or {}, run)
           and (since is None or float(e.get("time", 0)) >= since)]
    ok, text = _bounds(len(evs), s, f"{node} logged {len(evs)} {name}{_match_text(s)}")
    if not ok and s.get("explain"):
        other = [e for e in run.events.get(node, []) if e.get("event") == s["explain"]
                 and (since is None or float(e.get("time", 0)) >= since)]
        reasons = {}
        for e in other:
            r = e.get("reason") or e.get("eid") or "?"
            reasons[r] = reasons.get(r, 0) + 1
        text += (f"; {node} logged {len(other)} {s['explain']}"
                 + (": " + ", ".join(f"{n} x {r}" for r, n in sorted(reasons.items()))
                    if reasons else ""))
    return ok, text


def _judge_capture(s, run):
    since, problem = _after_move(s, run)
    if problem:
        return False, problem
    link, filt = s["capture"], s["filter"]
    if run.frames is None:
        return False, "the run kept no captures"
    try:
        times = run.frames(link, filt)
    except (OSError, ValueError) as e:
        return False, f"{link}: {e}"
    n = sum(1 for t in times if since is None or t >= since)
    return _bounds(n, s, f"{n} frame(s) on {link} match `{filt}`"
                   + (" after the move" if since is not None else ""))


_JUDGES = {"report": _judge_report, "check": _judge_check, "moved": _judge_moved,
           "events": _judge_events, "capture": _judge_capture}


def judge(req, run):
    """(ok, detail) of one requirement on a measured run."""
    return _JUDGES[req.kind](req.spec, run)


def judge_all(ex, run, file=None, run_dir=None):
    """The summary dict: per requirement its verdict and measured detail."""
    rows = []
    for r in ex.requirements:
        ok, detail = judge(r, run)
        rows.append({"id": r.id, "says": r.says, "ok": bool(ok), "detail": detail,
                     "hint": r.hint, "where": f"{r.where[0]}:{r.where[1]}"})
    passed = sum(r["ok"] for r in rows)
    return {"exercise": ex.name, "title": ex.title, "file": str(file or ex.scenario),
            "run_dir": str(run_dir) if run_dir else None,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "user": os.environ.get("SUDO_USER") or os.environ.get("USER"),
            "passed": passed == len(rows), "passed_count": passed, "total": len(rows),
            "requirements": rows,
            "scenario_checks": [{k: c.get(k) for k in ("step", "ok", "detail", "line")}
                                for c in run.result.get("checks") or []]}


def summary_lines(summary):
    """What `lisp-lab check` prints: one line per requirement, a hint under each failure."""
    w = max(len(r["id"]) for r in summary["requirements"])
    out = [f"exercise {summary['exercise']}: {summary['title']}", f"file: {summary['file']}"]
    for r in summary["requirements"]:
        out.append(f"{'PASS' if r['ok'] else 'FAIL'}  {r['id'].ljust(w)}  {r['says']}: "
                   f"{r['detail']}")
        if not r["ok"] and r["hint"]:
            out.append(f"      {' ' * w}  hint: {r['hint']}")
    out.append(f"{summary['passed_count']} of {summary['total']} requirements passed")
    return out


# --- measuring a played run --------------------------------------------------------------

def tshark_frames(pcap_dir):
    """frames(link, filter) over the pcaps of one played lab: tshark's epoch times."""
    def frames(link, filt):
        pcap = Path(pcap_dir) / f"{link}.pcap"
        if not pcap.exists():
            raise OSError(f"no capture ({pcap})")
        r = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", filt, "-T", "fields",
                            "-e", "frame.time_epoch"], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or ["tshark failed"])[0]
            raise ValueError(f"tshark: {first}")
        return [float(x) for x in r.stdout.split()]
    return frames


def measured(model, mode_dir, result):
    """The Measured run of a played and analysed lab in mode_dir."""
    from nodes.eventlog import read_events
    mode_dir = Path(mode_dir)
    links = json.loads((mode_dir / "links.json").read_text())
    events = {}
    for p in sorted(mode_dir.glob("*.events.jsonl")):
        events[p.name[:-len(".events.jsonl")]] = read_events(p)
    hosts = {h.name: [str(a.ip) for a in h.addresses] for h in model.hosts.values()}
    rlocs = {}
    for n in model.node_names():
        try:
            rlocs[n] = [str(up.ip(n)) for up in model.uplinks(n)]
        except Exception:                     # noqa: BLE001 (a node without uplinks)
            rlocs[n] = []
    return Measured(result, links.get("moves") or [], events, tshark_frames(mode_dir),
                    hosts, rlocs)


def play_and_judge(ex, file, run_dir, progress, run_id=None):
    """Play `file` into run_dir (root), analyse, report, judge: the summary. `run_id`: the
    lab's run record's name (default check-NN-TIME)."""
    from captures.report import write_report
    from lab.demo import run_scenario
    from topologies.model import load
    model = load(file)
    check_names(ex, model)
    result = run_scenario(file, run_dir, progress, model.name,
                          run_id=run_id or f"check-{ex.name[:2]}-{int(time.time())}")
    write_report(run_dir, {model.name: result}, result.get("delay_emulation"))
    return judge_all(ex, measured(model, Path(run_dir) / model.name, result), file, run_dir)

"""`lisp-lab`: the lab's command line (run, cli, validate, list, demo, check, doctor, show,
clean)."""
import argparse
import sys

from nodes.lisp import __doc__ as _core_doc  # noqa: F401  (the core must import cleanly)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lisp-lab",
        description="LISP and VM-mobility lab: emulated data centers, our own LISP xTRs, "
                    "captures and reports.")
    parser.add_argument("--version", action="version", version="lisp-lab 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    clean = sub.add_parser("clean", help="remove what an interrupted or crashed run left "
                                         "behind (only what the lab recorded creating)")
    clean.add_argument("--include-live", action="store_true",
                       help="also clean runs whose lab process is still alive")
    clean.add_argument("--mininet", action="store_true",
                       help="also run `mn -c` (touches every Mininet-looking interface)")
    clean.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_show_parser(sub)
    run = sub.add_parser("run", help="play a scenario file: build its network, play its "
                                     "timeline, capture, check, report (needs root)")
    run.add_argument("file", metavar="FILE", help="a lab or scenario file (YAML)")
    run.add_argument("--run-id", help="name of the run directory under captures/")
    run.add_argument("--cold", type=float, default=0.0, metavar="SECONDS",
                     help="make every move of the timeline a cold move of this many seconds")
    validate = sub.add_parser("validate", help="check a lab or scenario file (no root needed)")
    validate.add_argument("files", nargs="+", metavar="FILE")
    sub.add_parser("list", help="the shipped labs and scenarios, one line each")
    sub.add_parser("doctor", help="check what this machine gives the lab (root, Mininet, "
                                  "netem, tools, kernel features, leftovers) and how to fix "
                                  "each; exit 1 only when no lab can run"
                   ).add_argument("--json", action="store_true", help="print it as JSON")
    cli = sub.add_parser("cli", help="build a lab's network and open Mininet's CLI with LISP "
                                     "commands (needs root)")
    cli.add_argument("file", metavar="FILE", help="a lab or scenario file (YAML)")
    cli.add_argument("--run-id", help="name of the run directory under captures/")
    demo = sub.add_parser("demo", help="play the VM move in every mode, capture, measure, "
                                       "report (needs root)")
    demo.add_argument("--modes", default=",".join(_modes()),
                      help="comma-separated modes (default: all five)")
    demo.add_argument("--run-id", help="name of the run directory under captures/")
    demo.add_argument("--cold", type=float, default=0.0, metavar="SECONDS",
                      help="a cold move: the VM's link is down this long before it comes "
                           "up in DC2 (default 0: a live move)")
    check = sub.add_parser("check", help="play an exercise's scenario (or your FILE) and say, "
                                         "per requirement, passed or failed and why (needs root)")
    check.add_argument("exercise", metavar="EXERCISE",
                       help="an exercise of lab/exercises/: 2, 02 or 02-triangle")
    check.add_argument("file", nargs="?", metavar="FILE",
                       help="your scenario (default: the exercise's own)")
    check.add_argument("--json", metavar="FILE", dest="json_out",
                       help="write the summary here (default: check.json in the run directory)")
    check.add_argument("--run-id", help="name of the run directory under captures/")
    return parser


def _modes():
    from lab.demo import MODES
    return MODES


def _load(path, command):
    """The model of a lab file, or None after printing its one-line problem."""
    from topologies.model import LabFileError, load
    try:
        return load(path)
    except LabFileError as e:
        print(f"lisp-lab {command}: {e}", file=sys.stderr)
        return None


def _validate_requirements(f):
    """An exercise's requirement file (NN-name.check.yaml): it reads, and what it names is
    in its scenario and its solution. The one-line problem, or None."""
    from lab.check import check_names, load_exercise
    from topologies.model import LabFileError, load
    try:
        ex = load_exercise(f)
        played = [ex.scenario] + ([ex.answer] if ex.answer else [])
        for lab in played:
            check_names(ex, load(lab))
    except LabFileError as e:
        print(f"lisp-lab validate: {e}", file=sys.stderr)
        return None
    on = ex.scenario.name + (f" and answers/{ex.answer.name}" if ex.answer else "")
    print(f"{f}: ok (exercise {ex.name}: {len(ex.requirements)} requirements, judged on {on})")
    return ex


def cmd_validate(args):
    bad = 0
    for f in args.files:
        if str(f).endswith(".check.yaml"):
            bad += _validate_requirements(f) is None
            continue
        model = _load(f, "validate")
        if model is None:
            bad += 1
            continue
        print(f"{f}: ok ({model.name}: {len(model.node_names())} nodes, {len(model.links)} "
              f"links, {len(model.sites)} sites, {len(model.timeline)} steps)")
    return 1 if bad else 0


def cmd_list(args):
    from topologies.model import LabFileError, lab_files
    rows = []
    for path, model in lab_files():
        if isinstance(model, LabFileError):
            rows.append((path.name, "INVALID", str(model)))
        else:
            kind = "scenario" if model.timeline else "lab"
            rows.append((path.name, kind, model.description or model.name))
    w = max(len(r[0]) for r in rows)
    for name, kind, text in rows:
        print(f"{name.ljust(w)}  {kind:<8}  {text}")
    return 0


def cmd_doctor(args):
    from lab.doctor import main as doctor
    return doctor(as_json=args.json)


def _played(command, play, *args, **kwargs):
    """(what `play` returned, None), or (None, exit code) after one line on stderr when it
    was interrupted or failed: never a traceback."""
    try:
        return play(*args, **kwargs), None
    except KeyboardInterrupt:
        print(f"lisp-lab {command}: interrupted; everything it started has been removed",
              file=sys.stderr)
        return None, 130
    except Exception as e:                  # noqa: BLE001 (one line, never a traceback)
        return None, _failed(command, e)


def _failed(command, e):
    """A run that failed: one line, with the traceback kept in a file for a bug report.
    Everything the run started has been removed by then (the Lab stops on the way out)."""
    import tempfile
    import traceback
    with tempfile.NamedTemporaryFile("w", prefix=f"lisp-lab-{command}-", suffix=".log",
                                     delete=False) as f:
        traceback.print_exception(e, file=f)
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"lisp-lab {command}: {text} (everything it started has been removed; details in "
          f"{f.name})", file=sys.stderr)
    return 1


def _root(command):
    import os
    if os.geteuid() != 0:
        print(f"lisp-lab {command}: needs root (it builds network namespaces): "
              f"sudo .venv/bin/lisp-lab {command} ...", file=sys.stderr)
        return False
    return True


def cmd_run(args):
    model = _load(args.file, "run")
    if model is None:
        return 2
    if not model.timeline:
        print(f"lisp-lab run: {args.file} has no timeline: nothing to play (try `lisp-lab cli "
              f"{args.file}`, or a scenario that extends it)", file=sys.stderr)
        return 2
    if not _root("run"):
        return 1
    import json
    import time

    from captures.report import summary_table, write_report
    from lab.demo import CAPTURES_DIR, Progress, run_scenario
    run_dir = CAPTURES_DIR / (args.run_id or time.strftime("%Y%m%d-%H%M%S"))
    result, rc = _played("run", run_scenario, args.file, run_dir, Progress(),
                         cold_s=max(args.cold, 0.0))
    if rc is not None:
        return rc
    paths = write_report(run_dir, {model.name: result}, result.get("delay_emulation"))
    print()
    print(summary_table({model.name: result}))
    failed = [c for c in result["checks"] if not c["ok"]]
    print(f"\nchecks: {len(result['checks']) - len(failed)} of {len(result['checks'])} passed")
    for c in failed:
        print(f"  FAILED {c['file']}:{c['line']}: {c['step']}: {c['detail']}")
    print(f"\nreport: {paths[0]}\npage:   {paths[-1]}\ndata:   {paths[1]}\n"
          f"plots:  {run_dir}/*.png")
    json.loads(paths[1].read_text())          # the report is strict JSON
    return 1 if failed else 0


def cmd_check(args):
    """Judge an exercise's requirements on a run of FILE (lab/check.py does the work)."""
    import json
    import time
    from pathlib import Path

    from lab.check import check_names, find_exercise, load_exercise, summary_lines
    from topologies.model import LabFileError
    try:
        ex = load_exercise(find_exercise(args.exercise))
        file = Path(args.file) if args.file else ex.scenario
        model = _load(file, "check")
        if model is None:
            return 2
        check_names(ex, model)          # a requirement naming what the file does not have
    except LabFileError as e:
        print(f"lisp-lab check: {e}", file=sys.stderr)
        return 2
    if not _root("check"):
        return 1
    from lab.check import play_and_judge
    from lab.demo import CAPTURES_DIR, Progress
    run_dir = CAPTURES_DIR / (args.run_id or f"check-{ex.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    summary, rc = _played("check", play_and_judge, ex, file, run_dir, Progress(),
                          run_id=args.run_id)
    if rc is not None:
        return rc
    out = Path(args.json_out) if args.json_out else run_dir / "check.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print()
    print("\n".join(summary_lines(summary)))
    print(f"\nsummary: {out}\nreport:  {run_dir / 'report.md'}")
    return 0 if summary["passed"] else 1


def cmd_demo(args):
    import os
    if os.geteuid() != 0:
        print("lisp-lab demo: needs root (sudo make demo)", file=sys.stderr)
        return 1
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in _modes()]
    if unknown:
        print(f"lisp-lab demo: unknown mode(s) {', '.join(unknown)}; modes: "
              f"{', '.join(_modes())}", file=sys.stderr)
        return 2
    from captures.report import summary_table
    from lab.demo import run_demo
    played, rc = _played("demo", run_demo, args.run_id, modes, cold_s=max(args.cold, 0.0))
    if rc is not None:
        return rc
    run_dir, results = played
    print()
    print(summary_table(results))
    import json
    first = json.loads((run_dir / "report.json").read_text())["demo_start_to_first_lisp_probe_s"]
    print("\ndemo start to the first probe delivered through LISP: "
          + ("no LISP mode delivered a probe" if first is None else f"{first:.1f} s"))
    print(f"\nreport: {run_dir / 'report.md'}\ndata:   {run_dir / 'report.json'}\n"
          f"plots:  {run_dir}/*.png")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "clean":
        from lab import cleanup
        return cleanup.main([flag for flag, on in (("--include-live", args.include_live),
                                                   ("--mininet", args.mininet),
                                                   ("--json", args.json)) if on])
    if args.command == "show":
        return cmd_show(args)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "list":
        return cmd_list(args)
    if args.command == "doctor":
        return cmd_doctor(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "cli":
        from lab.shell import main as cli_main
        model = _load(args.file, "cli")
        if model is None:
            return 2
        return cli_main(model, args) if _root("cli") else 1
    return 0


# --- lisp-lab show: a running node's map-cache, registrations, counters -----------------

SHOW_WHAT = ("map-cache", "registrations", "counters", "config")


def _node_name(text):
    if not text or "/" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"invalid node name {text!r}")
    return text


def add_show_parser(sub):
    p = sub.add_parser(
        "show", help="show a running node's map-cache, registrations or counters",
        description="Ask a running node daemon, through its control socket, for its "
                    "map-cache (xTRs), registrations (Map-Server) or counters.")
    p.add_argument("node", type=_node_name, metavar="NODE", help="node name, e.g. xtr1")
    p.add_argument("what", choices=SHOW_WHAT, metavar="WHAT",
                   help="one of: " + ", ".join(SHOW_WHAT))
    p.add_argument("--json", action="store_true", help="print the data as JSON")
    p.add_argument("--socket", metavar="PATH",
                   help="control socket (default: /run/lisp-lab/NODE.sock)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS",
                   help="how long to wait for the node (default: 2)")
    return p


def _table(headers, rows):
    """Aligned plain-text columns: two spaces apart, no trailing blanks."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [headers, *rows])


def _probe_text(p):
    """A probed locator's state: "up rtt 61.3ms", "up (no answer yet)", "down (3 missed)"."""
    if p["up"]:
        return " up " + (f"rtt {p['rtt_ms']:g}ms" if p.get("rtt_ms") is not None
                         else "(no answer yet)")
    return f" down ({p.get('misses', 0)} missed" + (
        f", last rtt {p['rtt_ms']:g}ms)" if p.get("rtt_ms") is not None else ")")


def _rlocs_text(rlocs):
    return ", ".join(f"{r['address']} {r['priority']}/{r['weight']}"
                     + (_probe_text(r["probe"]) if r.get("probe") else
                        "" if r.get("reachable", True) else " down") for r in rlocs)


def _seconds_text(s):
    return "never" if s is None else f"{s}s"


def format_map_cache(rows):
    """The map-cache rows of nodes.control.map_cache_rows as a table."""
    if not rows:
        return "(empty)"
    return _table(("IID", "EID-PREFIX", "RLOCS", "ACTION", "TTL"),
                  [(r["iid"], r["eid"], "negative" if r["negative"] else _rlocs_text(r["rlocs"]),
                    r["action"], _seconds_text(r["ttl_left_s"])) for r in rows])


def format_registrations(rows):
    """The rows of nodes.control.registration_rows as a table, one line per registrant."""
    if not rows:
        return "(empty)"
    lines = []
    for r in rows:
        first = (r["iid"], r["eid"], r["site"], "yes" if r["more_specific"] else "no")
        regs = r["registrants"] or [{"from": "-", "rlocs": [], "expires_in_s": None}]
        for i, g in enumerate(regs):
            lines.append((first if i == 0 else ("", "", "", ""))
                         + (g["from"], _rlocs_text(g["rlocs"]) or "-",
                            _seconds_text(g["expires_in_s"])))
    return _table(("IID", "EID-PREFIX", "SITE", "MORE-SPECIFIC", "FROM", "RLOCS", "EXPIRES"),
                  lines)


def format_counters(counters):
    """"name  value" lines sorted by name, values right-aligned."""
    if not counters:
        return "(empty)"
    items = sorted((str(k), str(v)) for k, v in counters.items())
    wk = max(len(k) for k, _ in items)
    wv = max(len(v) for _, v in items)
    return "\n".join(f"{k.ljust(wk)}  {v.rjust(wv)}" for k, v in items)


def format_config(config):
    """"key  value" lines sorted by key."""
    if not config:
        return "(empty)"
    wk = max(len(str(k)) for k in config)
    return "\n".join(f"{str(k).ljust(wk)}  {v}".rstrip() for k, v in sorted(config.items()))


_FORMATS = {"map-cache": format_map_cache, "registrations": format_registrations,
            "counters": format_counters, "config": format_config}


def cmd_show(args):
    import json

    from nodes.control import ControlError, query, socket_path
    path = args.socket or socket_path(args.node)
    try:
        reply = query(path, {"show": args.what}, timeout=args.timeout, node=args.node)
    except ControlError as e:
        print(f"lisp-lab show: {e}", file=sys.stderr)
        return 1
    data = reply.get("data")
    try:
        text = json.dumps(data, indent=2) if args.json else _FORMATS[args.what](data)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"lisp-lab show: node {args.node} sent a bad reply for {args.what} "
              f"({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`lisp-lab`: the lab's command line. Subcommands arrive with the issues that need them."""
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
    sub.add_parser("clean", help="remove what an interrupted run left behind")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "clean":
        print("lisp-lab clean: nothing to clean yet (no run has been recorded)")
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Capture and analysis code. Run outputs go in captures/<run-id>/ and are not committed.

- `captures.analysis`: `analyze_mode(mode_dir)` reads a mode's links.json and one pcap per
  link and returns the mode's result (paths, DCI counts, convergence, loss, RTT, TCP, LISP
  control messages) as a strict-JSON-able dict.
- `captures.report`: `write_report(run_dir, results, delay_emulation)` writes report.md,
  report.json and the PNG plots; `summary_table(results)` is the table for a terminal;
  `python -m captures.report captures/<run-id>` does it all for a run on disk.
- `captures.plots`: the plots (matplotlib, Agg backend).

captures/README.md documents links.json and every key of report.json.
"""

"""PNG plots of a run: one timeline per mode and a comparison of the modes.

Drawn with matplotlib's Agg backend through the object API (Figure + FigureCanvasAgg): no
display needed, no pyplot global state, safe to call from a process that runs Mininet.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# The links of the story, drawn as lines: role -> (colour, line style).
_ROLE_STYLE = {"client": ("0.4", ":"), "vm-origin": ("tab:blue", "-"), "dci": ("tab:orange", "-"),
               "vm-target": ("tab:green", "-")}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path


def _mark_move(ax, result):
    ax.axvline(0.0, color="red", linewidth=1.2, label="move starts")
    if result.get("move_duration_ms") is not None:
        ax.axvline(result["move_duration_ms"] / 1000.0, color="red", linestyle="--",
                   linewidth=0.8, label="move done")
    if result.get("convergence_ms") is not None:
        ax.axvline(result["convergence_ms"] / 1000.0, color="green", linestyle=":",
                   linewidth=1.2, label="converged")


def plot_timeline(result: dict, mode: str, path) -> Path:
    """Three panels sharing the time axis (t = 0: the move): the probes' RTT (lost probes
    marked), the rate of client->VM packets on the links of the story (client, DC1's and
    DC2's access links, the DCI), and the same rate on every link as a heat map."""
    fig = Figure(figsize=(10, 9), layout="constrained")
    ax_rtt, ax_rate, ax_map = fig.subplots(3, 1, sharex=True,
                                           gridspec_kw={"height_ratios": [3, 2, 2]})
    rtt = result.get("rtt_ms") or []
    if rtt:
        ax_rtt.plot([p[0] for p in rtt], [p[1] for p in rtt], ".", markersize=2,
                    color="tab:blue", label="probe RTT")
    lost = result.get("lost_times_s") or []
    if lost:
        ymax = max((p[1] for p in rtt), default=1.0)
        ax_rtt.plot(lost, [ymax * 1.05] * len(lost), "|", color="tab:red", markersize=6,
                    label=f"lost probes ({len(lost)})")
    _mark_move(ax_rtt, result)
    ax_rtt.set_ylabel("RTT (ms)")
    ax_rtt.set_title(f"{mode}: probe RTT and client->VM packets per link (t = 0: the move)")
    ax_rtt.legend(loc="upper left", fontsize=8)
    ax_rtt.grid(True, alpha=0.3)

    rates = result.get("per_link_rate") or {}
    t = rates.get("t_s") or []
    pps = rates.get("pps") or {}
    bin_s = rates.get("bin_s", 0.1)
    roles = {name: info.get("role") for name, info in (result.get("links") or {}).items()}
    story = [(name, role) for name, role in roles.items()
             if role in _ROLE_STYLE and name in pps]
    for name, role in story:
        colour, style = _ROLE_STYLE[role]
        ax_rate.step(t, pps[name], where="post", color=colour, linestyle=style,
                     linewidth=2.0 if role == "dci" else 1.2, label=f"{name} ({role})")
    _mark_move(ax_rate, result)
    ax_rate.set_ylabel("packets/s")
    ax_rate.grid(True, alpha=0.3)
    if story:
        ax_rate.legend(loc="upper left", fontsize=7, ncol=2)

    names = list(pps)
    if names and t:
        edges = list(t) + [t[-1] + bin_s]
        image = ax_map.pcolormesh(edges, list(range(len(names) + 1)),
                                  [pps[n] for n in names], cmap="viridis", shading="flat")
        ax_map.set_yticks([i + 0.5 for i in range(len(names))])
        ax_map.set_yticklabels(names, fontsize=7)
        ax_map.invert_yaxis()
        # The colour bar sits outside the axes, so the three panels keep one time axis.
        fig.colorbar(image, cax=ax_map.inset_axes([1.01, 0.0, 0.015, 1.0]), label="packets/s")
    ax_map.axvline(0.0, color="red", linewidth=1.2)
    ax_map.set_xlabel(f"time since the move (s); rates in bins of {bin_s} s")
    return _save(fig, path)


def plot_comparison(results: dict, path) -> Path:
    """Bar charts across modes: DCI bytes after the move and convergence time."""
    modes = list(results)
    fig = Figure(figsize=(max(6, 2.2 * len(modes)), 7), layout="constrained")
    ax_dci, ax_conv = fig.subplots(2, 1)
    x = list(range(len(modes)))
    dci = [(results[m].get("dci_bytes_after_move") or 0) / 1000.0 for m in modes]
    bars = ax_dci.bar(x, dci, color="tab:orange")
    for bar, m in zip(bars, modes):
        n = results[m].get("dci_packets_after_move")
        ax_dci.annotate(f"{n if n is not None else 0} pkts", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax_dci.set_ylabel("kB")
    ax_dci.set_title("client->VM bytes on the DCI after the move (triangular routing)")
    conv = [results[m].get("convergence_ms") for m in modes]
    top = max((c for c in conv if c is not None), default=1.0) or 1.0
    bars = ax_conv.bar(x, [c if c is not None else 0 for c in conv], color="tab:green")
    for bar, c in zip(bars, conv):
        label = f"{c:.0f} ms" if c is not None else "never"
        ax_conv.annotate(label, (bar.get_x() + bar.get_width() / 2,
                                 bar.get_height() if c is not None else top * 0.02),
                         ha="center", va="bottom", fontsize=8,
                         color="black" if c is not None else "tab:red")
    ax_conv.set_ylabel("ms")
    ax_conv.set_title("convergence: move -> first probe at the new DC on the direct path")
    for ax in (ax_dci, ax_conv):
        ax.set_xticks(x)
        ax.set_xticklabels(modes, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_flows(result: dict, mode: str, path, links: list) -> Path:
    """Flows and bytes of a traffic-engineering scenario per link (`links`: those of its
    split checks, e.g. the two provider links), with the weights' shares marked."""
    counts = result.get("flow_counts") or {}
    fig = Figure(figsize=(7, 3.2))
    ax_f, ax_b = fig.subplots(1, 2)
    flows = [(counts.get(n) or {}).get("flows", 0) for n in links]
    kbytes = [(counts.get(n) or {}).get("bytes", 0) / 1000.0 for n in links]
    ax_f.bar(links, flows, color="tab:blue")
    ax_b.bar(links, kbytes, color="tab:green")
    total = sum(flows)
    for check in result.get("checks") or []:
        for name, w in zip(check.get("links") or [], check.get("weights") or []):
            if name in links and total:
                i = links.index(name)
                ax_f.hlines(total * w / sum(check["weights"]), i - 0.4, i + 0.4,
                            colors="red", linestyles="--")
    ax_f.set_title("flows per link (red: the weights' share)", fontsize=9)
    ax_b.set_title("kB per link", fontsize=9)
    fig.suptitle(mode, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_failover(result: dict, mode: str, path) -> Path:
    """The client's probes per second on the primary and the backup provider link (a
    failover check), with the primary's failure and return and the failover marked."""
    f = result["failover"]
    rates = result.get("per_link_rate") or {}
    t = rates.get("t_s") or []
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots(1, 1)
    for name, colour in ((f["primary"], "tab:blue"), (f["backup"], "tab:green")):
        pps = (rates.get("pps") or {}).get(name)
        if pps:
            ax.plot(t[:len(pps)], pps, color=colour, linewidth=1.2, label=name)
    ax.axvline(f["down_s"], color="red", linewidth=1.2, label=f"{f['primary']} down")
    if f.get("failover_ms") is not None:
        ax.axvline(f["down_s"] + f["failover_ms"] / 1000.0, color="green", linestyle=":",
                   linewidth=1.2, label=f"on {f['backup']} ({f['failover_ms']:.0f} ms)")
    if f.get("up_s") is not None:
        ax.axvline(f["up_s"], color="red", linestyle="--", linewidth=1.0,
                   label=f"{f['primary']} up")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probes per second")
    ax.set_title(f"{mode}: probes per provider link, failover and return", fontsize=9)
    ax.legend(loc="center right", fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)

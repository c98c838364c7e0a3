"""The failover of a primary/backup site, measured from the captures (issue 11): per provider
link the client's probe packets and bytes, and the timeline of a primary link failure.

    result = failover(sent, delivered, primary, backup, down_at, up_at, interval_s)
    result = from_captures(meta, caps, check)   # links.json, {link: LinkCapture}, the check

`sent` and `delivered` map each probe (its key) to when it was first seen on the client's
access link and on the site's access link; `primary` and `backup` map probes to when they
crossed each provider link. Times are epoch seconds; `down_at` and `up_at` are when the
primary link was taken down and brought back (links.json's `link_events`).

- failover_ms: from the link going down to the first probe on the backup link after it;
- probes_lost_failover: probes sent from the link going down until that first backup probe
  was sent (its own send time) that never reached the site;
- failback_ms: from the link coming up to the first probe on the primary link after it;
- probes_lost_failback: the same for the return;
- within_target: failover_ms within `target_intervals` probe intervals.
A probe's time on a provider link is the time it crossed it, so failover_ms includes the
path from the client to that link (a few ms), not only the ITR's decision.
"""
TARGET_INTERVALS = 3            # issue 11: failover within 3 RLOC-probe intervals


def _first_after(times, t):
    later = [x for x in times if x >= t]
    return min(later) if later else None


def _lost(sent, delivered, t_from, t_to):
    if t_to is None:
        return sum(1 for k, ts in sent.items() if ts >= t_from and k not in delivered)
    return sum(1 for k, ts in sent.items() if t_from <= ts < t_to and k not in delivered)


def failover(sent, delivered, primary, backup, down_at, up_at=None, interval_s=None,
             target_intervals=TARGET_INTERVALS):
    """The failover timeline (see the module's docstring); times in the result are ms from
    `down_at` (and from `up_at` for the return), counts are probes."""
    out = {"down_at": down_at, "up_at": up_at, "probe_interval_s": interval_s,
           "target_ms": (round(target_intervals * interval_s * 1e3, 1)
                         if interval_s else None)}
    before = [k for k, ts in sent.items() if ts < down_at]
    out["before_on_primary"] = sum(1 for k in before if k in primary)
    out["before_on_backup"] = sum(1 for k in before if k in backup)
    first_backup = _first_after(backup.values(), down_at)
    out["failover_ms"] = (None if first_backup is None
                          else round((first_backup - down_at) * 1e3, 1))
    moved_key = (min((k for k, ts in backup.items() if ts == first_backup), default=None)
                 if first_backup is not None else None)
    moved_sent = sent.get(moved_key, first_backup) if moved_key is not None else None
    out["probes_lost_failover"] = _lost(sent, delivered, down_at, moved_sent)
    end = up_at if up_at is not None else float("inf")
    during = [k for k, ts in sent.items() if moved_sent is not None and moved_sent <= ts < end]
    out["during_on_primary"] = sum(1 for k in during if k in primary)
    out["during_on_backup"] = sum(1 for k in during if k in backup)
    if up_at is not None:
        first_primary = _first_after(primary.values(), up_at)
        out["failback_ms"] = (None if first_primary is None
                              else round((first_primary - up_at) * 1e3, 1))
        back_key = (min((k for k, ts in primary.items() if ts == first_primary), default=None)
                    if first_primary is not None else None)
        back_sent = sent.get(back_key, first_primary) if back_key is not None else None
        out["probes_lost_failback"] = _lost(sent, delivered, up_at, back_sent)
        after = [k for k, ts in sent.items() if back_sent is not None and ts >= back_sent]
        out["after_on_primary"] = sum(1 for k in after if k in primary)
        out["after_on_backup"] = sum(1 for k in after if k in backup)
    else:
        out["failback_ms"] = out["probes_lost_failback"] = None
    out["within_target"] = (None if out["target_ms"] is None or out["failover_ms"] is None
                            else out["failover_ms"] <= out["target_ms"])
    return out


def link_totals(cap):
    """{"packets", "bytes"} of the client's probe (and TCP) frames a LinkCapture holds."""
    return {"packets": len(cap.out_ts), "bytes": int(sum(cap.out_len))}


def from_captures(meta, caps, check):
    """The failover of a scenario's failover check, from its links.json (`meta`, with its
    `link_events`) and {link name: LinkCapture}: the first time the check's primary link was
    taken down and the next time it came up. None when the scenario never took it down."""
    primary, backup = check["primary"], check["backup"]
    events = [e for e in meta.get("link_events") or [] if e["link"] == primary]
    down = next((e["time"] for e in events if e["state"] == "down"), None)
    if down is None:
        return None
    up = next((e["time"] for e in events if e["state"] == "up" and e["time"] > down), None)
    client = next((x["name"] for x in meta["links"] if x.get("role") == "client"), None)
    probes = {n: caps[n].probe_first if n in caps else {}
              for n in (client, primary, backup, check["site_link"])}
    out = failover(probes[client], probes[check["site_link"]], probes[primary],
                   probes[backup], down, up, check.get("interval_s"),
                   check.get("within", TARGET_INTERVALS))
    out.update(primary=primary, backup=backup,
               links={n: link_totals(caps[n]) for n in (primary, backup) if n in caps})
    return out


def failover_check(check, f):
    """A scenario's failover check: the traffic left the primary for the backup within
    `within` probe intervals of the link going down, and came back after it came up."""
    out = {"step": check["step"], "at": check["at"], "file": check["file"],
           "line": check["line"]}
    if f is None:
        out.update(ok=False, detail=f"{check['primary']} was never taken down (a link step)")
        return out
    ms = lambda v: "never" if v is None else f"{v:.1f} ms"       # noqa: E731
    back = f["up_at"] is None or f["failback_ms"] is not None
    ok = bool(f["within_target"]) and back and f["before_on_backup"] == 0
    out.update(ok=ok, failover_ms=f["failover_ms"], failback_ms=f["failback_ms"],
               detail=f"failover to {f['backup']} after {ms(f['failover_ms'])} (within "
                      f"{check.get('within', TARGET_INTERVALS):g} probe intervals: "
                      f"{ms(f['target_ms'])}), {f['probes_lost_failover']} probes lost; "
                      f"back to {f['primary']} after {ms(f['failback_ms'])}")
    return out


def report_lines(f):
    """A short report.md section for a failover result."""
    if not f:
        return []
    ms = lambda v: "never" if v is None else f"{v:.1f} ms"       # noqa: E731
    lines = ["", "### Failover", "",
             "| link | probe packets | bytes |", "|---|---|---|"]
    lines += [f"| {n} | {v['packets']:,} | {v['bytes']:,} |" for n, v in f["links"].items()]
    lines += ["", f"- {f['primary']} down: first probe on {f['backup']} after "
                  f"{ms(f['failover_ms'])} (target {ms(f['target_ms'])}: "
                  f"{'met' if f['within_target'] else 'missed'}), "
                  f"{f['probes_lost_failover']} probes lost",
              f"- {f['primary']} up: first probe on it again after {ms(f['failback_ms'])}, "
              f"{f['probes_lost_failback']} probes lost"]
    return lines

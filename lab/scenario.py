"""Playing a scenario: a lab model's timeline on a running network, with its checks.

    result = play(load("topologies/labs/demo-lisp-across-subnet.yaml"), out_dir, progress)

Before the timeline's t=0 the network is made ready, the same way for every lab: captures
on every capture point, the LISP daemons (labs with LISP), an echo server on every host
traffic goes to, each VM announces itself and uses its gateway (as a booting VM does), the
VMs' registrations (with LISP), and a first answer from each traffic destination. Then the
steps run at their times (a step that takes time, such as a cold move, delays the later
ones). Live checks (reachable, registered, map_cache, counter) retry for `window` seconds
(default 3) beside the timeline, without holding it, and fail with one line; path and
convergence checks are read from the captures after the run. The result is the links.json
the analysis reads, with the checks' results.
"""
import ipaddress
import json
import threading
import time

from topologies.model import Step

from .backend import PY, Network
from .emu import wait_for

WINDOW_S = 3.0


class CheckFailed(Exception):
    pass


def _check_line(step, ok, detail):
    return {"step": step.describe(), "at": step.at, "file": step.where[0],
            "line": step.where[1], "ok": ok, "detail": detail}


def _eid(model, host, family=None):
    ip = ipaddress.ip_address(model.hosts[host].addr(family))
    return ip, f"{ip}/{ip.max_prefixlen}"


def _group_check(net, step):
    """(ok, detail) of a live check on a group of hosts: true for every member, all within
    the step's one window."""
    a, model = step.args, net.model
    c, window = a["check"], float(a.get("window", WINDOW_S))
    deadline = time.monotonic() + window
    if c in ("reachable", "unreachable"):
        group, members = a["to"], model.members(a["to"])
        want, wrong = c == "reachable", list(members)
        while True:
            answering = set(wrong) - set(net.not_answering(a["from"], group, 1, a.get("family")))
            wrong = [m for m in wrong if (m in answering) != want]
            if not wrong or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        verb = "reaches" if want else "does not reach"
        if not wrong:
            return True, f"{a['from']} {verb} all {len(members)} hosts of {group}"
        return False, (f"{a['from']} {verb} {len(members) - len(wrong)} of the {len(members)} "
                       f"hosts of {group} within {window:g} s (not: {', '.join(wrong[:5])}"
                       + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "") + ")")
    group = a["eid"]
    failed = []
    for m in model.members(group):
        left = max(0.05, deadline - time.monotonic())
        ok, detail = live_check(net, Step(step.at, step.kind, {**a, "eid": m, "window": left},
                                          step.where))
        if not ok:
            failed.append(detail)
    n = len(model.members(group))
    if not failed:
        return True, f"{group}: all {n} hosts pass ({c})"
    return False, (f"{group}: {len(failed)} of {n} hosts fail ({c}); the first: {failed[0]}")


def live_check(net, step):
    """(ok, detail) of a check that asks the running network."""
    a, model = step.args, net.model
    window = float(a.get("window", WINDOW_S))
    c = a["check"]
    if a.get("eid") in model.groups or (c in ("reachable", "unreachable")
                                        and a["to"] in model.groups):
        return _group_check(net, step)
    if c in ("reachable", "unreachable"):
        want = c == "reachable"
        got = wait_for(lambda: net.ping(a["from"], a["to"], family=a.get("family")) == want,
                       window, 0.1)
        return bool(got), (f"{a['from']} {'reaches' if want else 'does not reach'} {a['to']}"
                           if got else f"{a['from']} {'cannot reach' if want else 'reaches'} "
                                       f"{a['to']} ({net.host_ip(a['to'], a.get('family'))}) "
                                       f"within {window:g} s")
    if c == "registered":
        ip, _ = _eid(model, a["eid"], a.get("family"))
        by = model.rloc(a["by"]) if "by" in a else None
        seen = {}

        def registered():
            for m in model.map_servers:
                try:
                    rows = net.query(m, "registrations")
                except Exception as e:              # noqa: BLE001 (a dead node: retry)
                    seen["error"] = str(e)
                    continue
                # the most specific registered prefix that covers the host's address
                rows = [r for r in rows if r["registrants"]
                        and ip in ipaddress.ip_network(r["eid"])]
                for r in sorted(rows, key=lambda r: -ipaddress.ip_network(r["eid"]).prefixlen):
                    rlocs = [x["address"] for g in r["registrants"] for x in g["rlocs"]]
                    seen[r["eid"]] = rlocs
                    if by is None or (by in rlocs and not (a.get("only") and
                                                           set(rlocs) != {by})):
                        return True
                    break
            return False

        ok = wait_for(registered, window, 0.1)
        only = " only" if a.get("only") else ""
        return bool(ok), (f"{ip} registered" + (f" by {a['by']}{only}" if by else "") if ok else
                          f"{ip} not registered" + (f" by {a['by']}{only} ({by})" if by else "")
                          + f" within {window:g} s; seen: {seen or 'nothing'}")
    if c == "map_cache":
        ip, _ = _eid(model, a["eid"], a.get("family"))
        # the node's preferred RLOC first; with rlocs: all, its whole locator set
        want = model.rlocs(a["rloc"])[0][1] if "rloc" in a else None
        full = ({f"{addr} p{p}/w{w}" for _, addr, p, w in model.rlocs(a["rloc"])}
                if a.get("rlocs") == "all" else None)
        seen = {}

        def cached():
            try:
                rows = net.query(a["node"], "map-cache")
            except Exception as e:                  # noqa: BLE001
                seen["error"] = str(e)
                return False
            for r in rows:
                if not r["negative"] and ip in ipaddress.ip_network(r["eid"]):
                    rlocs = [x["address"] for x in r["rlocs"]]
                    got = {f"{x['address']} p{x['priority']}/w{x['weight']}" for x in r["rlocs"]}
                    seen[r["eid"]] = sorted(got) if full else rlocs
                    if (want is None or (rlocs and rlocs[0] == want) or want in rlocs[:1]) \
                            and (full is None or got == full):
                        return True
            return False

        ok = wait_for(cached, window, 0.1)
        return bool(ok), (f"{a['node']} maps {ip}" + (f" to {a['rloc']}" if want else "")
                          + (f" ({', '.join(sorted(full))})" if full else "")
                          if ok else f"{a['node']}'s map-cache has no entry for {ip}"
                          + (f" toward {a['rloc']} ({want})" if want else "")
                          + (f" with {', '.join(sorted(full))}" if full else "")
                          + f" within {window:g} s; seen: {seen or 'nothing'}")
    if c == "counter":
        counters = net.query(a["node"], "counters")
        value = counters.get(a["name"], 0)
        lo, hi = a.get("min"), a.get("max")
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
        return ok, f"{a['node']} {a['name']} = {value} (wanted {lo}..{hi})"
    raise ValueError(c)


def _run_step(net, step, state):
    a, model = step.args, net.model
    kind = step.kind
    if kind == "traffic":
        t = a["traffic"]
        name = step.flow_name()
        dsts = [net.host_ip(m, a.get("family")) for m in model.members(a["to"])]
        dst, duration = dsts[0], str(a.get("duration", 10))
        out = net.out_dir / f"{name}.json"
        if t == "probes":                    # to a group: round robin over its members
            argv = [PY, "-m", "lab.traffic", "probe", *(x for d in dsts for x in ("--dst", d)),
                    "--rate", str(a.get("rate", 100)), "--duration", duration, "--out", out]
        elif t == "tcp":
            argv = [PY, "-m", "lab.traffic", "tcp", "--dst", dst, "--duration", duration,
                    "--out", out]
        elif t == "flows":
            argv = [PY, "-m", "lab.flows", "--dst", dst, "--flows", str(a.get("flows", 1000)),
                    "--packets", str(a.get("packets", 3)), "--rate",
                    str(a.get("rate", 2000)), "--first-sport",
                    str(a.get("first_sport", 20000)), "--out", out]
            if state.get("flows_meta") is None:
                state["flows_meta"] = {"from": net.host_ip(a["from"], a.get("family")),
                                       "to": dst, "flows": int(a.get("flows", 1000))}
        else:
            argv = ["iperf3", "-c", dst, "-t", duration, "-J", "--logfile", out] + (
                ["-b", str(a["bandwidth"])] if "bandwidth" in a else [])
        state["flows"][name] = net.lab.start_process(a["from"], argv,
                                                     net.out_dir / f"{name}.log", name=name)
        if t == "probes" and state.get("probe") is None and a["to"] not in model.groups:
            state["probe"] = (a["from"], a["to"])
            state["probe_family"] = a.get("family")
    elif kind == "move":
        cold = float(state.get("cold_override", a.get("cold", 0)) or 0)
        net.progress(f"moving {a['move']} to {a['to']}" + (f" (cold, {cold:g} s down)"
                                                            if cold else ""))
        t0 = time.time()
        took = dict(net.move(a["move"], a["to"], cold) or {})
        state["moves"].append({"host": a["move"], "to": a["to"], "time": took.pop("time", t0),
                               "done": time.time(), "cold_s": cold, **took})
        if a["move"] in model.groups:
            net.progress(f"{len(model.members(a['move']))} ports re-attached in "
                         f"{took.get('reattach_ms')} ms, announced in {took.get('announce_ms')} ms")
    elif kind == "host_route":
        routes = net.inject_host_route(a["host_route"])
        move_t = state["moves"][-1]["time"] if state["moves"] else routes["injected_at"]
        routes["on_r1_ms"] = round((routes["on_r1_at"] - move_t) * 1000.0, 1)
        state["host_routes"].append(routes)
        net.progress(f"host route {routes['prefix']} on {model.routers[0]} (OSPF) "
                     f"{routes['on_r1_ms']} ms after the move")
    elif kind == "link":
        state.setdefault("link_events", []).append(
            {"link": a["link"], "state": a["state"], "time": time.time()})
        net.set_link(a["link"], a["state"] == "up")
    elif kind == "daemon":
        if a["action"] == "start":
            net.start_daemon(a["daemon"])
        else:
            net.stop_daemon(a["daemon"], kill=a["action"] == "kill")
    elif kind == "stop":
        proc = state["flows"][a["stop"]]
        if proc.alive:      # SIGTERM: probes and TCP sessions write their results first
            proc.stop(timeout=5)
    elif kind == "capture":
        (net.start_captures if a["capture"] == "start" else net.stop_captures)()
    elif kind == "check":
        if a["check"] in ("path", "convergence", "split", "failover", "converged"):  # captures
            state["deferred"].append((step, state["nominal"]))
        else:
            # A live check retries for its window beside the timeline, never holding it.
            def run():
                try:
                    ok, detail = live_check(net, step)
                except Exception as e:               # noqa: BLE001 (a result, not a crash)
                    ok, detail = False, f"the check could not run: {e}"
                state["checks"].append(_check_line(step, ok, detail))
                net.progress(f"check {'ok' if ok else 'FAILED'}: {detail}")
            t = threading.Thread(target=run, name=f"check-{step.where[1]}", daemon=True)
            t.start()
            state["threads"].append(t)
    # "wait" does nothing but hold the timeline until its time


def prepare(net, captures=True, echo_hosts=None, warm=True):
    """Make the network ready for t=0 (see the module's docstring). `captures`: start them;
    `echo_hosts`: the hosts given an echo server (default: the timeline's traffic
    destinations); `warm`: wait for a first answer on each traffic pair."""
    model = net.model
    if captures:
        net.start_captures()
    net.start_daemons()
    if echo_hosts is None:
        echo_hosts = sorted({m for s in model.timeline if s.kind == "traffic"
                             for m in model.members(s.args["to"])})
    for host in echo_hosts:
        net.lab.start_process(host, [PY, "-m", "lab.traffic", "echo"],
                              net.out_dir / f"echo-{host}.log", name=f"echo-{host}")
    in_groups = {m for members in model.groups.values() for m in members}
    net.announce_all([vm.name for vm in model.vms() if vm.name in in_groups])
    for vm in model.vms():
        if vm.name not in in_groups:
            net.announce(vm.name)
        net.gateway_ping(vm.name)
    if model.lisp:
        for vm in model.vms():
            gw = model.sites[vm.site].gateway
            ok = wait_for(lambda: registrants(net, host_eid(vm)), 10, 0.1)
            net.progress(f"{vm.name} ({host_eid(vm)}) registered by {gw}" if ok else
                         f"{vm.name} NOT registered (see {net.out_dir / (gw + '.log')})")
        # the sites' own prefixes too: a Map-Request sent before they are registered
        # would get a negative Map-Reply, cached for a minute
        for site in model.lisp_sites():
            for p in site.eid_prefixes:
                if not wait_for(lambda: registrants(net, str(p)), 10, 0.1):
                    net.progress(f"{p} NOT registered (see {net.out_dir}/{site.gateway}.log)")
    if not warm:
        return
    pairs = sorted({(s.args["from"], s.args["to"], s.args.get("family") or 0)
                    for s in model.timeline if s.kind == "traffic"})
    for src, dst, fam in pairs:              # warm the path: start from a working state
        wait_for(lambda: net.ping(src, dst, family=fam or None), 10)


def host_eid(host):
    """A host's EID as the Map-Server lists it: its IPv4 /32, else its IPv6 /128."""
    ip4 = host.ip(4)
    return f"{ip4}/32" if ip4 else f"{host.ip(6)}/128"


def registrants(net, eid):
    """The RLOCs that registered `eid` (a prefix string, as the Map-Server lists it) at any
    Map-Server of the lab; empty while none did."""
    out = []
    for ms in net.model.map_servers:
        try:
            rows = net.query(ms, "registrations")
        except Exception:               # noqa: BLE001 (not up yet, or stopped)
            continue
        out += [x["address"] for r in rows if r["eid"] == eid
                for g in r["registrants"] for x in g["rlocs"]]
    return out


def play(model, out_dir, progress=None, run_id=None, cold_s=None, delays=True):
    """Build `model`'s network, play its timeline, stop; returns the links.json dict (also
    written to out_dir/links.json) with "checks" (live ones; the analysis adds the rest)."""
    progress = progress or (lambda text: None)
    state = {"flows": {}, "moves": [], "host_routes": [], "checks": [], "deferred": [],
             "threads": []}
    if cold_s:
        state["cold_override"] = cold_s
    with Network(model, out_dir, run_id=run_id, progress=progress, delays=delays) as net:
        prepare(net)
        progress(f"{model.name}: ready; playing {len(model.timeline)} steps")
        t0 = time.monotonic()
        shift = 0.0                          # time taken by steps that take time
        start_wall = time.time()
        for step in model.timeline:
            delay = t0 + step.at + shift - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # a late step (a live check before it took its window) still counts from when
            # it was due: a path check looks at the probes before its own time
            state["nominal"] = start_wall + step.at + shift
            _run_step(net, step, state)
            if step.kind == "move":              # a cold move holds the later steps
                shift += float(state["moves"][-1]["cold_s"])
        for t in state["threads"]:
            t.join()
        state["checks"].sort(key=lambda c: (c["at"], c["line"]))
        for p in state["flows"].values():
            try:
                p.wait(30)
            except Exception:                # noqa: BLE001 (stopped with the Lab)
                pass
        net.stop_captures()
        from .delay import delay_emulation
        meta = links_json(net, state, start_wall)
        meta["delay_emulation"] = delay_emulation(net.lab)
    (out_dir / "links.json").write_text(json.dumps(meta, indent=1))
    return meta


def links_json(net, state, start_wall):
    """What the analysis needs: links with roles, the probe flow's ends, the moves, the
    expected paths and the checks."""
    model = net.model
    src, dst = state.get("probe") or (None, None)
    first = next((m for m in state["moves"] if m["host"] == dst), None) \
        if dst else None
    roles = {}
    if src:
        roles[model.sites[model.hosts[src].site].access_link()] = "client"
    if model.dci is not None:
        roles["dci"] = "dci"
    origin = model.hosts[dst].site if dst else None
    if first:
        roles[model.sites[origin].access_link()] = "vm-origin"
        roles[model.sites[first["to"]].access_link()] = "vm-target"
    host_route = bool(state["host_routes"])
    meta = {"mode": model.name, "scenario": model.file,
            "links": [{"name": n, "role": roles.get(n, "core"),
                       "capture_drops": net.capture_drops(n)} for n in model.captures()],
            "client": net.host_ip(src, state.get("probe_family")) if src else None,
            "vm": net.host_ip(dst, state.get("probe_family")) if dst else None,
            "timeline_start": start_wall,
            "move_time": first["time"] if first else start_wall,   # no move: t=0
            "move_done": first["done"] if first else None,
            "moves": state["moves"],
            "expected_path_before": (model.expected_path(src, dst, origin)
                                     if src else None),
            "expected_path_after": (model.expected_path(src, dst, first["to"], host_route)
                                    if first else None),
            "core_routes": state["host_routes"][0] if state["host_routes"] else None,
            "core_routing": model.routing,
            "neighbours": "permanent on point-to-point links (warm paths)",
            "flows": state.get("flows_meta"),
            "link_events": state.get("link_events", []),    # link steps: when, up or down
            "checks": state["checks"],
            "deferred_checks": [_deferred(model, s, wall, state["moves"])
                                for s, wall in state["deferred"]],
            "topology": model.topology()}          # for report.html's picture
    if first:
        meta["move"] = (f"cold ({first['cold_s']:g} s down)" if first["cold_s"] else "live")
        meta["budget"] = budget_meta(model, src, origin, first["to"])
    return meta


def budget_meta(model, src, origin, target):
    """What the analysis needs for a move's convergence budget: the nodes whose messages
    make it (the new and the old site's xTRs, the client's ITR, the Map-Server) with their
    RLOCs, and the propagation floors from the lab's link delays. None without LISP on
    all three sites."""
    if not model.lisp or not model.map_servers:
        return None
    sites = [model.sites[model.hosts[src].site], model.sites[origin], model.sites[target]]
    if not all(s.lisp for s in sites):
        return None
    itr, old, new = (s.gateway for s in sites)
    ms = model.map_servers[0]
    floor = model.convergence_floor(new, old, itr, ms)
    return {"nodes": {role: {"node": n, "rloc": model.rloc(n),
                             "link": model.uplinks(n)[0].name} for role, n in
                      (("new_xtr", new), ("old_xtr", old), ("itr", itr), ("map_server", ms))},
            "floor_ms": floor, "pubsub": bool(model.pubsub)}


def _deferred(model, step, wall, moves=()):
    """A path or convergence check for the analysis: with its expected path (the model's,
    for where the host is at that time), and the wall-clock time it was due. `moves`: the
    moves the run made (a converged check measures from the last one of its host)."""
    a = step.args
    out = {"check": a["check"], "at": step.at, "time": wall, "file": step.where[0],
           "line": step.where[1], "step": step.describe(),
           "window": float(a.get("window", 1.0))}
    if a["check"] == "path":
        fam = a.get("family")
        out.update({"from": model.hosts[a["from"]].addr(fam),
                    "to": model.hosts[a["to"]].addr(fam)})
        if a.get("path", "expected") == "expected":
            host_route = any(s.kind == "host_route" and s.args["host_route"] == a["to"]
                             and s.at <= step.at for s in model.timeline)
            out["expect"] = model.expected_path(a["from"], a["to"],
                                                model.host_site_at(a["to"], step.at + 1e-9),
                                                host_route, model.links_down_at(step.at))
        else:
            out["expect"] = list(a["path"])
    elif a["check"] == "failover":
        site = model.uplink_site(a["primary"])
        out.update(primary=a["primary"], backup=a["backup"], site_link=site.access_link(),
                   interval_s=model.rloc_probing, within=float(a.get("within", 3)))
    elif a["check"] == "converged":
        fam, group = a.get("family"), a["eid"]
        members = model.members(group)
        # the probe flow to the group (or to the host) tells whose ITR to watch
        flow = next((s for s in model.timeline if s.kind == "traffic"
                     and s.args["traffic"] == "probes" and s.args["to"] == group), None)
        client = flow.args["from"] if flow else None
        itr = model.sites[model.hosts[client].site].gateway if client else None
        new = model.sites[model.host_site_at(members[0], step.at + 1e-9)].gateway
        moved = [m for m in moves if m["host"] in (group, *members) and m["time"] <= wall]
        out.update(group=group, below_ms=float(a["below_ms"]),
                   members={model.hosts[m].addr(fam): m for m in members},
                   link=model.uplinks(itr)[0].name if itr else None,
                   rloc=model.rloc(new), move_time=moved[-1]["time"] if moved else None,
                   resolution_ms=(round(1000.0 * len(members) / float(flow.args.get(
                       "rate", 100)), 1) if flow else None))
    elif a["check"] == "split":
        out.update(links=list(a["links"]), weights=[float(w) for w in a["weights"]],
                   tolerance=float(a.get("tolerance", 5)))
    else:
        out["below_ms"] = float(a["below_ms"])
    return out

"""captures/failover.py on synthetic probe lists: the failover and failback times, the
probes lost, and where the probes went in each phase."""
from captures.failover import failover, report_lines

RATE = 1000                          # probes per second, one key per probe


def run(down=3.0, up=6.0, detect=1.2, back=0.4, lost_after_back=0):
    """Probes for 10 s: on the primary until `down`, lost for `detect` s, then on the
    backup until `back` s after `up`, then on the primary again (the first
    `lost_after_back` of those lost)."""
    sent, delivered, primary, backup = {}, {}, {}, {}
    for k in range(10 * RATE):
        t = k / RATE
        sent[k] = t
        if t < down:
            primary[k] = t + 0.01
        elif t < down + detect:
            primary[k] = t + 0.01      # seen on the primary's capture, never delivered
            continue
        elif t < up + back:
            backup[k] = t + 0.01
        else:
            primary[k] = t + 0.01
            if k - int((up + back) * RATE) < lost_after_back:
                continue
        delivered[k] = t + 0.03
    return sent, delivered, primary, backup


def test_failover_and_failback_times_and_losses():
    f = failover(*run(), down_at=3.0, up_at=6.0, interval_s=0.5)
    assert abs(f["failover_ms"] - 1210.0) < 1.5
    assert f["probes_lost_failover"] == 1200
    assert abs(f["failback_ms"] - 410.0) < 1.5
    assert f["probes_lost_failback"] == 0
    assert f["target_ms"] == 1500.0 and f["within_target"] is True
    assert (f["before_on_primary"], f["before_on_backup"]) == (3000, 0)
    assert f["during_on_primary"] == 0 and f["during_on_backup"] > 0
    assert f["after_on_backup"] == 0 and f["after_on_primary"] == 3600


def test_a_slow_failover_misses_the_target_and_loss_is_counted():
    f = failover(*run(detect=2.0, lost_after_back=7), down_at=3.0, up_at=6.0,
                 interval_s=0.5)
    assert f["within_target"] is False and f["probes_lost_failover"] == 2000
    assert f["probes_lost_failback"] == 0      # lost after the first probe back: not counted
    assert any("missed" in line for line in report_lines(
        dict(f, primary="provider-a", backup="provider-b",
             links={"provider-a": {"packets": 1, "bytes": 2}})))


def test_no_failover_and_no_return_are_none():
    sent, delivered, primary, backup = run()
    f = failover(sent, {}, {k: t for k, t in primary.items()}, {}, down_at=3.0, up_at=None,
                 interval_s=0.5)
    assert f["failover_ms"] is None and f["within_target"] is None
    assert f["failback_ms"] is None
    assert f["probes_lost_failover"] == 7000          # everything from the failure on


def test_the_failover_plot_is_drawn(tmp_path):
    from captures.plots import plot_failover
    f = dict(failover(*run(), down_at=3.0, up_at=6.0, interval_s=0.5),
             primary="provider-a", backup="provider-b", down_s=3.0, up_s=6.0)
    t = [i / 10 for i in range(100)]
    result = {"failover": f, "per_link_rate": {"t_s": t, "pps": {
        "provider-a": [1000 if x < 3 or x >= 6.4 else 0 for x in t],
        "provider-b": [1000 if 4.2 <= x < 6.4 else 0 for x in t]}}}
    png = plot_failover(result, "te-priority", tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

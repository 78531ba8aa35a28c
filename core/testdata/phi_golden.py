#!/usr/bin/env python3
"""Golden values for conclave's Phi Accrual detector (core/src/detector.rs, `golden_phi`).

Computed independently of the Rust code: the window is a plain list (no running sums),
mean and standard deviation come from Python's `statistics` module (population standard
deviation, `pstdev`, as Akka's HeartbeatHistory), and phi is Akka's logistic approximation
of the normal tail (PhiAccrualFailureDetector.phi):

    y   = (elapsed - (mean + acceptable_pause)) / max(pstdev, min_std_dev)
    e   = exp(-y * (1.5976 + 0.070566 * y**2))
    phi = -log10(e / (1 + e))          if elapsed > mean + acceptable_pause
          -log10(1 - 1 / (1 + e))      otherwise

The window starts as Akka's: two samples, estimate - estimate/4 and estimate + estimate/4
(mean = estimate, pstdev = estimate/4), and keeps the last `max_sample_size` intervals;
as Akka, an interval that ends after phi reached the threshold is not recorded.

Run `python3 core/testdata/phi_golden.py` and paste its output into `GOLDEN`.
All times are in milliseconds.
"""
import math
import statistics

AKKA = dict(threshold=8.0, max_sample_size=1000, min_std_dev=100.0, acceptable_pause=3000.0, estimate=1000.0)


def window(params, heartbeats):
    """The window after `heartbeats`. As Akka's `heartbeat`, an interval that ends while
    the peer is already late (phi at or above the threshold) is not recorded."""
    est = params["estimate"]
    w = [est - est / 4, est + est / 4][-params["max_sample_size"]:]
    for prev, cur in zip(heartbeats, heartbeats[1:]):
        mean = statistics.mean(w) + params["acceptable_pause"]
        sd = max(statistics.pstdev(w), params["min_std_dev"])
        if phi(cur - prev, mean, sd) < params["threshold"]:
            w.append(cur - prev)
            w = w[-params["max_sample_size"]:]
    return w


def phi(elapsed, mean, sd):
    y = (elapsed - mean) / sd
    try:
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
    except OverflowError:  # far before the mean: IEEE-754 (and Rust) give +inf
        e = math.inf
    if elapsed > mean:
        return -math.log10(e / (1.0 + e))
    return -math.log10(1.0 - 1.0 / (1.0 + e))


CASES = [
    # (name, parameter overrides, heartbeat times, query times)
    ("seed window only, Akka defaults", {}, [0], [0, 1000, 4000, 4250, 4500, 5000, 6000]),
    ("seed window only, no pause", dict(acceptable_pause=0.0), [0], [500, 1000, 1250, 1500, 2000, 2500]),
    ("seed window only, 2 s estimate", dict(acceptable_pause=0.0, estimate=2000.0), [5000], [6000, 7000, 8000, 9000]),
    ("regular 1 s, 10 samples, no pause (seeds keep the std-dev above the floor)", dict(acceptable_pause=0.0),
     list(range(0, 10001, 1000)), [10500, 11000, 11100, 11200, 11300]),
    ("regular 1 s, 20 samples, Akka defaults (floor active)", {}, list(range(0, 20001, 1000)),
     [20000, 21000, 24000, 24100, 24200, 24500]),
    ("regular 1 s, 20 samples, no pause (floor active)", dict(acceptable_pause=0.0), list(range(0, 20001, 1000)),
     [20500, 21000, 21100, 21200, 21300]),
    ("jittered, no pause (floor inactive)", dict(acceptable_pause=0.0), [0, 1100, 1900, 3200, 3800, 5000, 6300],
     [6800, 7300, 7600, 8000, 8500]),
    ("jittered, Akka defaults (floor inactive)", {}, [0, 1100, 1900, 3200, 3800, 5000, 6300],
     [9300, 10000, 11000]),
    ("small jitter, window 4, no pause (floor active)", dict(acceptable_pause=0.0, max_sample_size=4),
     [0, 1000, 2010, 2990, 4000, 5005], [5900, 6005, 6100, 6200, 6300]),
    ("small jitter, window 4, no pause, 1 ms floor (floor inactive)",
     dict(acceptable_pause=0.0, max_sample_size=4, min_std_dev=1.0),
     [0, 1000, 2010, 2990, 4000, 5005], [6000, 6010, 6020, 6030]),
    ("window 3 wrapped past the seeds, no pause", dict(acceptable_pause=0.0, max_sample_size=3),
     [0, 500, 1000, 2000, 4000], [4500, 5000, 6000, 7000, 8000]),
    ("window 3 wrapped past the seeds, 1 s pause", dict(acceptable_pause=1000.0, max_sample_size=3),
     [0, 500, 1000, 2000, 4000], [6000, 7000, 8000, 9000]),
]


def ms(x):
    return int(x) if float(x).is_integer() else x


def main():
    for name, overrides, heartbeats, queries in CASES:
        params = dict(AKKA, **overrides)
        w = window(params, heartbeats)
        mean = statistics.mean(w)
        sd = statistics.pstdev(w)
        eff_sd = max(sd, params["min_std_dev"])
        pause = params["acceptable_pause"]
        print("    Case {")
        print(f'        name: "{name}",')
        print(f"        max_sample_size: {params['max_sample_size']},")
        print(f"        min_std_dev_ms: {ms(params['min_std_dev'])},")
        print(f"        acceptable_pause_ms: {ms(pause)},")
        print(f"        estimate_ms: {ms(params['estimate'])},")
        print(f"        heartbeats_ms: &{heartbeats},")
        print(f"        // window {[ms(x) for x in w]}")
        print(f"        // mean = {mean!r}, pstdev = {sd!r}, std-dev used = {eff_sd!r}")
        print("        expected: &[")
        for q in queries:
            elapsed = q - heartbeats[-1]
            value = phi(elapsed, mean + pause, eff_sd)
            print(f"            ({q}, {value!r}), // phi({elapsed}, {mean!r} + {ms(pause)}, {eff_sd!r})")
        print("        ],")
        print("    },")


if __name__ == "__main__":
    main()

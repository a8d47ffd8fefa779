#!/usr/bin/env python3
"""Merges the area results of one bench/run.sh invocation into one file and renders a table.

    bench/merge.py --mode quick|full --run-dir DIR --json OUT.json --md OUT.md

DIR holds what run.sh wrote during this invocation: `areas/<area>.json` (one per area script
that finished, pinned shape {"commit","machine","figures":[…]}), `steps.jsonl` (one line per
step: area, title, status, exit code, seconds, log) and `run.json` (start time, durations,
settings of the mode). Only files written after the run started are read, so a PASS or FAIL
here always comes from a measurement of this run, never from a stored number.

The output keeps the pinned shape: top-level "commit", "machine" (cores, memory, PostgreSQL
version) and "figures" (each {"name","value","unit","baseline","ratio","target","pass"}, plus
an optional "note" saying how it was measured); the area is the prefix of the figure's name.
Around them: "mode", "started_at", "seconds", "steps", "failed_steps" and "not_measured".
"""

import argparse
import json
import os
import platform
import subprocess
import sys

FIGURE_KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "pass")
# Times and memory have upper-bound targets; every other target is a lower bound (on the ratio
# when there is a baseline). bench/lib.sh's figure() applies the same rule when it sets "pass".
UPPER_BOUND_UNITS = ("ms", "s", "MiB")

# Wanted by the benchmark issue, not implemented in this version: listed, never faked.
NOT_MEASURED = []


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def meminfo_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt_number(value, unit=""):
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    a = abs(value)
    if isinstance(value, int):
        text = f"{value:,}"
    elif a >= 1000:
        text = f"{value:,.0f}"
    elif a >= 100:
        text = f"{value:.1f}"
    elif a >= 10:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}" if a >= 0.001 or a == 0 else f"{value:.2e}"
    if unit == "ratio":  # a ratio needs no unit after it
        unit = ""
    return f"{text} {unit}".strip()


def fmt_target(fig):
    target = fig.get("target")
    if target is None:
        return "— (reported)"
    if fig.get("unit") in UPPER_BOUND_UNITS:
        return f"< {fmt_number(target, fig['unit'])}"
    if fig.get("baseline") is not None or fig.get("ratio") is not None:
        return f"≥ {fmt_number(target)} ×"
    return f"≥ {fmt_number(target)}"


def fmt_result(fig):
    if fig.get("pass") is None:
        return "—"
    return "**PASS**" if fig["pass"] else "**FAIL**"


def md_escape(text):
    return str(text).replace("|", "\\|")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True, choices=["quick", "full"])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--md", required=True)
    args = parser.parse_args()

    run = json.load(open(os.path.join(args.run_dir, "run.json")))
    started = run["started_epoch"]
    steps = read_jsonl(os.path.join(args.run_dir, "steps.jsonl"))

    machine = {
        "cores": os.cpu_count(),
        "memory_mib": meminfo_mib(),
        "postgresql": None,
        "kernel": platform.release(),
        "load_average_at_start": run.get("load_average_at_start"),
    }
    figures, failed, step_rows = [], [], []
    for step in steps:
        area = step["area"]
        status = step["status"]
        path = os.path.join(args.run_dir, "areas", f"{area}.json")
        if status == "ok":
            problem = None
            if not os.path.exists(path):
                problem = "finished without writing its results"
            elif os.path.getmtime(path) < started:
                problem = "its results file predates this run"
            if problem:
                status = "failed"
                step["error"] = problem
            else:
                result = json.load(open(path))
                for fig in result.get("figures", []):
                    missing = [k for k in FIGURE_KEYS if k not in fig]
                    if missing:
                        raise SystemExit(f"{path}: figure {fig.get('name')!r} lacks {missing}")
                    merged = {k: fig[k] for k in FIGURE_KEYS}
                    merged["name"] = f"{area}: {fig['name']}"
                    if fig.get("note"):
                        merged["note"] = fig["note"]
                    figures.append(merged)
                m = result.get("machine", {})
                if m.get("postgresql") and not machine["postgresql"]:
                    machine["postgresql"] = m["postgresql"]
                for key, value in m.items():
                    if key not in ("cores", "memory_mib", "postgresql", "cpus"):
                        machine.setdefault(key, value)
        step["status"] = status
        if status != "ok":
            failed.append({k: step.get(k) for k in ("area", "status", "exit_code", "seconds", "log", "error")})
        step_rows.append(step)

    out = {
        "commit": commit(),
        "machine": machine,
        "mode": args.mode,
        "started_at": run["started_at"],
        "seconds": run.get("seconds"),
        "settings": run.get("settings"),
        "steps": [{k: s.get(k) for k in ("area", "title", "status", "exit_code", "seconds")} for s in step_rows],
        "failed_steps": failed,
        "not_measured": NOT_MEASURED,
        "figures": figures,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")

    # ---- markdown ----
    judged = [f for f in figures if f["pass"] is not None]
    passed = sum(1 for f in judged if f["pass"])
    lines = [
        f"# Palisade benchmarks — {args.mode} mode",
        "",
        f"Commit `{out['commit']}`, started {run['started_at']}, {fmt_number(run.get('seconds'), 's')} in all "
        f"(build excluded: {fmt_number(run.get('build_seconds'), 's')}). Machine: {machine['cores']} cores, "
        f"{fmt_number(machine['memory_mib'], 'MiB')} memory, PostgreSQL {machine['postgresql'] or 'unknown'}, "
        f"load average at start {machine['load_average_at_start']}. Loopback only.",
        "",
    ]
    if args.mode == "quick":
        lines += [
            "**Quick mode**: " + run.get("settings", {}).get("summary", "") + " Indicative only, for "
            "development; the figures of record come from `make bench`.",
            "",
        ]
    else:
        lines += ["Full mode: " + run.get("settings", {}).get("summary", ""), ""]
    lines += [
        f"{len(judged)} figures with a target: {passed} PASS, {len(judged) - passed} FAIL; "
        f"{len(figures) - len(judged)} reported only. Every baseline was measured in this run on this "
        "machine; targets are lower bounds on the ratio (or value) except for times and memory "
        "(ms, s, MiB), which are upper bounds.",
        "",
    ]
    if failed:
        lines += ["## Steps that did not complete", ""]
        for s in failed:
            why = s.get("error") or {"failed": f"exit code {s.get('exit_code')}", "timeout": "killed at its time limit",
                                      "skipped": "the suite's time budget was spent"}.get(s["status"], s["status"])
            lines.append(f"- **{s['area']}**: {s['status']} ({why}) after {fmt_number(s.get('seconds'), 's')}; "
                         f"log: `{s.get('log')}`. Its figures are missing below.")
        lines.append("")
    by_area = {}
    for fig in figures:
        area, name = fig["name"].split(": ", 1)
        by_area.setdefault(area, []).append((name, fig))
    for step in step_rows:
        area = step["area"]
        if area not in by_area:
            continue
        lines += [f"## {area} — {step.get('title', '')} ({fmt_number(step.get('seconds'), 's')})", "",
                  "| figure | value | baseline (same run) | ratio | target | result | how |",
                  "|---|---|---|---|---|---|---|"]
        for name, fig in by_area[area]:
            lines.append("| " + " | ".join(md_escape(x) for x in (
                name,
                fmt_number(fig["value"], fig["unit"]),
                fmt_number(fig["baseline"]) if fig["baseline"] is not None else "—",
                fmt_number(fig["ratio"]) if fig["ratio"] is not None else "—",
                fmt_target(fig),
                fmt_result(fig),
                fig.get("note", ""),
            )) + " |")
        lines.append("")
    if NOT_MEASURED:
        lines += ["## Not yet measured", ""] + [f"- {item}" for item in NOT_MEASURED] + [""]
    with open(args.md, "w") as f:
        f.write("\n".join(lines))
    print(f"{len(figures)} figures from {len(steps) - len(failed)}/{len(steps)} steps "
          f"({passed} PASS, {len(judged) - passed} FAIL, {len(figures) - len(judged)} reported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the bench prints: a table of runs, notes, and the ratios against their targets."""
from pathlib import Path

CHECKS = {">=": lambda value, target: value >= target,
          "<=": lambda value, target: value <= target,
          "<": lambda value, target: value < target}


def print_figures(plan, figures, list_path):
    """Everything one run measured, then the ratios against the targets of issue 5."""
    gunicorn, my_pets = figures["gunicorn"], figures["my_pets"]
    bound = figures["at_once"] / figures["bcrypt_seconds"]
    few, many = f"{plan.few_pets:,} pets", f"{plan.many_pets:,} pets"
    heading(
        f"jwt-server bench{' --smoke: checks the harness only (tiny data, short runs)' if plan.smoke else ''}",
        f"machine: {figures['cores']} cores, {cpu_model()}, load average {figures['load_average']:.2f} at the start",
        f"server: gunicorn -c gunicorn.conf.py, {gunicorn['worker_class']}, {gunicorn['workers']} workers x "
        f"{gunicorn['threads']} threads; wrk runs of {plan.seconds} s, best of {plan.rounds} alternating rounds",
    )
    runs([
        ("Koa server (node 20), GET /my-pets", figures["koa"]),
        ("bare Flask, GET /my-pets (the ceiling)", figures["ceiling"]),
        ("service, GET /my-pets", my_pets),
        (f"service, POST /auth (BCRYPT_ROUNDS {figures['bcrypt_cost']})", figures["logins"]),
        ("Koa server, POST /auth (bcryptjs, same hash)", figures["koa_logins"]),
        (f"service, GET {list_path}, {few}", figures["few"]),
        (f"service, GET {list_path}, {many}", figures["many"]),
    ])
    notes(
        f"bcrypt at cost {figures['bcrypt_cost']}: one check {figures['bcrypt_seconds'] * 1000:.1f} ms"
        f" (median of {figures['bcrypt_checks']}, timed around the logins)",
        f"  bound: min({figures['cores']} cores, {gunicorn['workers']} workers x {gunicorn['threads']} threads)"
        f" = {figures['at_once']} at once / {figures['bcrypt_seconds']:.4f} s = {bound:.2f} logins/s",
        f"  {figures['at_once']} checks at once in one process, no server: {figures['bcrypt_parallel']:.2f}/s"
        f" ({figures['bcrypt_parallel'] / bound:.2f} of the bound)",
        f"memory per worker after the load, MiB, resident (RSS): service {sizes(figures['service_rss'])};"
        f" bare Flask {sizes(figures['bare_rss'])}; Koa server {sizes(figures['koa_rss'])}",
        f"  proportional (PSS, pages shared with the master and the other workers divided among them):"
        f" service {sizes(figures['service_pss'])}; bare Flask {sizes(figures['bare_pss'])};"
        f" Koa server {sizes(figures['koa_pss'])}",
        f"{many} generated in {figures['generate_seconds']:.1f} s; whole bench {figures['elapsed']:.0f} s",
    )
    targets(
        [
            ("GET /my-pets req/s / Koa server's", my_pets["rps"] / figures["koa"]["rps"], ">=", 1.0),
            ("GET /my-pets req/s / bare-Flask ceiling", my_pets["rps"] / figures["ceiling"]["rps"], ">=", 0.90),
            ("POST /auth logins/s / bcrypt bound", figures["logins"]["rps"] / bound, ">=", 0.90),
            ("GET /my-pets p99 / p50", my_pets["p99"] / my_pets["p50"], "<=", 3.0),
            ("proportional MiB per worker (PSS, largest)", max(figures["service_pss"]), "<", 40.0),
            (f"GET {list_path} p50, {many} / {few}", figures["many"]["p50"] / figures["few"]["p50"], "<=", 1.2),
        ],
        judge=not plan.smoke,
    )
    if "stack" in figures:
        stack(figures["stack"])


def stack(rows):
    """``rows``: ``(name, its run, the Koa server's run beside it, worker RSS MiB, worker PSS MiB)``."""
    print("other ways to serve, GET /my-pets: each warmed up, then alternated with the Koa server")
    table(
        ["server", "req/s", "p50 ms", "p99 ms", "Koa req/s", "/ Koa", "RSS MiB", "PSS MiB"],
        [(name, f"{run['rps']:.1f}", f"{run['p50']:.2f}", f"{run['p99']:.2f}", f"{koa['rps']:.1f}",
          f"{run['rps'] / koa['rps']:.2f}", f"{max(rss):.1f}", f"{max(pss):.1f}")
         for name, run, koa, rss, pss in rows],
    )


def heading(*lines):
    print("\n".join(lines), end="\n\n")


def runs(rows):
    """``rows``: ``(name, figures of one wrk run)``."""
    table(
        ["measurement", "conns", "req/s", "p50 ms", "p99 ms", "sock err"],
        [(name, run["connections"], f"{run['rps']:.1f}", f"{run['p50']:.2f}", f"{run['p99']:.2f}",
          run["socket_errors"]) for name, run in rows],
    )


def notes(*lines):
    print("\n".join(lines), end="\n\n")


def targets(rows, judge):
    """``rows``: ``(name, value, comparison, target)``; without ``judge`` none is met or missed."""
    table(
        ["ratio", "value", "target", "met"],
        [(name, f"{value:.2f}", f"{sign} {target:g}",
          ("yes" if CHECKS[sign](value, target) else "NO") if judge else "(smoke)")
         for name, value, sign, target in rows],
    )


def table(header, rows):
    rows = [header] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        print("  ".join(cells).rstrip())
    print()


def sizes(megabytes):
    listed = ", ".join(f"{size:.1f}" for size in sorted(megabytes))
    return f"largest {max(megabytes):.1f} of {len(megabytes)} ({listed})"


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown CPU"

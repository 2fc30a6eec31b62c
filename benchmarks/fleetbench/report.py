"""The benchmark's outputs: the table (phase x path), extrapolation of skipped naive runs, targets, JSON, SVG."""

import json
import math
import os
from xml.sax.saxutils import escape

PATH_ORDER = ("naive", "fleet", "product", "floor")
PHASE_ORDER = ("provision", "noop", "credentials", "credentials-noop")
COLORS = {"naive": "#c0392b", "fleet": "#1f6fb4", "product": "#8e44ad", "floor": "#2e8b57"}
DASHES = {"provision": "", "noop": "7,4", "credentials": "2,3", "credentials-noop": "10,3,2,3"}


def add_extrapolations(rows, requested_ns, paths):
    """For each N and phase without a measured naive row, a naive row scaled linearly from the largest measured
    N of that phase, clearly marked (``extrapolated_from``)."""
    if "naive" not in paths:
        return rows
    measured = {}
    for row in rows:
        if row["path"] == "naive" and not row.get("error") and row["seconds"] is not None:
            best = measured.get(row["phase"])
            if best is None or row["tenants"] > best["tenants"]:
                measured[row["phase"]] = row
    out = list(rows)
    for n in requested_ns:
        for phase in PHASE_ORDER:
            have = [r for r in rows if r["n"] == n and r["phase"] == phase]
            if not have or any(r["path"] == "naive" for r in have):
                continue
            base = measured.get(phase)
            if base is None:
                continue
            tenants = have[0]["tenants"]
            seconds = base["seconds"] / base["tenants"] * tenants
            note = (f"EXTRAPOLATED linearly from the naive run at {base['tenants']} tenants"
                    if tenants != base["tenants"] else
                    f"NOT MEASURED at N={n}: the naive run at N={base['n']} (same {tenants} tenants)")
            out.append({"n": n, "phase": phase, "path": "naive", "tenants": tenants, "seconds": round(seconds, 1),
                        "per_tenant_ms": base["per_tenant_ms"], "extrapolated_from": base["tenants"],
                        "note": note})
    return out


def add_ratios(rows):
    by_key = {(r["n"], r["phase"], r["path"]): r for r in rows}
    for row in rows:
        naive = by_key.get((row["n"], row["phase"], "naive"))
        floor = by_key.get((row["n"], row["phase"], "floor"))
        row["naive_over_path"] = _ratio(naive, row)
        row["path_over_floor"] = _ratio(row, floor)
    return rows


def _usable(row):
    return bool(row) and not row.get("error") and bool(row["seconds"])


def _ratio(top, bottom):
    if not _usable(top) or not _usable(bottom):
        return None
    return round(top["seconds"] / bottom["seconds"], 2)


def sort_rows(rows):
    return sorted(rows, key=lambda r: (r["n"], PHASE_ORDER.index(r["phase"]), PATH_ORDER.index(r["path"])))


def _fmt(value, digits=1, suffix=""):
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def table(rows):
    """A Markdown table; extrapolated naive figures carry a ``~`` and a note."""
    lines = ["| N | phase | path | tenants | wall s | per-tenant ms | naive ÷ path | path ÷ floor | note |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for row in sort_rows(rows):
        mark = "~" if row.get("extrapolated_from") else ""
        note = row.get("error") or row.get("note") or ""
        lines.append(f"| {row['n']} | {row['phase']} | {row['path']} | {row['tenants']} | "
                     f"{mark}{_fmt(row['seconds'])} | {mark}{_fmt(row['per_tenant_ms'], 0)} | "
                     f"{_fmt(row.get('naive_over_path'), 1, '×')} | {_fmt(row.get('path_over_floor'), 2, '×')} | "
                     f"{note} |")
    return "\n".join(lines)


def tier_table(rows):
    """Seconds per tier (module task or floor step) for every path's rows."""
    lines = ["| N | phase | path | tier seconds |", "|---:|---|---|---|"]
    for row in sort_rows(rows):
        if row.get("tiers"):
            tiers = ", ".join(f"{name} {seconds:.1f}" for name, seconds in row["tiers"].items())
            lines.append(f"| {row['n']} | {row['phase']} | {row['path']} | {tiers} |")
    return "\n".join(lines)


def targets(rows):
    """The issue's targets at N = 1,000 (and the stretch at 10,000), where measured. Informational only."""
    by_key = {(r["n"], r["phase"], r["path"]): r for r in rows}
    out = []

    def check(n, phase, limit, label, floor_factor=None, naive_factor=None, path="fleet"):
        fleet = by_key.get((n, phase, path))
        if not fleet or fleet.get("error"):
            return
        parts = [f"{fleet['seconds']:.1f} s (target ≤ {limit} s): {'met' if fleet['seconds'] <= limit else 'MISSED'}"]
        if naive_factor and fleet.get("naive_over_path") is not None:
            naive = by_key.get((n, phase, "naive"))
            how = " (naive extrapolated)" if naive and naive.get("extrapolated_from") else ""
            parts.append(f"{fleet['naive_over_path']}× faster than naive{how} (target ≥ {naive_factor}×): "
                         f"{'met' if fleet['naive_over_path'] >= naive_factor else 'MISSED'}")
        if floor_factor and fleet.get("path_over_floor") is not None:
            parts.append(f"{fleet['path_over_floor']}× the floor (target ≤ {floor_factor}×): "
                         f"{'met' if fleet['path_over_floor'] <= floor_factor else 'MISSED'}")
        out.append(f"- {label}: " + "; ".join(parts))

    check(1000, "noop", 30, "no-op re-converge of 1,000 tenants by the fleet path", naive_factor=30)
    check(1000, "provision", 300, "1,000 new tenants by the fleet path", floor_factor=2, naive_factor=5)
    check(1000, "noop", 30, "no-op of 1,000 tenants by deploy_fleet.yml (the product path)", floor_factor=3,
          path="product")
    check(1000, "provision", 300, "1,000 new tenants by deploy_fleet.yml (the product path)", floor_factor=2,
          path="product")
    check(10000, "noop", 120, "stretch: no-op of 10,000 tenants")
    return out


def write_json(path, document):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=str)
        handle.write("\n")


# --------------------------------------------------------------------------- SVG

def svg_plot(rows, title, subtitle):
    """Wall seconds against tenants, both axes logarithmic; one line per path and phase. Dependency-free."""
    series = {}
    for row in rows:  # credentials phases have their own (capped) tenant count: in the table only
        if row["seconds"] and not row.get("error") and row["phase"] in ("provision", "noop"):
            series.setdefault((row["path"], row["phase"]), []).append(row)
    width, height, left, right, top, bottom = 900, 520, 70, 230, 70, 55
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [r["tenants"] for points in series.values() for r in points] or [1, 10]
    ys = [r["seconds"] for points in series.values() for r in points] or [1, 10]
    x_lo, x_hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y_lo, y_hi = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x_hi, y_hi = max(x_hi, x_lo + 1), max(y_hi, y_lo + 1)

    def px(value):
        return left + (math.log10(value) - x_lo) / (x_hi - x_lo) * plot_w

    def py(value):
        return top + plot_h - (math.log10(value) - y_lo) / (y_hi - y_lo) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           ] + [f'<text x="{left}" y="{38 + 14 * i}" fill="#555" font-size="11">{escape(line)}</text>'
                for i, line in enumerate(subtitle.split("\n")[:2])]
    for exponent in range(x_lo, x_hi + 1):
        x = px(10 ** exponent)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{10 ** exponent:,}</text>')
    for exponent in range(y_lo, y_hi + 1):
        y = py(10 ** exponent)
        label = f"{10 ** exponent:g}"
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">tenants (log)</text>')
    out.append(f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {top + plot_h / 2})">wall seconds (log)</text>')
    legend_y = top
    for path in PATH_ORDER:
        for phase in PHASE_ORDER:
            points = sorted(series.get((path, phase), []), key=lambda r: r["tenants"])
            if not points:
                continue
            color, dash = COLORS[path], DASHES[phase]
            coords = " ".join(f"{px(r['tenants']):.1f},{py(r['seconds']):.1f}" for r in points)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"'
                       + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
            for r in points:
                fill = "white" if r.get("extrapolated_from") else color
                out.append(f'<circle cx="{px(r["tenants"]):.1f}" cy="{py(r["seconds"]):.1f}" r="4" fill="{fill}" '
                           f'stroke="{color}" stroke-width="1.5"><title>{escape(path)} {escape(phase)}: '
                           f'{r["tenants"]} tenants, {r["seconds"]:.1f} s'
                           f'{" (extrapolated)" if r.get("extrapolated_from") else ""}</title></circle>')
            lx = left + plot_w + 20
            out.append(f'<line x1="{lx}" y1="{legend_y + 8}" x2="{lx + 30}" y2="{legend_y + 8}" stroke="{color}" '
                       f'stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
            out.append(f'<text x="{lx + 38}" y="{legend_y + 12}">{escape(path)} · {escape(phase)}</text>')
            legend_y += 20
    out.append(f'<text x="{left + plot_w + 20}" y="{legend_y + 16}" fill="#555">hollow: naive extrapolated</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_outputs(directory, stamp, document, markdown, svg):
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for suffix, writer in (("json", lambda p: write_json(p, document)), ("md", lambda p: _write_text(p, markdown)),
                           ("svg", lambda p: _write_text(p, svg))):
        for name in (f"bench-{stamp}.{suffix}", f"latest.{suffix}"):
            writer(os.path.join(directory, name))
        paths[suffix] = os.path.join(directory, f"bench-{stamp}.{suffix}")
    return paths


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)

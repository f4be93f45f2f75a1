"""Markdown tables for docs/architecture.md, computed from the topology data and real Caffe nets.

    mrfnet doc-tables      # prints Table I printed/built and the summary table

A test checks that the doc contains exactly these tables, so the doc cannot drift from the code.
"""
import re
from collections import Counter

from . import topology as T


def _k(row):
    return f"{row.kernel[0]}x{row.kernel[1]}"


def table_i_markdown(size=256):
    """Table I row by row: as printed, as built (MRFNet, 4 paths), input/output at size x size."""
    from .caffe_net import load
    from .nets import deploy_net
    net_param = deploy_net("mrfnet", 4, size, size)
    net = load(net_param)
    bottoms = {layer.name: layer.bottom[0] for layer in net_param.layer if layer.bottom}
    printed = {r.name: r for r in T.TABLE_I_PRINTED}
    changed = {(n, f) for names, f, _ in T.DEVIATIONS for n in names}
    lines = [f"| layer | printed k / s / p | built k / s / p | outputs | input at {size}x{size} "
             "| output | deviates in |",
             "|---|---|---|---|---|---|---|"]
    for row in T.TABLE_I_BUILT:
        p = printed.get(row.name)
        ptxt = f"{_k(p)} / {p.stride} / {p.pad}" if p else "(missing)"
        _, c, h, w = net.blobs[bottoms[row.name]].shape
        _, oc, oh, ow = net.blobs[row.name].shape
        fields = [f for f in ("missing", "kernel", "stride", "pad") if (row.name, f) in changed]
        lines.append(f"| {row.name} | {ptxt} | {_k(row)} / {row.stride} / {row.pad} | {row.outputs} "
                     f"| {c}x{h}x{w} | {oc}x{oh}x{ow} | {', '.join(fields) or '-'} |")
    return "\n".join(lines) + "\n"


def summary_markdown(paths=T.DEFAULT_PATHS):
    from .summary import DEFAULT_SIZES, markdown, variant_stats
    stats = {v: variant_stats(v, paths, DEFAULT_SIZES) for v in T.VARIANTS}
    return markdown(stats, DEFAULT_SIZES)


def _part(name):
    if re.fullmatch(r"Conv\d+", name):
        return "encoder Conv1..Conv(2P)"
    if re.fullmatch(r"conv_r\d+_1", name):
        return "fusion conv_r*_1"
    if name.startswith("crp_"):
        return "CRP convs"
    if re.search(r"_m[13]$", name):
        return "MRF m1/m3 (3x3 in all variants)"
    if re.search(r"_m[24]$", name):
        return "MRF m2/m4"
    return "deconvolutions" if name.startswith("deconv") else "prediction head"


def breakdown_markdown(heavy="refinenet", light="lwrefinenet", paths=T.DEFAULT_PATHS, size=256):
    """Multiply-adds and parameters per part of the net, heavy vs lightweight variant."""
    from .caffe_net import load
    from .nets import deploy_net
    from .summary import layer_costs
    cols = {}
    for v in (heavy, light):
        macs, params = Counter(), Counter()
        for name, (m, p) in layer_costs(load(deploy_net(v, paths, size, size))).items():
            macs[_part(name)] += m
            params[_part(name)] += p
        cols[v] = (macs, params)
    th, tl = T.VARIANT_SPECS[heavy].title, T.VARIANT_SPECS[light].title
    lines = [f"| part | {th} GMACs | {tl} GMACs | {th} params | {tl} params |", "|---|---|---|---|---|"]
    for part in cols[heavy][0]:
        lines.append(f"| {part} | {cols[heavy][0][part] / 1e9:.2f} | {cols[light][0][part] / 1e9:.2f} "
                     f"| {cols[heavy][1][part]:,} | {cols[light][1][part]:,} |")
    lines.append(f"| total | {sum(cols[heavy][0].values()) / 1e9:.2f} "
                 f"| {sum(cols[light][0].values()) / 1e9:.2f} | {sum(cols[heavy][1].values()):,} "
                 f"| {sum(cols[light][1].values()):,} |")
    return "\n".join(lines) + "\n"


def deviations_markdown():
    return "".join(f"- **{', '.join(names)}** ({field}): {reason}.\n"
                   for names, field, reason in T.DEVIATIONS)


if __name__ == "__main__":  # kept for old scripts: use `mrfnet doc-tables`
    import sys
    from mrfnet.cli import main
    sys.exit(main(["doc-tables", *sys.argv[1:]]))

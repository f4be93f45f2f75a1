"""Parameters, multiply-adds and blob memory of each variant's deploy net (`mrfnet summary`).

Counted from the real caffe.Net built from the deploy prototxt (shapes only: no forward pass, so
a 1280x720 net costs no activation memory):
  - parameters: every learnable blob (weights + biases);
  - multiply-adds: convolutions weight_count * N*H_out*W_out, deconvolutions
    weight_count * N*H_in*W_in (pooling, sums, ReLU are not multiply-adds and are left out);
  - blob memory: float32 bytes of all distinct activation blobs at batch 1 (in-place ReLUs share
    their input's blob; Split tops share their bottom's data, so they are not counted again).
"""

from . import topology as T

DEFAULT_SIZES = ((256, 256), (1280, 720))  # width x height as users say it
BYTES = 4


def layer_costs(net):
    """{layer: (multiply-adds, parameters)} for every convolution/deconvolution of a caffe.Net."""
    out = {}
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in ("Convolution", "Deconvolution"):
            continue
        weight = net.params[name][0]
        blob = net.blobs[net.top_names[name][0] if layer.type == "Convolution"
                         else net.bottom_names[name][0]]
        n, _, h, w = blob.shape
        out[name] = (weight.count * n * h * w, sum(b.count for b in net.params[name]))
    return out


def net_stats(net):
    """{'params', 'macs', 'blob_bytes'} of a live caffe.Net."""
    params = sum(b.count for blobs in net.params.values() for b in blobs)
    macs = sum(m for m, _ in layer_costs(net).values())
    shared = {top for name, layer in zip(net._layer_names, net.layers) if layer.type == "Split"
              for top in net.top_names[name]}
    blob_bytes = sum(b.count * BYTES for name, b in net.blobs.items() if name not in shared)
    return {"params": params, "macs": macs, "blob_bytes": blob_bytes}


def variant_stats(variant, paths=T.DEFAULT_PATHS, sizes=DEFAULT_SIZES):
    """Stats of the deploy net per size: {'params', 'macs': {size: n}, 'blob_bytes': {size: n}}."""
    from .caffe_net import load
    from .nets import deploy_net
    out = {"variant": variant, "paths": paths, "macs": {}, "blob_bytes": {}}
    for width, height in sizes:
        s = net_stats(load(deploy_net(variant, paths, height, width)))
        out["params"] = s["params"]
        out["macs"][(width, height)] = s["macs"]
        out["blob_bytes"][(width, height)] = s["blob_bytes"]
    return out


def lightweight_reduction(stats_by_variant, heavy="refinenet", light="lwrefinenet"):
    """Fractions by which `light` cuts parameters and multiply-adds (at the first size)."""
    a, b = stats_by_variant[heavy], stats_by_variant[light]
    size = next(iter(a["macs"]))
    return {"params": 1 - b["params"] / a["params"], "macs": 1 - b["macs"][size] / a["macs"][size]}


def markdown(stats, sizes):
    """The summary as a markdown table plus the verdict on the paper's claims."""
    head = ["variant", "parameters"] + [f"GMACs {w}x{h}" for w, h in sizes] \
        + [f"blob MB {w}x{h}" for w, h in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in stats.values():
        cells = [T.VARIANT_SPECS[s["variant"]].title, f"{s['params']:,}"]
        cells += [f"{s['macs'][z] / 1e9:.2f}" for z in sizes]
        cells += [f"{s['blob_bytes'][z] / 2**20:.1f}" for z in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for heavy, light in (("refinenet", "lwrefinenet"), ("rcrefinenet", "mrfnet")):
        if heavy in stats and light in stats:
            r = lightweight_reduction(stats, heavy, light)
            lines.append(
                f"{T.VARIANT_SPECS[heavy].title} -> {T.VARIANT_SPECS[light].title}: parameters "
                f"-{r['params']:.1%} (paper: >50%: {'holds' if r['params'] > 0.5 else 'does NOT hold'}), "
                f"multiply-adds -{r['macs']:.1%} (paper: >75%: "
                f"{'holds' if r['macs'] > 0.75 else 'does NOT hold'}).")
    return "\n".join(lines) + "\n"


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: write WIDTHxHEIGHT, e.g. 1280x720") from None
    return w, h

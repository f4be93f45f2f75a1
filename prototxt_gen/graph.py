"""A readable picture of a net: DOT text from a NetParameter, rendered by graphviz `dot`.

caffe/draw.py needs pydot; this small emitter does not, and it folds in-place ReLUs into their
convolution, groups layers by encoder / refinement path, and can print blob shapes.

    mrfnet graph --variant mrfnet --paths 4 --size 256 --out docs/img/mrfnet_p4.png
"""
import re
import shutil
import subprocess
import sys

COLORS = {"encoder": "#cfe2f3", "fusion": "#d9ead3", "crp": "#fce5cd", "mrf": "#d9d2e9",
          "up": "#eeeeee", "pred": "#f4cccc", "io": "#ffffff"}


def _role(name):
    if re.fullmatch(r"Conv\d+", name):
        return "encoder"
    if name.startswith("crp_"):
        return "crp"
    if re.fullmatch(r"conv_r\d+_m\d|mrf_r\d+|l_r\d+", name):
        return "mrf"
    if name.startswith("deconv"):
        return "up"
    if re.fullmatch(r"conv_r\d+_1|concat_r\d+|fuse_r\d+", name):
        return "fusion"
    if "pred" in name or name.startswith("img_r"):
        return "pred"
    return "io"


def _path(name):
    m = re.search(r"_r(\d+)", name) or re.fullmatch(r"deconv(\d+)", name)
    return int(m.group(1)) if m else None


def _label(layer, relu):
    t = layer.type
    if t in ("Convolution", "Deconvolution"):
        cp = layer.convolution_param
        k = f"{cp.kernel_h}x{cp.kernel_w}" if cp.kernel_h else f"{cp.kernel_size[0]}x{cp.kernel_size[0]}"
        s = cp.stride[0] if cp.stride else 1
        text = f"{layer.name}\\n{'deconv ' if t == 'Deconvolution' else ''}{k}/{s}, {cp.num_output}"
        return text + (" +ReLU" if relu else "")
    if t == "Pooling":
        p = layer.pooling_param
        kind = "max" if p.pool == 0 else "avg"
        return f"{layer.name}\\n{kind} pool {p.kernel_size}/{p.stride}"
    if t == "Eltwise":
        return f"{layer.name}\\n+"
    return f"{layer.name}\\n{t}"


def to_dot(net, shapes=None, title=None):
    """DOT text. `shapes` ({blob: (N, C, H, W)}) adds each layer's output size to its node."""
    relu_of, skip = {}, set()
    for layer in net.layer:
        if layer.type == "ReLU" and list(layer.bottom) == list(layer.top):
            relu_of[layer.bottom[0]] = True
            skip.add(layer.name)
    producer, nodes, edges, clusters = {}, [], [], {}
    for layer in net.layer:
        if layer.name in skip:
            continue
        label = _label(layer, relu_of.get(layer.top[0], False) if layer.top else False)
        if shapes and layer.top and layer.top[0] in shapes:
            _, c, h, w = shapes[layer.top[0]]
            label += f"\\n{c}x{h}x{w}"
        node = f'  "{layer.name}" [label="{label}", fillcolor="{COLORS[_role(layer.name)]}"];'
        k = _path(layer.name)
        clusters.setdefault("encoder" if _role(layer.name) == "encoder" else k, []).append(node)
        for b in layer.bottom:
            if b in producer:
                edges.append(f'  "{producer[b]}" -> "{layer.name}";')
        for t in layer.top:
            producer[t] = layer.name
    out = ["digraph net {", "  rankdir=TB; nodesep=0.15; ranksep=0.25;",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    if title:
        out.append(f'  labelloc=t; label="{title}"; fontname="Helvetica"; fontsize=14;')
    for key, group in clusters.items():
        if key is None:
            out += group
            continue
        name = "encoder" if key == "encoder" else f"path r{key}"
        out.append(f'  subgraph "cluster_{key}" {{ label="{name}"; style=dashed; fontname="Helvetica";')
        out += ["  " + g for g in group]
        out.append("  }")
    return "\n".join(out + edges + ["}"]) + "\n"


def render(dot_text, png_path):
    """Render DOT to PNG with graphviz `dot` (a clear error if it is not installed)."""
    exe = shutil.which("dot")
    if not exe:
        raise FileNotFoundError("graphviz `dot` not found: install graphviz (apt-get install graphviz)")
    subprocess.run([exe, "-Tpng", "-Gdpi=80", "-o", str(png_path)], input=dot_text.encode(),
                   check=True)


if __name__ == "__main__":  # kept for old scripts: use `mrfnet graph`
    from mrfnet.cli import main
    sys.exit(main(["graph", *sys.argv[1:]]))

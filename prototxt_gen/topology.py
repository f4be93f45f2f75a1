"""Table I of the paper as data, in the paper's own layer names, and the rules that extend it.

Why data: the printed table has inconsistencies (see docs/architecture.md), so the builders must
not read it directly. `TABLE_I_PRINTED` keeps the table exactly as printed, `TABLE_I_BUILT` the
same rows as we build them (MRFNet, 4 paths), `DEVIATIONS` says why each differs, and
`conv_rows(variant, paths)` generates every convolution of any variant and path count from a few
rules. Tests hold the three together: the rules reproduce `TABLE_I_BUILT`, and every difference
between printed and built is listed in `DEVIATIONS`.
"""
from dataclasses import dataclass

VARIANTS = ("refinenet", "lwrefinenet", "rcrefinenet", "mrfnet")
DEFAULT_VARIANT = "mrfnet"
MIN_PATHS, MAX_PATHS, DEFAULT_PATHS = 1, 6, 4


class TopologyError(ValueError):
    """A variant, path count or input size the network cannot be built with."""


@dataclass(frozen=True)
class Variant:
    """An ablation variant of Tables III-V: two switches over the RefineNet baseline."""
    name: str
    title: str          # the paper's spelling
    lightweight: bool   # 1x1 fusion / CRP / encoder convs, 1x1 halves of the MRF unit
    residual: bool      # residual fusion unit, eq. (3) MRF unit and remote residual


VARIANT_SPECS = {
    "refinenet": Variant("refinenet", "RefineNet", lightweight=False, residual=False),
    "lwrefinenet": Variant("lwrefinenet", "LWRefineNet", lightweight=True, residual=False),
    "rcrefinenet": Variant("rcrefinenet", "RCRefineNet", lightweight=False, residual=True),
    "mrfnet": Variant("mrfnet", "MRFNet", lightweight=True, residual=True),
}


@dataclass(frozen=True)
class ConvRow:
    """One convolution: kernel (height, width), output channels, stride, padding."""
    name: str
    kernel: tuple
    outputs: int
    stride: int
    pad: int
    deconv: bool = False
    relu: bool = True

    @property
    def text(self):
        return f"{self.kernel[0]}x{self.kernel[1]}x{self.outputs}"


def _r(name, k, outputs, stride, pad, kw=None, deconv=False):
    return ConvRow(name, (k, kw or k), outputs, stride, pad, deconv=deconv)


# Table I exactly as printed (kernel h x w x outputs, stride, padding). conv_r2_m1 is absent.
TABLE_I_PRINTED = (
    _r("Conv1", 5, 32, 1, 2), _r("Conv2", 1, 64, 1, 1), _r("Conv3", 5, 128, 2, 2),
    _r("Conv4", 1, 128, 1, 1), _r("Conv5", 3, 256, 1, 2), _r("Conv6", 1, 256, 1, 1),
    _r("Conv7", 3, 256, 1, 2), _r("Conv8", 1, 256, 1, 1),
    _r("conv_r1_1", 3, 256, 1, 1), _r("conv_r1_m1", 3, 256, 1, 1),
    _r("conv_r1_m2", 3, 256, 1, 1, kw=1), _r("conv_r1_m3", 3, 256, 1, 1),
    _r("conv_r1_m4", 3, 256, 1, 1, kw=1), _r("deconv1", 4, 128, 1, 2, deconv=True),
    _r("conv_r2_1", 3, 128, 1, 1), _r("conv_r2_m2", 1, 128, 1, 1), _r("conv_r2_m3", 3, 128, 1, 1),
    _r("conv_r2_m4", 1, 128, 1, 1), _r("deconv2", 4, 64, 1, 2, deconv=True),
    _r("conv_r3_1", 3, 64, 1, 1), _r("conv_r3_m1", 3, 64, 1, 1), _r("conv_r3_m2", 1, 64, 1, 1),
    _r("conv_r3_m3", 3, 64, 1, 1), _r("conv_r3_m4", 1, 64, 1, 1),
    _r("deconv3", 4, 32, 1, 2, deconv=True),
    _r("conv_r4_1", 3, 32, 1, 1), _r("conv_r4_m1", 3, 32, 1, 1), _r("conv_r4_m2", 3, 32, 1, 1),
    _r("conv_r4_m3", 1, 32, 1, 1), _r("conv_r4_m4", 3, 32, 1, 1),
)

# The same rows as built for MRFNet with 4 paths (plus the missing conv_r2_m1, in its place).
TABLE_I_BUILT = (
    _r("Conv1", 5, 32, 1, 2), _r("Conv2", 1, 64, 1, 0), _r("Conv3", 5, 128, 2, 2),
    _r("Conv4", 1, 128, 1, 0), _r("Conv5", 3, 256, 2, 1), _r("Conv6", 1, 256, 1, 0),
    _r("Conv7", 3, 256, 2, 1), _r("Conv8", 1, 256, 1, 0),
    _r("conv_r1_1", 1, 256, 1, 0), _r("conv_r1_m1", 3, 256, 1, 1),
    _r("conv_r1_m2", 1, 256, 1, 0), _r("conv_r1_m3", 3, 256, 1, 1),
    _r("conv_r1_m4", 1, 256, 1, 0), _r("deconv1", 4, 128, 2, 1, deconv=True),
    _r("conv_r2_1", 1, 128, 1, 0), _r("conv_r2_m1", 3, 128, 1, 1),
    _r("conv_r2_m2", 1, 128, 1, 0), _r("conv_r2_m3", 3, 128, 1, 1),
    _r("conv_r2_m4", 1, 128, 1, 0), _r("deconv2", 4, 64, 2, 1, deconv=True),
    _r("conv_r3_1", 1, 64, 1, 0), _r("conv_r3_m1", 3, 64, 1, 1), _r("conv_r3_m2", 1, 64, 1, 0),
    _r("conv_r3_m3", 3, 64, 1, 1), _r("conv_r3_m4", 1, 64, 1, 0),
    _r("deconv3", 4, 32, 2, 1, deconv=True),
    _r("conv_r4_1", 1, 32, 1, 0), _r("conv_r4_m1", 3, 32, 1, 1), _r("conv_r4_m2", 1, 32, 1, 0),
    _r("conv_r4_m3", 3, 32, 1, 1), _r("conv_r4_m4", 1, 32, 1, 0),
)

# Why built differs from printed: (layer names, field, reason). Field is one of
# "missing", "kernel", "stride", "pad" (outputs never differ).
_PAD_1X1 = ("a 1x1 convolution with padding 1 grows the map by 2 pixels per layer and breaks "
            "every concatenation and sum; padding 0 keeps the size, as for all 1x1 convs")
DEVIATIONS = (
    (("Conv2", "Conv4", "Conv6", "Conv8", "conv_r2_m2", "conv_r2_m4", "conv_r3_m2", "conv_r3_m4"),
     "pad", _PAD_1X1),
    (("Conv5", "Conv7"), "stride",
     "the encoder halves the map at each stage (text: 'a stride of 1 followed by a stride of 2'); "
     "the decoder widths 256/128/64/32 need b_k at 1/8, 1/4, 1/2, 1/1, so Conv5 and Conv7 are the "
     "stride-2 halves of their RCU pairs"),
    (("Conv5", "Conv7"), "pad",
     "3x3 stride 2 with padding 1 halves the map exactly; padding 2 would give H/2+1"),
    (("deconv1", "deconv2", "deconv3"), "stride",
     "a stride-1 deconvolution cannot upsample; the paths are 2x apart, so stride 2"),
    (("deconv1", "deconv2", "deconv3"), "pad",
     "4x4 stride 2 padding 1 gives exactly 2H (padding 2 would give 2H-2)"),
    (("conv_r2_m1",), "missing",
     "row missing from the printed table; built like conv_r3_m1 (3x3, path width), as the MRF "
     "unit has four convs in every path"),
    (("conv_r1_m2", "conv_r1_m4"), "kernel",
     "printed 3x1 (a typo: no other row is asymmetric); the lightweight MRF unit alternates "
     "3x3 and 1x1 as in rows r2 and r3, so 1x1"),
    (("conv_r1_m2", "conv_r1_m4"), "pad", "1x1 convolution: padding 0 keeps the size"),
    (("conv_r4_m2", "conv_r4_m3", "conv_r4_m4"), "kernel",
     "printed 3x3/1x1/3x3, the reverse of rows r2 and r3 (1x1/3x3/1x1); one pattern for all "
     "paths, as in r2 and r3"),
    (("conv_r4_m2", "conv_r4_m4"), "pad",
     "now 1x1 convolutions: padding 0 (conv_r4_m3, now 3x3, keeps its printed padding 1)"),
    (("conv_r1_1", "conv_r2_1", "conv_r3_1", "conv_r4_1"), "kernel",
     "the text (III.B) says the lightweight process replaces the 3x3 fusion convolution with 1x1, "
     "and the >50% parameter / >75% operation claim is about that replacement; Table I prints 3x3. "
     "Text wins for MRFNet/LWRefineNet; RefineNet/RCRefineNet build these 3x3"),
    (("conv_r1_1", "conv_r2_1", "conv_r3_1", "conv_r4_1"), "pad",
     "1x1 convolution: padding 0 keeps the size"),
)


def check_variant(variant):
    """Return the Variant for a name, or raise TopologyError naming the choices."""
    if variant not in VARIANT_SPECS:
        raise TopologyError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    return VARIANT_SPECS[variant]


def check_paths(paths):
    """Return the path count as int, or raise TopologyError (the paper studies 1..6)."""
    if isinstance(paths, bool) or not isinstance(paths, int) or not MIN_PATHS <= paths <= MAX_PATHS:
        raise TopologyError(f"number of refinement paths must be an integer in "
                            f"{MIN_PATHS}..{MAX_PATHS}, got {paths!r}")
    return paths


def total_stride(paths):
    """Input height and width must be multiples of this: the coarsest path works at 1/2^(P-1)."""
    return 2 ** (check_paths(paths) - 1)


def check_size(height, width, paths, what="input size"):
    """Raise TopologyError unless height x width fits the net (positive multiples of the stride)."""
    stride = total_stride(paths)
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, int) or value < stride \
                or value % stride:
            raise TopologyError(
                f"{what} (height {height}, width {width}) does not fit a {paths}-path net: they must "
                f"be positive multiples of its total stride {stride} (2^(paths-1)); pad the image "
                f"to the next multiple of {stride} and crop the result back")
    return height, width


def padded_size(height, width, paths):
    """The smallest size >= height x width that the net accepts (for the inference code)."""
    stride = total_stride(paths)
    return -(-height // stride) * stride, -(-width // stride) * stride


def path_scale(k, paths):
    """Scale exponent s of path r_k: it works at 1/2^s of the input (r1 is the coarsest)."""
    return paths - k


def path_width(scale):
    """Decoder channels at 1/2^scale: 32, 64, 128 at 1/1, 1/2, 1/4; 256 from 1/8 on."""
    return {0: 32, 1: 64, 2: 128}.get(scale, 256)


def encoder_width(scale):
    """Channels of the encoder feature b at 1/2^scale (Conv2 64, Conv4 128, Conv6.. 256)."""
    return {0: 64, 1: 128}.get(scale, 256)


def _k(lightweight, k_lw, k_base):
    k = k_lw if lightweight else k_base
    return k, k // 2


def encoder_rows(scale, variant):
    """Conv(2s+1) and Conv(2s+2): the RCU pair of encoder stage s (stride 1 at s=0, else 2)."""
    v = check_variant(variant)
    first = f"Conv{2 * scale + 1}"
    if scale == 0:
        a = _r(first, 5, 32, 1, 2)
    elif scale == 1:
        a = _r(first, 5, 128, 2, 2)
    else:
        a = _r(first, 3, 256, 2, 1)
    k, pad = _k(v.lightweight, 1, 3)
    return a, _r(f"Conv{2 * scale + 2}", k, encoder_width(scale), 1, pad)


MRF_KERNELS = {False: (3, 3, 3, 3), True: (3, 1, 3, 1)}  # by lightweight


def path_rows(k, paths, variant):
    """The convolutions of refinement path r_k, in order: fusion, CRP, MRF unit, deconv, pred."""
    v = check_variant(variant)
    width = path_width(path_scale(k, paths))
    kf, pf = _k(v.lightweight, 1, 3)
    rows = [_r(f"conv_r{k}_1", kf, width, 1, pf)]
    rows += [ConvRow(f"crp_r{k}_conv{i}", (kf, kf), width, 1, pf, relu=False) for i in (1, 2)]
    rows += [_r(f"conv_r{k}_m{i}", km, width, 1, km // 2)
             for i, km in enumerate(MRF_KERNELS[v.lightweight], start=1)]
    if k < paths:
        rows.append(_r(f"deconv{k}", 4, path_width(path_scale(k + 1, paths)), 2, 1, deconv=True))
    rows.append(ConvRow(f"conv_r{k}_pred", (3, 3), 3, 1, 1, relu=False))
    return rows


def conv_rows(variant=DEFAULT_VARIANT, paths=DEFAULT_PATHS):
    """Every convolution/deconvolution of a variant with `paths` paths, by paper name."""
    check_variant(variant)
    check_paths(paths)
    rows = []
    for s in range(paths):
        rows += encoder_rows(s, variant)
    for k in range(1, paths + 1):
        rows += path_rows(k, paths, variant)
    return {row.name: row for row in rows}

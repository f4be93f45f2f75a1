"""The MRFNet paper's own numbers (Tables II-V), typed in from the paper, for placing beside ours.

They are the paper's claims under its (unstated) protocol, on GPUs (RTX2080Ti / GTX1650); ours
come from our runs. `mrfnet tables` always labels these rows "(paper)".
"""

DATASETS = ("GOPRO", "VisDrone")

# Table II: method -> {dataset: (PSNR, SSIM)}
TABLE_II = {
    "DeblurGAN": {"GOPRO": (28.22642, 0.747912), "VisDrone": (28.29447, 0.609642)},
    "DMPHN": {"GOPRO": (34.21846, 0.898285), "VisDrone": (28.54136, 0.526301)},
    "SIUN": {"GOPRO": (34.46135, 0.900913), "VisDrone": (28.28039, 0.543417)},
    "Our model (MRFNet)": {"GOPRO": (34.63429, 0.907881), "VisDrone": (29.40845, 0.862474)},
}

# Table III: method -> (GOPRO Network(MB)+Batch(8), VisDrone Network(MB)+Batch(16)), GPU MB
TABLE_III_BATCHES = (8, 16)
TABLE_III = {
    "DeblurGAN": (4538, 6012),
    "DMPHN": (6541, 7329),
    "SIUN": (8399, 8561),
    "Our model (MRFNet)": (5452, 5898),
}

# Table IV: method -> (GOPRO 1280x768, VisDrone 256x256) inference time in s (load + infer, GPU)
TABLE_IV = {
    "DeblurGAN": (2.346, 2.144),
    "DMPHN": (1.886, 0.764),
    "SIUN": (0.684, 0.357),
    "LWRefineNet": (0.494, 0.319),
}
TABLE_IV_SIZES = {"GOPRO": (768, 1280), "VisDrone": (256, 256)}

# Table V: variant -> {dataset: (PSNR, SSIM)}
TABLE_V = {
    "refinenet": {"GOPRO": (34.17826, 0.894369), "VisDrone": (28.73991, 0.854758)},
    "lwrefinenet": {"GOPRO": (34.21445, 0.906998), "VisDrone": (29.24461, 0.860164)},
    "rcrefinenet": {"GOPRO": (34.39430, 0.903012), "VisDrone": (29.03971, 0.858601)},
    "mrfnet": {"GOPRO": (34.63429, 0.907881), "VisDrone": (29.40845, 0.862474)},
}

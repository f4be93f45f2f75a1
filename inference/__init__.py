"""Running trained MRFNet deploy nets on images (ONNX Runtime, OpenCV dnn or pycaffe), and
exporting them to ONNX.

The one convention, used by every function here: a net input is float32 N x 3 x H x W, channel
order **BGR** (as Caffe and OpenCV read images), values in **[0, 1]** (uint8 / 255). The output
blob "predict_deblur" has the same layout and range; it is turned back to uint8 with
`layers.metrics.to_uint8` (clip to [0, 1], x255, round).
"""

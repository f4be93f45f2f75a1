"""Loss and metrics of MRFNet: plain numpy modules (metrics, scale_loss, loss_groups) and the thin
Caffe Python layers over them (caffe_layers, the only module here that imports caffe)."""

"""mrfnet-caffe: MRFNet image deblurring in Caffe."""

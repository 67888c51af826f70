"""PoseNet (TF.js PoseNet, MobileNetV1 0.75): letterbox, multi-pose decoding, Coral's layouts."""

"""The network: the component contracts (`Module`, `Parameter`, `Loss`, `Optimizer`), `Sequential`,
parsing `--layers` text (stack), assembling a network from registered names (assemble) and
describing a component's constructor for `nn-cli info` (info), the matrix products layers
share (matmul), and the image layouts with the conversions between them (layout). It may
import the ground floor (`core.errors`, `core.lazy`, `core.keyvalue`) and `core.plugin`, never
data, training, files or pipeline.
"""

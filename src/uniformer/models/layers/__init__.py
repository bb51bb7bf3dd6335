"""Small layers shared by the networks: BatchNorm folding (``batchnorm``) and the fused inference MLP
(``mlp``)."""

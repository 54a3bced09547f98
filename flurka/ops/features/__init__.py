"""Feature maps φ for kernel attention: elu+1, relu, identity, cosFormer re-weighting, FAVOR+.

The maps the layers call (`ops`: fused Triton kernels on CUDA, written in the attention op's dtype) and the
PyTorch truth beside them (`reference`, fp32); same names, same values.
"""

from flurka.ops.features.ops import (
    FEATURE_MAPS,
    elu_plus_one,
    favor_plus_causal_features,
    favor_plus_features,
    identity_features,
    relu_features,
)
from flurka.ops.features.reference import (
    cosformer_features,
    favor_exponent,
    favor_key_shift,
    log_elu_plus_one,
    orthogonal_gaussian_projection,
)

__all__ = [
    "FEATURE_MAPS",
    "cosformer_features",
    "elu_plus_one",
    "favor_exponent",
    "favor_key_shift",
    "favor_plus_causal_features",
    "favor_plus_features",
    "identity_features",
    "log_elu_plus_one",
    "orthogonal_gaussian_projection",
    "relu_features",
]

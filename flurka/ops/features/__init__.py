"""Feature maps φ for kernel attention: elu+1, relu, identity, cosFormer re-weighting, FAVOR+."""

from flurka.ops.features.reference import (
    FEATURE_MAPS,
    cosformer_features,
    elu_plus_one,
    favor_exponent,
    favor_plus_causal_features,
    favor_plus_features,
    identity_features,
    log_elu_plus_one,
    orthogonal_gaussian_projection,
    relu_features,
)

__all__ = [
    "FEATURE_MAPS",
    "cosformer_features",
    "elu_plus_one",
    "favor_exponent",
    "favor_plus_causal_features",
    "favor_plus_features",
    "identity_features",
    "log_elu_plus_one",
    "orthogonal_gaussian_projection",
    "relu_features",
]

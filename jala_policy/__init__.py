"""The JALA policy: InternVL3 backbone with motion tokens, latent perceivers, flow-matching DiT action head.

Nothing here imports ROS or hardware code.
"""
from .config import (ActionHeadConfig, BackboneConfig, ConfigError, InferenceConfig, JalaPolicyConfig,
                     MotionVocabConfig, PerceiverConfig)
from .policy import JalaPolicy, PolicyInputError, check_camera_views

__all__ = ["ActionHeadConfig", "BackboneConfig", "ConfigError", "InferenceConfig",
           "JalaPolicy", "JalaPolicyConfig", "MotionVocabConfig", "PerceiverConfig", "PolicyInputError",
           "check_camera_views"]

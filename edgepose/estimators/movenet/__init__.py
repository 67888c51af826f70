"""MoveNet (SinglePose Lightning / Thunder, MultiPose Lightning): pure numpy pre/post-processing and estimators."""

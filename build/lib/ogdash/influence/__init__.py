"""The baselines the paper compares with: label-quality scores from probabilities, and influence estimates
(exact, TracIn, LiSSA, DataInf) that need a Hessian or its approximation. Signs flipped once so higher = more detrimental."""
